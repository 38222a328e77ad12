"""A fractal family is a data config; its parameter table (categories x maps x 7) is built once
from numpy's seeded streams, can be saved and reloaded (npz + json), and is what the device
renderer draws from.

`data_config(family)` holds the one set of defaults that `configs/data/*.py` and the pre-training
configs share. `build_table(config)` validates the config (errors name the key) and returns a
`FamilyTable`.

Reproducibility: every candidate system comes from `np.random.default_rng(seed)`, so it is the
same on any machine. The search filters (fill rate, degeneracy) render candidates with the device
renderer in float32; a candidate whose fill rate sits within float noise of the threshold could
be judged differently on another backend. Set `table_path` to build a table once and ship it.
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import numpy as np

from synth_jax.config import config_to_dict, require_keys
from synth_jax.errors import UsageError
from synth_jax.files import atomic_path, write_json
from synth_jax.fractals import fractaldb, ifs, one_image, onepfrac, render, sigma
from synth_jax.progress import Progress

FAMILIES = ("fractaldb", "sigma", "onepfrac", "one_image")

_COMMON = dict(
    family="fractaldb",
    seed=0,  # seeds the parameter table (numpy) and, by default, the images
    num_classes=1000,
    image_size=224,  # 32..512
    points=100_000,  # chaos-game points per image
    chains=1024,  # parallel chains per image (points / chains steps each)
    burn_in=24,  # steps each chain runs before it records points
    pad=6,
    patch="point",  # point (FractalDB per-point 3x3) | stamp (one 3x3 per image) | none
    graded=False,  # intensity = hits / max hits, else binary
    flip="none",  # index (4 flips per instance, FractalDB) | random | none
    window=False,  # random window rescale U(0.5, 2) and shift +-0.2 (Anderson & Farrell)
    colour="gray",  # gray | hsv
    background="black",  # black | noise (smooth value noise, plasma-like)
    gray_value=255,  # foreground level of gray images
    dtype="uint8",  # uint8 | bfloat16 (same 0..255 scale)
    # Degenerate systems (divergent, NaN, one pixel): resample (redraw a system; FractalDB: render
    # a degenerate weight row as row 0) | reject (FractalDB: drop the category) | error (stop).
    degenerate="resample",
    table_path="",  # if set: load the table from this .npz, or build and save it there
)

_FAMILY = {
    "fractaldb": dict(
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
    ),
    "sigma": dict(
        patch="stamp",
        graded=True,
        flip="random",
        window=True,
        colour="hsv",
        background="noise",
        min_maps=2,
        max_maps=7,
        sigma=0.0,  # 0: sigma ~ U((5 + N) / 2, (6 + N) / 2) per system
        sigma_sampler="sequential",  # sequential | rejection
        images_per_category=1000,  # an epoch: num_classes x this (random stamps, colours, windows)
    ),
    "onepfrac": dict(
        gray_value=127,
        sigma=3.5,  # s0: the base system's sigma ~ U(s0 - jitter, s0 + jitter)
        sigma_jitter=0.1,
        delta=0.1,  # perturbation size Delta
        perturbation="multiplicative",  # multiplicative (released code) | additive (paper)
        fill_threshold=0.05,  # redraw a category while its fill rate <= this
        search_points=100_000,
        search_size=512,
        images_per_category=1,
    ),
    "one_image": dict(
        patch="none",
        photo="china",  # china | flower (scikit-learn samples) | path to an image file
        delta=0.2,  # each affine parameter of a category perturbed by U(-delta, delta)
        images_per_category=1,
    ),
}

_CHOICES = {
    "patch": ("point", "stamp", "none"),
    "flip": ("index", "random", "none"),
    "colour": ("gray", "hsv"),
    "background": ("black", "noise"),
    "dtype": ("uint8", "bfloat16"),
    "degenerate": ("resample", "reject", "error"),
    "weights": tuple(fractaldb.WEIGHT_FACTORS),
    "sigma_sampler": ("sequential", "rejection"),
    "perturbation": ("multiplicative", "additive"),
}


def data_config(family: str, **overrides) -> ml_collections.ConfigDict:
    """The default data config of `family` (fractaldb | sigma | onepfrac | one_image)."""
    if family not in FAMILIES:
        raise UsageError(f"data family {family!r} is unknown; one of: {', '.join(FAMILIES)}")
    values = {**_COMMON, **_FAMILY[family], "family": family}
    for key, value in overrides.items():
        if key not in values:
            raise UsageError(f"data config key {key!r} is unknown for family {family!r}")
        values[key] = value
    return ml_collections.ConfigDict(values)


def validate(config) -> None:
    """Raises UsageError naming the first bad key of a data config."""
    family = config.get("family")
    if family not in FAMILIES:
        raise UsageError(f"config key 'family'={family!r}: expected one of {', '.join(FAMILIES)}")
    allowed = {k: None for k in {**_COMMON, **_FAMILY[family]}}
    require_keys(config, allowed)
    for key, choices in _CHOICES.items():
        if key in config and config[key] not in choices:
            raise UsageError(f"config key {key!r}={config[key]!r}: expected one of {choices}")

    def check(key, ok, what):
        if key in config and not ok(config[key]):
            raise UsageError(f"config key {key!r}={config[key]!r}: expected {what}")

    check("image_size", lambda v: isinstance(v, int) and 32 <= v <= 512, "an integer in 32..512")
    check("search_size", lambda v: isinstance(v, int) and 32 <= v <= 1024, "an integer 32..1024")
    for key in ("num_classes", "points", "chains", "search_points", "instances"):
        check(key, lambda v: isinstance(v, int) and v >= 1, "a positive integer")
    check("images_per_category", lambda v: isinstance(v, int) and v >= 1, "a positive integer")
    check("burn_in", lambda v: isinstance(v, int) and v >= 0, "a non-negative integer")
    check("pad", lambda v: 0 <= v < config.image_size // 2 - 1, "0 <= pad < image_size / 2 - 1")
    check("gray_value", lambda v: 1 <= v <= 255, "an integer in 1..255")
    check("seed", lambda v: isinstance(v, int) and 0 <= v < 2**31, "an integer in [0, 2^31)")
    check("fill_threshold", lambda v: 0 <= v < 1, "a number in [0, 1)")
    check("delta", lambda v: 0 <= v < 1, "a number in [0, 1)")
    check("min_maps", lambda v: 2 <= v <= ifs.MAX_MAPS, f"an integer in 2..{ifs.MAX_MAPS}")
    check("max_maps", lambda v: config.min_maps <= v <= ifs.MAX_MAPS, "min_maps..7")
    check("sigma", lambda v: v == 0 or v > 0, "0 (the default range) or a positive number")
    if family == "onepfrac":
        check(
            "sigma",
            lambda v: 0.5 < v - config.sigma_jitter and v + config.sigma_jitter <= 6,
            "s0 with s0 +- sigma_jitter inside (0.5, 6] (N = 2 maps)",
        )
    if family == "sigma" and config.sigma:
        check("sigma", lambda v: v <= 3 * config.min_maps, "at most 3 * min_maps")
    if family == "one_image":
        photo = config.photo
        if photo not in one_image.SAMPLE_PHOTOS and not os.path.isfile(photo):
            raise UsageError(
                f"config key 'photo'={photo!r}: not one of {one_image.SAMPLE_PHOTOS} nor a file"
            )


def render_spec(config, **overrides) -> render.RenderSpec:
    """The RenderSpec of a data config's images."""
    spec = render.RenderSpec(
        image_size=config.image_size,
        points=config.points,
        chains=min(config.chains, config.points),
        burn_in=config.burn_in,
        pad=config.pad,
        patch=config.patch,
        graded=config.graded,
        random_flip=config.flip == "random",
        window=config.window,
        colour=config.colour,
        background=config.background,
        gray_value=config.gray_value,
        dtype=config.dtype,
    )
    return dataclasses.replace(spec, **overrides)


