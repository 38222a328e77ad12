"""The data-config keys every family shares (image size, points, patches, colours, seed, table
path), their checks, and the `RenderSpec` a config describes.

A family module adds its own keys on top (`DEFAULTS`, which may also change a shared default)
and checks them itself; `synth_jax.fractals.family` joins the two.
"""

from __future__ import annotations

import dataclasses

from synth_jax.config import check, check_choice
from synth_jax.fractals.engine import ifs, render

SHARED_DEFAULTS = dict(
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
    colour="gray",  # gray | hsv | hsv8 (Anderson & Farrell's 8-bit OpenCV HSV colouring)
    background="black",  # black | noise (smooth value noise) | plasma (diamond-square, A&F)
    gray_value=255,  # foreground level of gray images
    dtype="uint8",  # uint8 | bfloat16 (same 0..255 scale)
    # Degenerate systems (divergent, NaN, one pixel): resample (redraw a system; FractalDB: render
    # a degenerate weight row as row 0) | reject (FractalDB: drop the category) | error (stop).
    degenerate="resample",
    table_path="",  # if set: load the table from this .npz, or build and save it there
    # Label noise: a fraction p of the images get a uniformly drawn label instead of their
    # category, a pure function of (seed, index) (synth_jax.fractals.dataset.noisy_labels)
    label_noise=0.0,
)

SHARED_CHOICES = {
    "patch": ("point", "stamp", "none"),
    "flip": ("index", "random", "none"),
    "colour": ("gray", "hsv", "hsv8"),
    "background": ("black", "noise", "plasma"),
    "dtype": ("uint8", "bfloat16"),
    "degenerate": ("resample", "reject", "error"),
}

# Shared keys that change the images but not the parameter table (left out of its fingerprint).
TABLE_FREE_KEYS = (
    "image_size",
    "points",
    "chains",
    "burn_in",
    "pad",
    "patch",
    "graded",
    "flip",
    "window",
    "colour",
    "background",
    "gray_value",
    "dtype",
    "table_path",
    "label_noise",
)


def positive_int(v) -> bool:
    return isinstance(v, int) and v >= 1


def check_shared(config, own_choices=()) -> None:
    """Raises UsageError naming the first bad shared key; keys in `own_choices` (a family's
    CHOICES that redefine a shared key's values, e.g. degenerate) are the family's to check."""
    for key, choices in SHARED_CHOICES.items():
        if key not in own_choices:
            check_choice(config, key, choices)
    check(
        config,
        "image_size",
        lambda v: isinstance(v, int) and 32 <= v <= 512,
        "an integer in 32..512",
    )
    for key in ("num_classes", "points", "chains"):
        check(config, key, positive_int, "a positive integer")
    check(config, "burn_in", lambda v: isinstance(v, int) and v >= 0, "a non-negative integer")
    check(
        config,
        "pad",
        lambda v: 0 <= v < config.image_size // 2 - 1,
        "0 <= pad < image_size / 2 - 1",
    )
    check(config, "gray_value", lambda v: 1 <= v <= 255, "an integer in 1..255")
    check(config, "label_noise", lambda v: 0.0 <= float(v) <= 1.0, "a fraction in [0, 1]")
    check(
        config, "seed", lambda v: isinstance(v, int) and 0 <= v < 2**31, "an integer in [0, 2^31)"
    )


def check_search_keys(config) -> None:
    """The keys of a family that filters systems by rendering them (fractaldb, onepfrac)."""
    check(
        config,
        "search_size",
        lambda v: isinstance(v, int) and 32 <= v <= 1024,
        "an integer 32..1024",
    )
    check(config, "search_points", positive_int, "a positive integer")
    check(config, "fill_threshold", lambda v: 0 <= v < 1, "a number in [0, 1)")


def check_map_counts(config) -> None:
    """min_maps / max_maps of a family that draws systems of 2..7 maps (fractaldb, sigma)."""
    check(config, "min_maps", lambda v: 2 <= v <= ifs.MAX_MAPS, f"an integer in 2..{ifs.MAX_MAPS}")
    check(config, "max_maps", lambda v: config.min_maps <= v <= ifs.MAX_MAPS, "min_maps..7")


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


def preview_points(image_size: int) -> int:
    """Chaos-game points of a preview image: dense enough to see, cheap enough for a laptop."""
    return min(50_000, 40 * image_size**2)
