"""Dead leaves ("Learning to See by Looking at Noise", Baradad et al., NeurIPS 2021): shapes of
random colours dropped in painter's order, each on top, until none of the image is left
uncovered; the `dead_leaves` data family (see synth_jax.fractals.family).

A draw of up to `max_shapes` shapes: radius r on a grid of 200 points evenly spaced in
[0.03, 1] (fractions of the image side) with pmf proportional to r^-3 - 1 (u ~ U(0, 1), the grid
point whose CDF is nearest to u), max(int(r * size), 1) pixels; centre a uniform integer pixel;
colour uniform RGB in 0..255; shape by `shapes`:
    squares   axis-aligned squares of side r sqrt(2) (inscribed in the circle of radius r),
              corners truncated to integers;
    oriented  those squares rotated by U(0, 2 pi) about their centre (corners truncated first);
    mixed     ("Shapes") uniform over circle, square, oriented square, rectangle (corners
              (+-r cos a, +-r sin a), a ~ U(0, pi/2)), triangle and quadrilateral (3 or 4 sorted
              angles ~ U(0, 2 pi) on the circle of radius r).
Shape vertices are rounded to pixels and a pixel is covered when its centre lies in the shape.

The stop rule without a sequential loop (the two-pass form): with first[p] the smallest shape
index covering pixel p, coverage completes at T = max_p first[p], and pixel p shows the colour of
the largest index <= T covering it. The device walks the pixels of the shapes' bounding boxes,
shape after shape, in fixed windows, keeping for each pixel the first and the latest covering
shape, and stops in the window where the last pixel is covered (T: about 1,100-2,750 shapes,
a few dozen bounding-box pixels each, so a handful of windows).

Categories: a dead-leaves image has no parameters besides its random draw, so a category is one
image (exemplar classification: the supervised stand-in for the paper's contrastive training, in
which two crops of one image are positives); the trainer's augmentations make its instances
differ. Its shapes come from the category key of the data config's seed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.config import check
from synth_jax.fractals.engine import draw_keys

NAME = "dead_leaves"
RADIUS_GRID = np.linspace(0.03, 1.0, 200)
RADIUS_CDF = np.cumsum(RADIUS_GRID**-3.0 - 1.0) / np.sum(RADIUS_GRID**-3.0 - 1.0)
WINDOW_IMAGES = 4  # the painter's window: 4 images' worth of bounding-box pixels per pass
KINDS = ("circle", "square", "oriented", "rectangle", "triangle", "quadrilateral")

DEFAULTS = dict(
    image_size=128,  # the paper's small scale (256: large scale)
    shapes="mixed",  # squares | oriented | mixed
    max_shapes=5000,  # the original's cap; coverage completes long before it
    degenerate="keep",  # an image still uncovered after max_shapes keeps its black pixels
)
CHOICES = {"shapes": ("squares", "oriented", "mixed"), "degenerate": ("keep",)}
TABLE_FREE_KEYS = ("shapes", "max_shapes")


def validate(config) -> None:
    check(
        config,
        "max_shapes",
        lambda v: isinstance(v, int) and 1 <= v <= 1_000_000,
        "an integer in 1..1000000",
    )


def build_table(config, rng, progress: bool) -> tuple[dict, dict]:
    """No table: each category's shapes are drawn on the device from its key."""
    return {}, {}


def radius_index(u: jax.Array) -> jax.Array:
    """The grid point whose CDF is nearest to u ~ U(0, 1): int32[...] into RADIUS_GRID."""
    cdf = jnp.asarray(RADIUS_CDF, jnp.float32)
    above = jnp.clip(jnp.searchsorted(cdf, u), 0, len(RADIUS_GRID) - 1)
    below = jnp.maximum(above - 1, 0)
    return jnp.where(jnp.abs(cdf[below] - u) <= jnp.abs(cdf[above] - u), below, above)


