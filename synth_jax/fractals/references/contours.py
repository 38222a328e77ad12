"""Sequential references of VisualAtom and RCDB, written plainly the way the original
generators run: a NumPy stream, one orbit after another, every vertex moved in a Python-level
loop over orbits, each orbit drawn with PIL's 1-pixel `line` over the ones before it.

The device renderer (synth_jax.fractals.engine.orbits and the family modules) is tested against
these at the level of distributions (different random streams) and, given the same vertices, of
pixels; `synth-jax bench render --config configs/data/visualatom1k.py` (or rcdb1k.py) times
them beside it.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from synth_jax.fractals.engine.perlin import PERM

FRAME = 512


def pn(u) -> np.ndarray:
    """The `noise` package's pnoise1 (one octave, repeat 1024, base 0) in float32, for arrays."""
    u = np.asarray(u, np.float32)
    whole = np.floor(u)
    i0 = whole.astype(np.int64) % 1024
    i1 = (i0 + 1) % 1024
    t = (u - whole).astype(np.float32)

    def grad(h, x):
        return np.where(h & 8, -1.0, (h & 7) + 1.0).astype(np.float32) * x

    fade = t * t * t * (t * (t * 6 - 15) + 10)
    a, b = grad(PERM[i0 & 255], t), grad(PERM[i1 & 255], t - 1)
    return ((a + fade * (b - a)) * 0.4).astype(np.float32)


def noise(rng: np.random.Generator, count: int) -> np.ndarray:
    """pn(u) at fresh u ~ U(0, 10^4): the generators' per-vertex white noise."""
    return pn(rng.uniform(0.0, 1e4, count))


def visualatom_orbits(row: dict, rng: np.random.Generator):
    """One VisualAtom instance of the category `row` (vertices, orbits, n1, n2, noise,
    line_width, radius, oval_x, oval_y): (x, y float64[K, V] px@512 of orbits 1..K, greys
    int[K])."""
    vertices, count = int(row["vertices"]), int(row["orbits"])
    cx = (FRAME + rng.integers(-512, 513)) / 2
    cy = (FRAME + rng.integers(-512, 513)) / 2
    theta = 2 * math.pi * np.arange(vertices) / vertices
    wave = 0.5 * np.sin(row["n1"] * theta) + 0.5 * np.sin(row["n2"] * theta)
    x = cx + row["radius"] * row["oval_x"] * np.cos(theta)
    y = cy + row["radius"] * row["oval_y"] * np.sin(theta)
    xs, ys, greys = [], [], []
    for _ in range(count):
        greys.append(int(rng.integers(0, 256)))
        px, py = noise(rng, vertices), noise(rng, vertices)
        x = x + np.cos(theta) * (row["noise"] * (1 - px) + wave + row["line_width"])
        y = y + np.sin(theta) * (row["noise"] * (1 - py) + wave + row["line_width"])
        xs.append(x)
        ys.append(y)
    return np.stack(xs), np.stack(ys), np.array(greys)


def rcdb_orbits(row: dict, rng: np.random.Generator, config):
    """One RCDB instance of the category `row` (vertices, orbits, noise, line_width) with the
    instance ranges of `config`: (x, y float64[K, V] px@512, greys int[K] as drawn: 255 - g
    when config.invert)."""
    vertices, count = int(row["vertices"]), int(row["orbits"])
    spread = config.centre_range
    cx = (FRAME + rng.integers(-spread, spread + 1)) / 2
    cy = (FRAME + rng.integers(-spread, spread + 1)) / 2
    radius = rng.integers(config.min_radius, config.max_radius + 1)
    ox, oy = rng.uniform(1.0, config.max_oval, 2)
    theta = 2 * math.pi * np.arange(vertices) / vertices
    x = cx + radius * ox * np.cos(theta)
    y = cy + radius * oy * np.sin(theta)
    xs, ys, greys = [], [], []
    for _ in range(count):
        grey = min(int(rng.integers(0, 257)), 255)
        greys.append(255 - grey if config.invert else grey)
        px, py = noise(rng, vertices), noise(rng, vertices)
        x = x + np.cos(theta) * (row["noise"] * (1 - 2 * px) + row["line_width"])
        y = y + np.sin(theta) * (row["noise"] * (1 - 2 * py) + row["line_width"])
        xs.append(x)
        ys.append(y)
    return np.stack(xs), np.stack(ys), np.array(greys)


def draw_orbits(x, y, greys, canvas: int, background: int) -> np.ndarray:
    """Each orbit (x[k], y[k]) px@512 drawn in order as a closed 1-pixel PIL polyline of grey
    greys[k] on a canvas x canvas image of `background`: uint8[canvas, canvas]."""
    image = Image.new("L", (canvas, canvas), int(background))
    draw = ImageDraw.Draw(image)
    scale = canvas / FRAME
    for xk, yk, grey in zip(x, y, greys):
        points = [(float(a) * scale, float(b) * scale) for a, b in zip(xk, yk)]
        draw.line(points + points[:1], fill=int(grey), width=1)
    return np.asarray(image)


def resize(grey: np.ndarray, size: int) -> np.ndarray:
    """A grey canvas uint8[C, C] resized to size x size (PIL bilinear, antialiased) as RGB
    uint8[size, size, 3]."""
    image = Image.fromarray(grey)
    if grey.shape[0] != size:
        image = image.resize((size, size), Image.BILINEAR)
    return np.repeat(np.asarray(image)[..., None], 3, axis=-1)


def visualatom_image(row: dict, rng: np.random.Generator, canvas: int = 512, size: int = 224):
    """One VisualAtom image uint8[size, size, 3]."""
    x, y, greys = visualatom_orbits(row, rng)
    return resize(draw_orbits(x, y, greys, canvas, 0), size)


def rcdb_image(row: dict, rng: np.random.Generator, config):
    """One RCDB image uint8[image_size, image_size, 3] of `config`."""
    x, y, greys = rcdb_orbits(row, rng, config)
    background = 0 if config.invert else 255
    return resize(draw_orbits(x, y, greys, config.canvas_size, background), config.image_size)
