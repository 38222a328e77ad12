"""1p-frac (Nakamura et al., ECCV 2024): one fractal and C local perturbations of it; the
`onepfrac` data family (see synth_jax.fractals.family)."""

from __future__ import annotations

import numpy as np

from synth_jax.config import check, check_choice
from synth_jax.fractals.engine import data_keys, ifs, render
from synth_jax.fractals.engine.ifs_images import IFSImages, ifs_table
from synth_jax.fractals.families import sigma


def sample_base_system(rng: np.random.Generator, sigma_centre: float, jitter: float, num_maps=2):
    """The base system: N maps from the sigma-factor sampler, sigma ~ U(s0 - jitter, s0 + jitter).
    float[N, 7] (p from the unperturbed maps)."""
    s = float(rng.uniform(sigma_centre - jitter, sigma_centre + jitter))
    return sigma.sample_sigma_system(rng, num_maps, s)


def perturb(rng: np.random.Generator, base: np.ndarray, count: int, delta: float, mode: str):
    """`count` perturbed copies float[count, N, 7] of base float[N, 7]: each of a..f of each map
    times an independent U(1 - delta, 1 + delta) ("multiplicative", the released code) or plus
    U(-delta / 2, delta / 2) ("additive", the paper's formula). p stays the base's."""
    shape = (count, *base[:, :6].shape)
    out = np.repeat(base[None], count, 0).astype(np.float64)
    if mode == "multiplicative":
        out[..., :6] *= rng.uniform(1 - delta, 1 + delta, shape)
    elif mode == "additive":
        out[..., :6] += rng.uniform(-delta / 2, delta / 2, shape)
    else:
        raise ValueError(f"perturbation={mode!r}: expected multiplicative or additive")
    return out


def build_categories(
    rng: np.random.Generator,
    num_classes: int,
    sigma_centre: float,
    jitter: float,
    delta: float,
    mode: str,
    fill_threshold: float,
    search_spec: render.RenderSpec,
    seed: int,
    max_rounds: int = 1000,
):
    """Base system plus C perturbations, redrawing each one whose per-point-patch render fills
    no more than `fill_threshold` (1p-frac: 0.05) or is degenerate.
    Returns (params float[C, 7, 7], base float[N, 7], stats)."""
    base = sample_base_system(rng, sigma_centre, jitter)
    params = perturb(rng, base, num_classes, delta, mode)
    todo = np.arange(num_classes)
    stats = {"redrawn": 0}
    for round_ in range(max_rounds):
        fill, degenerate = render.batch_statistics(params[todo], seed + round_, search_spec)
        bad = (fill <= fill_threshold) | degenerate
        todo = todo[bad]
        if len(todo) == 0:
            break
        stats["redrawn"] += len(todo)
        params[todo] = perturb(rng, base, len(todo), delta, mode)
    else:
        raise RuntimeError(
            f"1p-frac: {len(todo)} categories still fill <= {fill_threshold} after "
            f"{max_rounds} redraws; the base system is too thin, change seed or sigma"
        )
    padded = np.stack([ifs.pad_maps(p) for p in params])
    return padded, base, stats


# -- the data family ---------------------------------------------------------------------------
DEFAULTS = dict(
    gray_value=127,
    sigma=3.5,  # s0: the base system's sigma ~ U(s0 - jitter, s0 + jitter)
    sigma_jitter=0.1,
    delta=0.1,  # perturbation size Delta
    perturbation="multiplicative",  # multiplicative (released code) | additive (paper)
    fill_threshold=0.05,  # redraw a category while its fill rate <= this
    search_points=100_000,
    search_size=512,
    images_per_category=1,
)
TABLE_FREE_KEYS = ("images_per_category",)


def validate(config) -> None:
    check_choice(config, "perturbation", ("multiplicative", "additive"))
    data_keys.check_search_keys(config)
    check(config, "images_per_category", data_keys.positive_int, "a positive integer")
    check(config, "delta", lambda v: 0 <= v < 1, "a number in [0, 1)")
    check(config, "sigma", lambda v: v == 0 or v > 0, "0 (the default range) or a positive number")
    check(
        config,
        "sigma",
        lambda v: 0.5 < v - config.sigma_jitter and v + config.sigma_jitter <= 6,
        "s0 with s0 +- sigma_jitter inside (0.5, 6] (N = 2 maps)",
    )


def build_table(config, rng: np.random.Generator, progress: bool) -> tuple[dict, dict]:
    params, base, stats = build_categories(
        rng,
        config.num_classes,
        config.sigma,
        config.sigma_jitter,
        config.delta,
        config.perturbation,
        config.fill_threshold,
        data_keys.search_spec(config),
        config.seed,
    )
    stats["base_system"] = base.tolist()
    return ifs_table(params), stats


def renderer(config, table) -> IFSImages:
    return IFSImages(table, data_keys.render_spec(config), config.images_per_category)


def preview_overrides(num: int, image_size: int) -> dict:
    return dict(points=data_keys.preview_points(image_size), search_points=20_000, search_size=128)