def sample_shapes(key: jax.Array, count: int, size: int, shapes: str) -> dict:
    """`count` shapes of one image (draw order = paint order) on a size x size image:
    centre int32[count, 2] (x, y), radius float32[count] (pixels), kind int32[count] (index
    into KINDS), vertices float32[count, 4, 2] (rounded offsets from the centre, in increasing
    angle; triangles repeat their first vertex), colour int32[count, 3]."""
    ks = jax.random.split(key, 7)
    r = jnp.asarray(RADIUS_GRID, jnp.float32)[radius_index(jax.random.uniform(ks[0], (count,)))]
    radius = jnp.maximum(jnp.floor(r * size), 1.0)
    centre = jax.random.randint(ks[1], (count, 2), 0, size)
    colour = jax.random.randint(ks[2], (count, 3), 0, 256)
    if shapes == "squares":
        kind = jnp.full(count, 1, jnp.int32)
    elif shapes == "oriented":
        kind = jnp.full(count, 2, jnp.int32)
    else:
        kind = jax.random.randint(ks[3], (count,), 0, len(KINDS))
    spin = jax.random.uniform(ks[4], (count,), maxval=2 * math.pi)
    tilt = jax.random.uniform(ks[5], (count,), maxval=math.pi / 2)
    angles = jnp.sort(jax.random.uniform(ks[6], (count, 4), maxval=2 * math.pi), axis=1)

    # Squares: corners (+-h, +-h), h = trunc(r / sqrt 2), in increasing angle; oriented ones
    # rotate those integer corners.
    h = jnp.floor(radius / math.sqrt(2.0))[:, None]
    square = jnp.stack(
        [
            jnp.stack([h, h], -1),
            jnp.stack([-h, h], -1),
            jnp.stack([-h, -h], -1),
            jnp.stack([h, -h], -1),
        ],
        1,
    )[:, :, 0]
    cos, sin = jnp.cos(spin)[:, None], jnp.sin(spin)[:, None]
    rotated = jnp.stack(
        [cos * square[..., 0] - sin * square[..., 1], sin * square[..., 0] + cos * square[..., 1]],
        -1,
    )
    a, b = radius * jnp.cos(tilt), radius * jnp.sin(tilt)
    rectangle = jnp.stack(
        [
            jnp.stack([a, b], -1),
            jnp.stack([-a, b], -1),
            jnp.stack([-a, -b], -1),
            jnp.stack([a, -b], -1),
        ],
        1,
    )
    on_circle = radius[:, None, None] * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
    triangle = on_circle.at[:, 3].set(on_circle[:, 0])
    by_kind = jnp.stack([square, square, rotated, rectangle, triangle, on_circle], 1)
    vertices = jnp.round(jnp.take_along_axis(by_kind, kind[:, None, None, None], 1)[:, 0])
    return dict(centre=centre, radius=radius, kind=kind, vertices=vertices, colour=colour)


def covers(shape: dict, dx: jax.Array, dy: jax.Array) -> jax.Array:
    """Does the shape (one row of sample_shapes' arrays, broadcastable against dx, dy) cover the
    pixel at offset (dx, dy) from its centre? Circles: dx^2 + dy^2 <= r^2; polygons: inside the
    vertices' bounding box (a polygon collapsed to a point is that pixel) and on the inner side
    of (or on) every edge of the convex polygon, vertices in increasing angle."""
    v = shape["vertices"]
    inside = (dx >= v[..., 0].min(-1)) & (dx <= v[..., 0].max(-1))
    inside &= (dy >= v[..., 1].min(-1)) & (dy <= v[..., 1].max(-1))
    for i in range(4):
        ax, ay = v[..., i, 0], v[..., i, 1]
        bx, by = v[..., (i + 1) % 4, 0], v[..., (i + 1) % 4, 1]
        inside &= (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) >= 0
    disc = dx * dx + dy * dy <= shape["radius"] ** 2
    return jnp.where(shape["kind"] == 0, disc, inside)


def bounding_boxes(shapes: dict, size: int):
    """Each shape's pixel bounding box clipped to the image: (x0, y0, width, height) int32[S]."""
    centre = shapes["centre"].astype(jnp.float32)
    r = shapes["radius"]
    v = shapes["vertices"]
    circle = shapes["kind"] == 0
    lo_x = jnp.where(circle, -r, v[..., 0].min(-1)) + centre[:, 0]
    hi_x = jnp.where(circle, r, v[..., 0].max(-1)) + centre[:, 0]
    lo_y = jnp.where(circle, -r, v[..., 1].min(-1)) + centre[:, 1]
    hi_y = jnp.where(circle, r, v[..., 1].max(-1)) + centre[:, 1]
    x0 = jnp.clip(jnp.ceil(lo_x), 0, size - 1)
    y0 = jnp.clip(jnp.ceil(lo_y), 0, size - 1)
    width = jnp.maximum(jnp.minimum(jnp.floor(hi_x), size - 1) - x0 + 1, 0)
    height = jnp.maximum(jnp.minimum(jnp.floor(hi_y), size - 1) - y0 + 1, 0)
    return (
        x0.astype(jnp.int32),
        y0.astype(jnp.int32),
        width.astype(jnp.int32),
        height.astype(jnp.int32),
    )


