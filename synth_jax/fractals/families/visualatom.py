"""VisualAtom (Takashima et al., CVPR 2023): K closed orbits of V vertices around a centre, each
pushed outward from the last by two integer-frequency sine waves plus per-vertex white noise,
drawn as 1-pixel grey strokes on black; the `visualatom` data family (see
synth_jax.fractals.family for what a family module defines).

Per category (the table, from the category key): V ~ U{min_vertices..max_vertices} (the paper's
"quantisation"), K ~ U{min_orbits..max_orbits}, frequencies n1, n2 ~ U{min..max_frequency} with
n2 != n1 unless n1 = 0, noise coefficient c ~ U(min_noise, max_noise), an additive radial step
lw ~ U(0, max_line_width) (the originals' "line_width": not a stroke width), start radius
r0 ~ U{min_radius..max_radius} px@512 and oval stretches ox, oy ~ U(1, max_oval).
Per instance (on the device, from the instance key): the centre ((512 + U{-512..512}) / 2 per
axis, px@512), a grey U{0..255} per orbit, and fresh noise p = pn(U(0, 10^4)) for every vertex,
orbit and axis (synth_jax.fractals.engine.perlin). With theta_v = 2 pi v / V and
wave_v = 0.5 sin(n1 theta_v) + 0.5 sin(n2 theta_v), orbit 0 is
(cx + r0 ox cos theta_v, cy + r0 oy sin theta_v) (not drawn) and each orbit k = 1..K moves every
vertex by cos theta_v (c (1 - p_x) + wave_v + lw) in x and sin theta_v (c (1 - p_y) + wave_v + lw)
in y; orbits are drawn in order, the last drawn wins (synth_jax.fractals.engine.orbits).

The defaults are the published VisualAtom-1k ranges (the authors' make_VisualAtom.sh). Most
contours leave the frame (the centre is anywhere in it and the mean growth is c + lw per orbit):
this is the published look, not a bug.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.config import check
from synth_jax.errors import UsageError
from synth_jax.fractals.engine import draw_keys, orbits, perlin

NAME = "visualatom"
WAVE_AMPLITUDE = 0.5  # per sine, per orbit step: fixed in the original generator

DEFAULTS = dict(
    min_vertices=200,
    max_vertices=1000,
    min_orbits=1,
    max_orbits=200,
    min_frequency=0,
    max_frequency=20,
    min_noise=0.0,  # the originals' perlin_min: c ~ U(perlin_min, perlin_min + 4)
    max_noise=4.0,
    max_line_width=0.1,
    min_radius=10,  # px@512
    max_radius=60,
    max_oval=2.0,
    canvas_size=512,  # strokes are 1 px on this canvas (512: the original frame), then resized
    # Sample points per image, on average: a batch of B shares (B + 4) x this (see orbits).
    # Measured need at 512 over 400 draws: median 165k, 99% 651k, max 767k per image.
    stroke_samples=1 << 18,
    images_per_category=1000,
)
CHOICES = {"degenerate": ("resample", "keep")}
INT_COLUMNS = ("vertices", "orbits", "n1", "n2")  # table columns stored as int32
TABLE_FREE_KEYS = ("canvas_size", "stroke_samples", "images_per_category")


def validate(config) -> None:
    orbits.check_canvas_keys(config)
    orbits.check_range(config, "min_vertices", "max_vertices", (3, 4096), True)
    orbits.check_range(config, "min_orbits", "max_orbits", (1, 1000), True)
    orbits.check_range(config, "min_frequency", "max_frequency", (0, 1000), True)
    if config.min_frequency == config.max_frequency != 0:
        raise UsageError(
            f"config key 'max_frequency'={config.max_frequency}: n2 must differ from n1, so "
            f"the range needs two frequencies (or be 0..0)"
        )
    orbits.check_range(config, "min_noise", "max_noise", (0.0, 100.0), False)
    check(config, "max_line_width", lambda v: 0 <= v <= 100, "a number in 0..100")
    orbits.check_range(config, "min_radius", "max_radius", (0, 4096), True)
    check(config, "max_oval", lambda v: 1 <= v <= 100, "a number in 1..100")


def sample_category(rng: np.random.Generator, config) -> dict:
    """One category's values from its own stream (draw_keys.category_rng), in the original
    generator's order; n2 is redrawn while it equals n1, unless n1 is 0."""
    integer = lambda low, high: int(rng.integers(low, high + 1))
    row = dict(
        vertices=integer(config.min_vertices, config.max_vertices),
        orbits=integer(config.min_orbits, config.max_orbits),
        n1=integer(config.min_frequency, config.max_frequency),
    )
    row["n2"] = integer(config.min_frequency, config.max_frequency)
    while row["n1"] != 0 and row["n2"] == row["n1"]:
        row["n2"] = integer(config.min_frequency, config.max_frequency)
    row["noise"] = rng.uniform(config.min_noise, config.max_noise)
    row["line_width"] = rng.uniform(0.0, config.max_line_width)
    row["radius"] = float(integer(config.min_radius, config.max_radius))
    row["oval_x"], row["oval_y"] = rng.uniform(1.0, config.max_oval, 2)
    return row


def build_table(config, rng, progress: bool) -> tuple[dict, dict]:
    """The category values of every category (`rng` is unused: each category has its own)."""
    arrays = draw_keys.category_table(NAME, config, sample_category, INT_COLUMNS)
    # sin(n1) + sin(n2) is symmetric: unordered pairs are the distinct waves (211 in 0..20).
    pairs = {(min(a, b), max(a, b)) for a, b in zip(arrays["n1"].tolist(), arrays["n2"].tolist())}
    return arrays, {"distinct_frequency_pairs": len(pairs)}


def make_draw(config):
    """The per-instance draw of orbits.OrbitImages for this config's padded sizes."""
    v_max, k_max = config.max_vertices, config.max_orbits
    counter = (
        jnp.arange(k_max, dtype=jnp.uint32)[:, None] * v_max
        + jnp.arange(v_max, dtype=jnp.uint32)[None, :]
    ) * 2

    def draw(row, key):
        bits = jax.random.bits(key, (4 + k_max,), jnp.uint32)  # one threefry call per image
        centre = (orbits.FRAME + draw_keys.integers(bits[:2], -512, 512)) / 2.0
        greys = draw_keys.integers(bits[4:], 0, 255).astype(jnp.float32)
        words = bits[2:4]
        theta = 2.0 * math.pi * jnp.arange(v_max, dtype=jnp.float32) / row["vertices"]
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        wave = WAVE_AMPLITUDE * (jnp.sin(row["n1"] * theta) + jnp.sin(row["n2"] * theta))
        c, lw = row["noise"], row["line_width"]
        px = perlin.white_noise(words, counter)
        py = perlin.white_noise(words, counter + 1)
        x = orbits.orbit_positions(
            centre[0] + row["radius"] * row["oval_x"] * cos, cos * (c * (1 - px) + wave + lw)
        )
        y = orbits.orbit_positions(
            centre[1] + row["radius"] * row["oval_y"] * sin, sin * (c * (1 - py) + wave + lw)
        )
        return x, y, row["vertices"], row["orbits"], greys

    return draw


def renderer(config, table) -> orbits.OrbitImages:
    return orbits.OrbitImages(NAME, table, make_draw(config), config, background=0.0)


def preview_overrides(num: int, image_size: int) -> dict:
    return orbits.preview_canvas(image_size, DEFAULTS["stroke_samples"])