def search_spec(config) -> render.RenderSpec:
    """The filter's render: search_points at search_size with per-point patches, no window."""
    return render_spec(
        config,
        image_size=config.search_size,
        points=config.search_points,
        chains=min(config.chains, config.search_points),
        patch="point",
        window=False,
        random_flip=False,
    )


@dataclasses.dataclass
class FamilyTable:
    """params: float32[C, N, 7] rows (a..f, p); variants: float32[V, 6] factors on a..f (the
    FractalDB weight rows; one row of ones elsewhere); variant_ok: bool[C, V], False where a
    (category, row) is degenerate and is rendered as row 0; stats: what the build drew and
    rejected."""

    family: str
    params: np.ndarray
    variants: np.ndarray
    variant_ok: np.ndarray
    stats: dict
    config: dict

    @property
    def num_classes(self) -> int:
        return int(self.params.shape[0])


def _fingerprint(config) -> dict:
    """The config keys that determine the table (image options do not)."""
    image_only = {"image_size", "points", "chains", "burn_in", "pad", "patch", "graded", "flip",
                  "window", "colour", "background", "gray_value", "dtype", "table_path",
                  "images_per_category", "instances"}  # fmt: skip
    return {k: v for k, v in config_to_dict(config).items() if k not in image_only}


def build_table(config, progress: bool = False) -> FamilyTable:
    """Validates `config` and builds (or loads from config.table_path) the family's table."""
    validate(config)
    if config.table_path and os.path.exists(config.table_path):
        table = load_table(config.table_path)
        if table.config != _fingerprint(config):
            raise UsageError(
                f"config key 'table_path'={config.table_path!r}: the table there was built from a "
                f"different config ({table.config}); remove the file or point table_path elsewhere"
            )
        return table
    table = _build(config, progress)
    if config.table_path:
        save_table(config.table_path, table)
    return table