def paint(shapes: dict, size: int, max_shapes: int):
    """The dead-leaves image of `shapes` (draw order = paint order), stopped when coverage is
    complete: (shape index int32[size * size] shown at each pixel, -1 where uncovered;
    complete bool; stop int32: the index T that completed coverage, or max_shapes).

    The pixels of every shape's bounding box, shape after shape, form one stream; it is walked
    in windows of WINDOW_IMAGES x size^2 samples (a sample finds its shape by a scatter of
    shape starts and a running maximum). Each window lowers first[p] (the first shape covering
    p) and raises shown[p] (the last); in the window where every pixel is covered, T = max_p
    first[p] is known and only shapes up to T paint. Shapes in earlier windows precede T."""
    pixels = size * size
    window = WINDOW_IMAGES * pixels
    big = jnp.int32(2**30)
    index = jnp.arange(len(shapes["radius"]), dtype=jnp.int32)
    x0, y0, width, height = bounding_boxes(shapes, size)
    area = jnp.where(index < max_shapes, width * height, 0)
    cum = jnp.cumsum(area)
    start, total = cum - area, cum[-1]
    # Rows gathered per sample: the shape's vertices, radius, kind and box corner (float32).
    table = jnp.concatenate(
        [
            shapes["vertices"].reshape(-1, 8),
            shapes["radius"][:, None],
            shapes["kind"][:, None].astype(jnp.float32),
            shapes["centre"].astype(jnp.float32),
        ],
        1,
    )

    def step(state):
        w, first, shown, _, stop = state
        base = w * window
        # The shape holding the window's first sample, then those starting inside it.
        s0 = jnp.searchsorted(cum, base, side="right").astype(jnp.int32)
        local = jnp.where(
            (area > 0) & (start >= base) & (start < base + window), start - base, window
        )
        owner = jnp.full(window, -1, jnp.int32).at[local].max(index, mode="drop")
        shape = jnp.minimum(jnp.maximum(jax.lax.cummax(owner), s0), len(index) - 1)
        position = base + jnp.arange(window, dtype=jnp.int32)
        qy, qx = jnp.divmod(position - start[shape], jnp.maximum(width[shape], 1))
        px, py = x0[shape] + qx, y0[shape] + qy
        row = table[shape]
        one = dict(vertices=row[:, :8].reshape(-1, 4, 2), radius=row[:, 8], kind=row[:, 9])
        hit = (position < total) & covers(one, px - row[:, 10], py - row[:, 11])
        pixel = jnp.where(hit, py * size + px, pixels)
        first = jnp.minimum(first, jnp.full(pixels + 1, big).at[pixel].min(shape)[:pixels])
        complete = jnp.all(first < big)
        stop = jnp.where(complete, jnp.max(first), stop)
        painted = jnp.where(hit & (shape <= jnp.where(complete, stop, big)), pixel, pixels)
        shown = jnp.maximum(shown, jnp.full(pixels + 1, -1).at[painted].max(shape)[:pixels])
        return w + 1, first, shown, complete, stop

    def more(state):
        w, _, _, complete, _ = state
        return ~complete & (w * window < total)

    start_state = (
        jnp.int32(0),
        jnp.full(pixels, big),
        jnp.full(pixels, -1, jnp.int32),
        jnp.bool_(False),
        jnp.int32(max_shapes),
    )
    _, _, shown, complete, stop = jax.lax.while_loop(more, step, start_state)
    return shown, complete, stop


class DeadLeavesImages:
    """Image i shows category i (one image per category), drawn from the category key."""

    images_per_category = 1

    def __init__(self, config):
        self.size = int(config.image_size)
        self.max_shapes = int(config.max_shapes)
        self.shapes = config.shapes
        self.seed = int(config.seed)
        self.dtype = config.dtype

    def decompose(self, indices):
        """Global indices int[B] -> (category,): one image per category."""
        return (jnp.asarray(indices, jnp.int32),)

    def draw(self, key):
        """One image of the category key `key`: (uint8[size, size, 3], info)."""
        shapes = sample_shapes(key, self.max_shapes, self.size, self.shapes)
        shown, complete, stop = paint(shapes, self.size, self.max_shapes)
        colour = jnp.where(shown[:, None] >= 0, shapes["colour"][jnp.maximum(shown, 0)], 0)
        info = {"degenerate": ~complete, "fill": jnp.mean(shown >= 0), "shapes": stop}
        return colour.reshape(self.size, self.size, 3).astype(jnp.uint8), info

    def render(self, seed, indices):
        """seed: unused (each image is its category's); indices int32[B] -> (images
        [B, size, size, 3] uint8|bfloat16 on the 0..255 scale, labels int32[B], info of [B]:
        degenerate (coverage incomplete after max_shapes), fill (covered fraction), shapes
        (the shape index T that completed coverage))."""
        category = jnp.asarray(indices, jnp.int32)
        keys = draw_keys.category_keys(self.seed, NAME, category)
        images, info = jax.vmap(self.draw)(keys)
        return images.astype(jnp.uint8 if self.dtype == "uint8" else jnp.bfloat16), category, info


def renderer(config, table) -> DeadLeavesImages:
    return DeadLeavesImages(config)


def preview_overrides(num: int, image_size: int) -> dict:
    return {}
