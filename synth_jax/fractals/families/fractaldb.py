"""FractalDB (Kataoka et al., ACCV 2020): category search and the instance weight rows; the
`fractaldb` data family (see synth_jax.fractals.family for what a family module defines).

Categories are random systems (N maps in [min_maps, max_maps], a..f ~ U(-1, 1), p from |det|)
kept when a per-point-patch render fills at least `fill_threshold`; each has 25 weight rows x
`instances` patch seeds x 4 flips (flip="index") images.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from synth_jax.config import check, check_choice
from synth_jax.errors import UsageError
from synth_jax.fractals.engine import data_keys, ifs, render
from synth_jax.fractals.engine.ifs_images import IFSImages, ifs_table
from synth_jax.progress import Progress

# Factors for the 24 non-trivial weight rows: each row scales ONE of a..f of every map.
WEIGHT_FACTORS = {"0.4": (0.2, 0.6, 1.4, 1.8), "0.1": (0.8, 0.9, 1.1, 1.2)}


class DegenerateVariants(Exception):
    """A kept category has weight rows that render degenerate images (policy "error")."""


def weight_rows(variant: str) -> np.ndarray:
    """The 25 instance weight rows float[25, 6]: row 0 all ones, then for each parameter a..f
    the four factors of `variant` ("0.4" or "0.1"). The p_i are not recomputed."""
    if variant not in WEIGHT_FACTORS:
        raise ValueError(f"weights={variant!r}: expected one of {sorted(WEIGHT_FACTORS)}")
    rows = [np.ones(6)]
    for param in range(6):
        for factor in WEIGHT_FACTORS[variant]:
            row = np.ones(6)
            row[param] = factor
            rows.append(row)
    return np.stack(rows)


def sample_candidates(rng: np.random.Generator, count: int, min_maps: int, max_maps: int):
    """Candidate systems float[count, 7, 7]: N ~ U{min..max}, a..f ~ U(-1, 1), p from |det|,
    padded with p = 0 rows."""
    out = np.zeros((count, ifs.MAX_MAPS, 7))
    for k in range(count):
        n = int(rng.integers(min_maps, max_maps + 1))
        out[k] = ifs.pad_maps(ifs.with_probabilities(rng.uniform(-1, 1, (n, 6))))
    return out


def search_categories(
    rng: np.random.Generator,
    num_classes: int,
    min_maps: int,
    max_maps: int,
    fill_threshold: float,
    search_spec: render.RenderSpec,
    check_spec: render.RenderSpec,
    variants: np.ndarray,
    seed: int,
    degenerate: str = "resample",
    batch: int = 64,
    max_candidates: int = 10_000_000,
    progress=None,
):
    """Draws candidates in batches and keeps those whose per-point-patch render fills at least
    `fill_threshold` of the image (FractalDB: 0.2 of 512x512 with 100k points). Weight rows can
    make a kept system diverge (FractalDB checks no contractivity); each (category, row) is
    checked with `check_spec`, and a degenerate one is, per `degenerate`: "resample": rendered
    with row 0 (the category's own system) instead; "reject": the category is dropped and the
    search goes on; "error": raises DegenerateVariants.

    Returns (params float[num_classes, 7, 7], variant_ok bool[num_classes, V], stats dict with
    candidate, rejection and replacement counts)."""
    kept: list[np.ndarray] = []
    kept_ok: list[np.ndarray] = []
    stats = {"candidates": 0, "rejected_fill": 0, "rejected_degenerate": 0, "replaced_variants": 0}
    while len(kept) < num_classes:
        if stats["candidates"] >= max_candidates:
            raise RuntimeError(
                f"FractalDB search: only {len(kept)} of {num_classes} categories after "
                f"{stats['candidates']} candidates; lower fill_threshold"
            )
        cands = sample_candidates(rng, batch, min_maps, max_maps)
        fill, broken = render.batch_statistics(
            cands, seed + stats["candidates"], search_spec, batch
        )
        stats["candidates"] += batch
        good = (fill >= fill_threshold) & ~broken
        stats["rejected_fill"] += int(np.sum(~good))
        if good.any():
            chosen = cands[good]
            # Every weight row of a kept category must render: scale a..f, keep p.
            scaled = (
                chosen[:, None]
                * np.concatenate([variants, np.ones((len(variants), 1))], 1)[None, :, None, :]
            )
            _, bad = render.batch_statistics(
                scaled.reshape(-1, ifs.MAX_MAPS, 7), seed, check_spec, batch
            )
            ok = ~bad.reshape(len(chosen), len(variants))
            ok[:, 0] = True  # row 0 passed the fill filter itself
            if degenerate == "error" and not ok.all():
                raise DegenerateVariants(f"{int((~ok).sum())} weight-row variants are degenerate")
            if degenerate == "reject":
                stats["rejected_degenerate"] += int((~ok.all(1)).sum())
                chosen, ok = chosen[ok.all(1)], ok[ok.all(1)]
            stats["replaced_variants"] += int((~ok[: num_classes - len(kept)]).sum())
            kept.extend(chosen)
            kept_ok.extend(ok)
        if progress is not None:
            progress.update(min(len(kept), num_classes), f"candidates {stats['candidates']}")
    return np.stack(kept[:num_classes]), np.stack(kept_ok[:num_classes]), stats


# -- the data family ---------------------------------------------------------------------------
DEFAULTS = dict(
    image_size=362,  # published FractalDB images: 362 px, 200k points
    points=200_000,
    gray_value=127,  # "patch_gray"
    flip="index",
    min_maps=2,
    max_maps=7,
    weights="0.4",  # instance weight rows: "0.4" or "0.1"
    instances=10,  # instances per weight row (they differ by patch masks)
    fill_threshold=0.2,  # keep a category when its fill rate >= this
    search_points=100_000,
    search_size=512,
)
TABLE_FREE_KEYS = ("instances",)


def validate(config) -> None:
    check_choice(config, "weights", tuple(WEIGHT_FACTORS))
    data_keys.check_search_keys(config)
    check(config, "instances", data_keys.positive_int, "a positive integer")
    data_keys.check_map_counts(config)


def build_table(config, rng: np.random.Generator, progress: bool) -> tuple[dict, dict]:
    return search_table(config, rng, weight_rows(config.weights), progress)


def search_table(config, rng, variants: np.ndarray, progress: bool) -> tuple[dict, dict]:
    """The table of a FractalDB-style category search (search keys of `config`) with the weight
    rows `variants` float[V, 6] (row 0: the accepted system itself), each checked per
    config.degenerate."""
    meter = Progress(config.num_classes, "FractalDB search", "categories") if progress else None
    search = data_keys.search_spec(config)
    check_spec = dataclasses.replace(search, image_size=64, points=4096, chains=256)
    try:
        params, variant_ok, stats = search_categories(
            rng,
            config.num_classes,
            config.min_maps,
            config.max_maps,
            config.fill_threshold,
            search,
            check_spec,
            variants,
            config.seed,
            config.degenerate,
            progress=meter,
        )
    except DegenerateVariants as e:
        raise UsageError(f"config key 'degenerate'='error': {e}; use resample or reject") from None
    if meter:
        meter.close()
    return ifs_table(params, variants, variant_ok), stats


def renderer(config, table) -> IFSImages:
    flips = 4 if config.flip == "index" else 1
    return IFSImages(table, data_keys.render_spec(config), config.instances, flips)


def preview_overrides(num: int, image_size: int) -> dict:
    return dict(
        points=data_keys.preview_points(image_size),
        search_points=20_000,
        search_size=128,
        fill_threshold=0.1,
    )