def _build(config, progress: bool) -> FamilyTable:
    rng = np.random.default_rng(config.seed)
    family = config.family
    variants = np.ones((1, 6))
    variant_ok = None
    stats: dict = {}
    if family == "fractaldb":
        variants = fractaldb.weight_rows(config.weights)
        meter = Progress(config.num_classes, "FractalDB search", "categories") if progress else None
        check = dataclasses.replace(search_spec(config), image_size=64, points=4096, chains=256)
        try:
            params, variant_ok, stats = fractaldb.search_categories(
                rng, config.num_classes, config.min_maps, config.max_maps, config.fill_threshold,
                search_spec(config), check, variants, config.seed, config.degenerate,
                progress=meter,
            )  # fmt: skip
        except fractaldb.DegenerateVariants as e:
            raise UsageError(
                f"config key 'degenerate'='error': {e}; use resample or reject"
            ) from None
        if meter:
            meter.close()
    elif family == "sigma":
        params, stats = _sigma_table(rng, config)
    elif family == "onepfrac":
        params, base, stats = onepfrac.build_categories(
            rng, config.num_classes, config.sigma, config.sigma_jitter, config.delta,
            config.perturbation, config.fill_threshold, search_spec(config), config.seed,
        )  # fmt: skip
        stats["base_system"] = base.tolist()
    else:
        params = one_image.sample_affines(rng, config.num_classes, config.delta)
    if variant_ok is None:
        variant_ok = np.ones((len(params), len(variants)), bool)
    return FamilyTable(family, params.astype(np.float32), variants.astype(np.float32),
                       variant_ok, stats, _fingerprint(config))  # fmt: skip


def _sigma_table(rng, config):
    """Sigma-factor systems; degenerate ones (rare: they are contractive) are redrawn or refused."""
    spec = dataclasses.replace(render_spec(config), window=False, random_flip=False)
    draw = lambda: ifs.pad_maps(
        sigma.sample_sigma_system(
            rng,
            int(rng.integers(config.min_maps, config.max_maps + 1)),
            config.sigma or None,
            config.sigma_sampler,
        )
    )
    params = np.stack([draw() for _ in range(config.num_classes)])
    stats = {"redrawn": 0}
    for round_ in range(100):
        _, degenerate = render.batch_statistics(params, config.seed + round_, spec)
        bad = np.flatnonzero(degenerate)
        if len(bad) == 0:
            return params, stats
        if config.degenerate == "error":  # (reject and resample are the same here)
            raise UsageError(
                f"config key 'degenerate'='error': categories {bad[:10].tolist()} render "
                f"degenerate images; use degenerate=resample or another seed"
            )
        stats["redrawn"] += len(bad)
        params[bad] = np.stack([draw() for _ in bad])
    raise RuntimeError("sigma family: degenerate systems after 100 redraws")


def save_table(path: str, table: FamilyTable) -> None:
    """Writes `path` (.npz: params, variants) and `path`.json (family, stats, config) atomically."""
    if not path.endswith(".npz"):
        raise UsageError(f"config key 'table_path'={path!r}: expected a .npz path")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, params=table.params, variants=table.variants, variant_ok=table.variant_ok)
    write_json(path + ".json", {"family": table.family, "stats": table.stats,
                                "config": table.config})  # fmt: skip


def load_table(path: str) -> FamilyTable:
    try:
        with np.load(path) as data:
            params, variants, variant_ok = data["params"], data["variants"], data["variant_ok"]
        with open(path + ".json") as f:
            meta = json.load(f)
    except (OSError, KeyError, ValueError) as e:
        raise UsageError(f"table {path!r}: cannot read it ({e}); delete it to rebuild") from None
    return FamilyTable(meta["family"], params, variants, variant_ok, meta["stats"], meta["config"])
