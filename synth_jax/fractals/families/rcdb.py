"""RCDB, the Radial Contour DataBase (Kataoka et al., CVPR 2022): VisualAtom's predecessor on the
same orbit engine, without sine waves, with few vertices and noise scaled by two; the `rcdb`
data family (see synth_jax.fractals.family for what a family module defines).

Per category (the table): V = floor(Exponential(mean mean_vertices)) redrawn until
min_vertices <= V <= max_vertices (the paper's "number of polygons"), K ~ U{min..max_orbits}
contours, noise coefficient c ~ U(min_noise, max_noise) and an additive radial step
lw ~ U(0, max_line_width). Per instance (on the device, from the instance key): start radius
r0 ~ U{min_radius..max_radius} px@512, "resizing factors" ox, oy ~ U(1, max_oval), the centre
((512 + U{-centre_range..centre_range}) / 2 per axis), a grey U{0..256} (256 clipped to 255)
per contour, and fresh noise p = pn(U(0, 10^4)) per vertex, contour and axis. Orbit 0 is
(cx + r0 ox cos theta_v, cy + r0 oy sin theta_v), theta_v = 2 pi v / V, and each contour
k = 1..K moves every vertex by cos theta_v (c (1 - 2 p_x) + lw) in x and
sin theta_v (c (1 - 2 p_y) + lw) in y (some steps are negative: contours cross).
(The original draws r0, ox, oy and the centre with the category for its instance 0 and
redraws them for every later one: per instance in effect.)

The original draws grey lines on white. Every published RCDB figure shows light lines on black,
so `invert=True` (the default) draws 255 - the original image: black, with line greys still
uniform; `invert=False` is the original's white background. Which one produced the published
numbers is unknown.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.config import check
from synth_jax.fractals.engine import draw_keys, orbits, perlin

NAME = "rcdb"

DEFAULTS = dict(
    min_vertices=3,
    max_vertices=200,
    mean_vertices=100.0,  # V = floor(Exponential(this)), redrawn until within min..max
    min_orbits=1,
    max_orbits=200,
    min_noise=0.0,
    max_noise=4.0,
    max_line_width=0.1,
    min_radius=0,  # px@512
    max_radius=100,
    max_oval=2.0,
    centre_range=400,  # the originals' start_pos: centre = (512 + U{-range..range}) / 2
    invert=True,  # black background (255 - the original); False: the original's white
    canvas_size=512,
    # Sample points per image, on average: a batch of B shares (B + 4) x this (see orbits).
    # Measured need at 512 over 400 draws: median 70k, 99% 204k, max 294k per image.
    stroke_samples=1 << 17,
    images_per_category=1000,
)
CHOICES = {"degenerate": ("resample", "keep")}
INT_COLUMNS = ("vertices", "orbits")
TABLE_FREE_KEYS = (
    "min_radius",
    "max_radius",
    "max_oval",
    "centre_range",
    "invert",
    "canvas_size",
    "stroke_samples",
    "images_per_category",
)


def validate(config) -> None:
    orbits.check_canvas_keys(config)
    orbits.check_range(config, "min_vertices", "max_vertices", (3, 4096), True)
    check(config, "mean_vertices", lambda v: 0 < v <= 1e6, "a positive number")
    accept = math.exp(-config.min_vertices / config.mean_vertices) - math.exp(
        -(config.max_vertices + 1) / config.mean_vertices
    )  # P(min <= floor(E) <= max): the rejection loop's acceptance rate
    check(
        config,
        "mean_vertices",
        lambda v: accept > 1e-4,
        "a mean that puts floor(Exponential(mean)) in min_vertices..max_vertices",
    )
    orbits.check_range(config, "min_orbits", "max_orbits", (1, 1000), True)
    orbits.check_range(config, "min_noise", "max_noise", (0.0, 100.0), False)
    check(config, "max_line_width", lambda v: 0 <= v <= 100, "a number in 0..100")
    orbits.check_range(config, "min_radius", "max_radius", (0, 4096), True)
    check(config, "max_oval", lambda v: 1 <= v <= 100, "a number in 1..100")
    check(
        config,
        "centre_range",
        lambda v: isinstance(v, int) and 0 <= v <= 4096,
        "an integer in 0..4096",
    )
    check(config, "invert", lambda v: isinstance(v, bool), "true or false")


def sample_category(rng: np.random.Generator, config) -> dict:
    """One category's values from its own stream (draw_keys.category_rng)."""
    while True:  # the original's rejection loop; accepts with probability >= 1 - e^-2 at defaults
        vertices = int(np.floor(rng.exponential(config.mean_vertices)))
        if config.min_vertices <= vertices <= config.max_vertices:
            break
    return dict(
        vertices=vertices,
        orbits=int(rng.integers(config.min_orbits, config.max_orbits + 1)),
        noise=rng.uniform(config.min_noise, config.max_noise),
        line_width=rng.uniform(0.0, config.max_line_width),
    )


def build_table(config, rng, progress: bool) -> tuple[dict, dict]:
    """The category values of every category (`rng` is unused: each category has its own)."""
    arrays = draw_keys.category_table(NAME, config, sample_category, INT_COLUMNS)
    return arrays, {"mean_vertices_drawn": round(float(arrays["vertices"].mean()), 2)}


def make_draw(config):
    """The per-instance draw of orbits.OrbitImages for this config's padded sizes."""
    v_max, k_max = config.max_vertices, config.max_orbits
    counter = (
        jnp.arange(k_max, dtype=jnp.uint32)[:, None] * v_max
        + jnp.arange(v_max, dtype=jnp.uint32)[None, :]
    ) * 2
    r_lo, r_hi, spread = config.min_radius, config.max_radius, config.centre_range
    max_oval, invert = config.max_oval, config.invert

    def draw(row, key):
        bits = jax.random.bits(key, (7 + k_max,), jnp.uint32)  # one threefry call per image
        centre = (orbits.FRAME + draw_keys.integers(bits[:2], -spread, spread)) / 2.0
        radius = draw_keys.integers(bits[2], r_lo, r_hi).astype(jnp.float32)
        oval = 1.0 + (max_oval - 1.0) * draw_keys.unit(bits[3:5])
        greys = jnp.minimum(draw_keys.integers(bits[7:], 0, 256), 255)
        greys = (255 - greys if invert else greys).astype(jnp.float32)
        words = bits[5:7]
        theta = 2.0 * math.pi * jnp.arange(v_max, dtype=jnp.float32) / row["vertices"]
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        c, lw = row["noise"], row["line_width"]
        px = perlin.white_noise(words, counter)
        py = perlin.white_noise(words, counter + 1)
        x = orbits.orbit_positions(
            centre[0] + radius * oval[0] * cos, cos * (c * (1 - 2 * px) + lw)
        )
        y = orbits.orbit_positions(
            centre[1] + radius * oval[1] * sin, sin * (c * (1 - 2 * py) + lw)
        )
        return x, y, row["vertices"], row["orbits"], greys

    return draw


def renderer(config, table) -> orbits.OrbitImages:
    background = 0.0 if config.invert else 255.0
    return orbits.OrbitImages(NAME, table, make_draw(config), config, background)


def preview_overrides(num: int, image_size: int) -> dict:
    return orbits.preview_canvas(image_size, DEFAULTS["stroke_samples"])
