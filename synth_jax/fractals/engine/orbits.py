"""The orbit engine VisualAtom and RCDB share: closed polygons grown outward from a centre, drawn
as 1-pixel strokes on a square canvas, later orbits over earlier ones, then resized.

An image is K orbits of V vertices (padded to static maxima and masked). Orbit k is orbit k-1
pushed outward along each vertex's direction theta_v, so the orbit-k vertices are orbit 0 plus a
cumulative sum over k of the steps (the steps are independent across orbits).

Strokes are drawn the way PIL draws the originals' `line`s: hard 1-pixel lines on a canvas
(`canvas_size`, 512 for the published frame), no anti-aliasing, later orbits overwriting earlier
ones. A segment of L-infinity length m pixels gets m sample points, one per pixel step along
its major axis, so every line is 8-connected: no gaps (RCDB's failure-mode experiment shows
that broken contours destroy transfer). The samples of a batch come from one static pool of
(B + POOL_SPARE) x stroke_samples points: segment s of the flattened batch owns samples
[start_s, start_s + m_s) of a running count (an exclusive cumulative sum), and a sample finds
its segment by a scatter of segment starts and a running maximum; segments wholly outside the
canvas get none. Pooling over the batch lets one image take several times the average (the need
varies ~5x between images) while the pool tracks the batch's total. A batch whose strokes need
more than the pool is drawn with evenly thinned samples (dotted lines) and reported
(`overflow`).
"Last drawn wins" is a scatter-max of the orbit number per pixel, then a look-up of its grey.

Rendering at 512 and resizing to the training size is the original pipeline (PNGs at 512,
random-resized-crops at 224): the resize turns a 1-pixel stroke into a coverage-weighted stroke
of width R/512, so thin lines stay thin at low resolution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synth_jax.config import check
from synth_jax.fractals.engine import data_keys, draw_keys

FRAME = 512.0  # the originals' frame: every px@512 value is scaled by canvas_size / FRAME


def orbit_positions(start: jax.Array, steps: jax.Array) -> jax.Array:
    """Vertices of orbits 1..K: start float[V] (orbit 0) + cumulative steps float[K, V]."""
    return start[None, :] + jnp.cumsum(steps, axis=0)


POOL_SPARE = 4  # a batch's pool: (B + POOL_SPARE) x stroke_samples sample points


def stroke_samples(x, y, num_vertices, num_orbits, canvas: int, pool: int):
    """Sample points along the closed polygons (x[b, k], y[b, k]) of a batch, in canvas pixels.

    Like PIL's `line`, each vertex is truncated to its pixel first and a segment of n = L-inf
    length pixels is drawn as the n pixels at steps 0..n-1 of its major axis, the minor axis
    rounded half up (Bresenham's line; its end pixel is the next segment's first).

    x, y: float32[B, K, V] vertex coordinates (vertices v >= num_vertices[b] and orbits
    k >= num_orbits[b] are padding); the polygon of orbit k closes from vertex
    num_vertices - 1 back to vertex 0. Returns (pixel int32[pool]: index into the flattened
    batch of canvases B x canvas x canvas, B * canvas**2 for none; orbit int32[pool]: the
    sample's orbit number 1..K, 0 for none; needed int32[B]: the samples each image's strokes
    need; thinned: bool, the batch needed more than `pool` and was drawn thinned)."""
    batch, k_max, v_max = x.shape
    v = jnp.arange(v_max)
    nxt = jnp.where(v[None, :] + 1 < num_vertices[:, None], v[None, :] + 1, 0)  # [B, V]
    # Far-off vertices are clamped (off the canvas either way) so that the casts stay exact.
    x0 = jnp.trunc(jnp.clip(jnp.nan_to_num(x, nan=-1e6), -1e6, 1e6))
    y0 = jnp.trunc(jnp.clip(jnp.nan_to_num(y, nan=-1e6), -1e6, 1e6))
    x1 = jnp.take_along_axis(x0, nxt[:, None, :], axis=2)
    y1 = jnp.take_along_axis(y0, nxt[:, None, :], axis=2)
    dx, dy = x1 - x0, y1 - y0
    valid = (v[None, None, :] < num_vertices[:, None, None]) & (
        jnp.arange(k_max)[None, :, None] < num_orbits[:, None, None]
    )
    inside = (
        (jnp.maximum(x0, x1) >= 0)
        & (jnp.minimum(x0, x1) < canvas)
        & (jnp.maximum(y0, y1) >= 0)
        & (jnp.minimum(y0, y1) < canvas)
    )
    steps = jnp.maximum(jnp.abs(dx), jnp.abs(dy))
    # One sample per step of the major axis; one for a segment within a single pixel.
    count = jnp.where(valid & inside, jnp.maximum(steps, 1.0), 0.0).astype(jnp.int32)
    needed = jnp.sum(count, axis=(1, 2))
    count = count.reshape(-1)
    cum = jnp.cumsum(count)
    start = cum - count
    total = cum[-1]
    thinned = total > pool
    # Thinned: sample j stands at position j * rate (float; exact integers otherwise).
    rate = jnp.maximum(total.astype(jnp.float32) / pool, 1.0)
    first = jnp.where(thinned, jnp.ceil(start.astype(jnp.float32) / rate).astype(jnp.int32), start)
    first = jnp.where(count > 0, first, pool)  # empty segments own no sample
    owner = jnp.full(pool, -1, jnp.int32).at[first].max(jnp.arange(count.size), mode="drop")
    segment = jax.lax.cummax(owner)
    j = jnp.arange(pool, dtype=jnp.int32)
    ok = (segment >= 0) & jnp.where(thinned, j.astype(jnp.float32) * rate < total, j < total)
    segment = jnp.maximum(segment, 0)
    # One gather of a row per sample instead of six gathers.
    rows = jnp.stack([x0.reshape(-1), y0.reshape(-1), dx.reshape(-1), dy.reshape(-1)], 1)
    sx0, sy0, sdx, sdy = rows[segment].T
    n = jnp.maximum(count[segment], 1).astype(jnp.float32)
    offset = jnp.where(
        thinned, jnp.floor(j.astype(jnp.float32) * rate) - start[segment], j - start[segment]
    )
    step = jnp.clip(offset.astype(jnp.float32), 0.0, n - 1)  # 0..n-1 along the major axis
    # Bresenham's offsets as PIL draws them: |offset| rounded half up, then the sign.
    px = sx0 + jnp.sign(sdx) * jnp.floor(step * jnp.abs(sdx) / n + 0.5)
    py = sy0 + jnp.sign(sdy) * jnp.floor(step * jnp.abs(sdy) / n + 0.5)
    ok &= (px >= 0) & (px < canvas) & (py >= 0) & (py < canvas)
    image, rest = jnp.divmod(segment, k_max * v_max)
    flat = image * (canvas * canvas) + py.astype(jnp.int32) * canvas + px.astype(jnp.int32)
    pixel = jnp.where(ok, flat, batch * canvas * canvas)
    orbit = jnp.where(ok, rest // v_max + 1, 0)
    return pixel, orbit, needed, thinned


def last_orbit(pixel: jax.Array, orbit: jax.Array, batch: int, canvas: int) -> jax.Array:
    """The last orbit drawn on each canvas pixel (0: none): int32[B, canvas, canvas] from the
    samples of stroke_samples (one scatter-max over the batch's canvases)."""
    size = batch * canvas * canvas
    top = jnp.zeros(size + 1, jnp.int32).at[pixel].max(orbit)
    return top[:size].reshape(batch, canvas, canvas)


def paint(top: jax.Array, greys: jax.Array, background: float) -> jax.Array:
    """Canvas of orbit numbers int32[H, W] (0: background) and greys float[K] of orbits 1..K ->
    float32[H, W] grey levels on the 0..255 scale."""
    grey = jnp.concatenate([jnp.full((1,), background, jnp.float32), greys.astype(jnp.float32)])
    return grey[top]


def to_image(grey: jax.Array, image_size: int, dtype: str) -> jax.Array:
    """Grey canvas float32[C, C] (0..255) -> [image_size, image_size, 3] in `dtype` (uint8 or
    bfloat16, the 0..255 scale), resized with an antialiasing triangle filter when C differs."""
    if grey.shape[0] != image_size:
        grey = jax.image.resize(grey, (image_size, image_size), "linear", antialias=True)
    grey = jnp.round(jnp.clip(grey, 0.0, 255.0))
    image = jnp.repeat(grey[..., None], 3, axis=-1)
    return image.astype(jnp.uint8 if dtype == "uint8" else jnp.bfloat16)


# -- config keys of an orbit family ---------------------------------------------------------
MAX_STROKE_SAMPLES = 1 << 24


def check_canvas_keys(config) -> None:
    """canvas_size, stroke_samples and images_per_category of an orbit family."""
    check(
        config,
        "canvas_size",
        lambda v: isinstance(v, int) and 32 <= v <= 2048,
        "an integer in 32..2048",
    )
    budget = lambda v: isinstance(v, int) and 1024 <= v <= MAX_STROKE_SAMPLES
    check(config, "stroke_samples", budget, f"an integer in 1024..{MAX_STROKE_SAMPLES}")
    check(config, "images_per_category", data_keys.positive_int, "a positive integer")


def preview_canvas(image_size: int, stroke_samples: int) -> dict:
    """Preview overrides of an orbit family: a canvas of 4 x image_size (128..512 px; the strokes
    stay about a canvas pixel wide after the resize) and a sample pool scaled with its side
    (stroke lengths grow with it), so that a grid compiles and renders in seconds."""
    canvas = min(512, max(128, 4 * image_size))
    return dict(canvas_size=canvas, stroke_samples=max(1024, stroke_samples * canvas // 512))


def check_range(config, low: str, high: str, bounds, integer: bool) -> None:
    """low <= high, both within bounds (lo, hi); integers where `integer`."""
    lo, hi = bounds
    kind = "an integer" if integer else "a number"
    ok = lambda v: (isinstance(v, int) or not integer) and lo <= v <= hi
    check(config, low, ok, f"{kind} in {lo}..{hi}")
    check(config, high, lambda v: ok(v) and v >= config[low], f"{kind} in {low}..{hi}")


# An image with fewer visible stroke pixels than this (on the canvas; visible: at least
# VISIBLE_CONTRAST grey levels from the background) is degenerate: an empty frame, e.g. one
# orbit drawn in a grey close to the background's.
MIN_VISIBLE_PIXELS = 8
VISIBLE_CONTRAST = 8.0
MAX_ATTEMPTS = 8  # degenerate="resample": redraws of an instance before it is kept as drawn


class OrbitImages:
    """The renderer of an orbit family over its category table.

    `draw(row, key)` is the family's: one image's orbits from its category's table row (a dict
    of scalars) and its instance key -> (x, y: float32[K, V] vertex coordinates in px@512,
    num_vertices, num_orbits: int32 scalars, greys: float32[K] levels 0..255 of orbits 1..K).
    Image i shows category i // images_per_category, instance i % images_per_category.
    """

    def __init__(self, name: str, table, draw, config, background: float):
        self.name = name
        self.draw = draw
        self.images_per_category = int(config.images_per_category)
        self.image_size = int(config.image_size)
        self.canvas = int(config.canvas_size)
        self.budget = int(config.stroke_samples)
        self.dtype = config.dtype
        self.resample = config.degenerate == "resample"
        self.background = float(background)
        self._table = {k: jnp.asarray(v) for k, v in table.arrays.items()}

    def decompose(self, indices):
        """Global indices int[B] -> (category, instance), each int32[B]."""
        return jnp.divmod(jnp.asarray(indices, jnp.int32), self.images_per_category)

    def render(self, seed, indices):
        """seed: uint32 scalar; indices int32[B] -> (images [B, H, W, 3] uint8|bfloat16 on the
        0..255 scale, labels int32[B], info of [B]; see render_rows)."""
        category, instance = self.decompose(indices)
        keys = draw_keys.instance_keys(seed, self.name, category, instance)
        images, info = self.render_rows({k: v[category] for k, v in self._table.items()}, keys)
        return images, category, info

    def render_rows(self, rows, keys):
        """Images of category values `rows` (the table's columns, each [B]) and instance keys[B]:
        (images [B, H, W, 3], info of [B]: degenerate (still, after any redraws), fill (canvas
        fraction under strokes), overflow (the batch's strokes needed more samples than its
        pool: drawn thinned), samples (sample points each image needed), attempts (draws
        made)).

        Draw a = 0, 1, ... of an instance uses fold_in(key, a); one loop serves both policies
        (keep: a single pass), so the drawing is compiled once."""
        batch = len(keys)
        limit = MAX_ATTEMPTS if self.resample else 1

        def draw(state):
            attempt, grey, info, attempts = state
            again = jax.vmap(lambda k: jax.random.fold_in(k, attempt))(keys)
            new_grey, new_info = self._draw_batch(rows, again)
            take = info["degenerate"]
            grey = jnp.where(take[:, None, None], new_grey, grey)
            info = jax.tree.map(lambda n, o: jnp.where(take, n, o), new_info, info)
            return attempt + 1, grey, info, attempts + take.astype(jnp.int32)

        def more(state):
            attempt, _, info, _ = state
            return jnp.any(info["degenerate"]) & (attempt < limit)

        blank = {
            "degenerate": jnp.ones(batch, bool),
            "fill": jnp.zeros(batch),
            "overflow": jnp.zeros(batch, bool),
            "samples": jnp.zeros(batch, jnp.int32),
        }
        start = (
            jnp.int32(0),
            jnp.zeros((batch, self.canvas, self.canvas)),
            blank,
            jnp.zeros(batch, jnp.int32),
        )
        _, grey, info, attempts = jax.lax.while_loop(more, draw, start)
        images = jax.vmap(lambda g: to_image(g, self.image_size, self.dtype))(grey)
        return images, {**info, "attempts": attempts}

    def _draw_batch(self, rows, keys):
        """Grey canvases float32[B, C, C] and their info."""
        x, y, num_vertices, num_orbits, greys = jax.vmap(self.draw)(rows, keys)
        scale = self.canvas / FRAME
        batch = len(keys)
        pool = (batch + POOL_SPARE) * self.budget
        if pool >= 2**31 or batch * self.canvas**2 >= 2**31:
            raise ValueError(f"a batch of {batch}: its stroke pool or canvases exceed int32")
        pixel, orbit, needed, thinned = stroke_samples(
            x * scale, y * scale, num_vertices, num_orbits, self.canvas, pool
        )
        top = last_orbit(pixel, orbit, batch, self.canvas)
        grey = jax.vmap(lambda t, g: paint(t, g, self.background))(top, greys)
        visible = (top > 0) & (jnp.abs(grey - self.background) >= VISIBLE_CONTRAST)
        info = {
            "degenerate": jnp.sum(visible, axis=(1, 2)) < MIN_VISIBLE_PIXELS,
            "fill": jnp.mean(top > 0, axis=(1, 2)),
            "overflow": jnp.broadcast_to(thinned, (batch,)),
            "samples": needed,
        }
        return grey, info
