"""Sequential NumPy references of the noise baselines (dead leaves, Spectrum), written plainly the
way the original generators run: one shape after another painted on top until no pixel is left
uncovered; the spectrum model step by step with numpy's FFT.

The device renderers (synth_jax.fractals.families.dead_leaves, spectrum) are tested against
these: pixel for pixel given the same shapes, and at the level of
distributions with independent streams.
"""

from __future__ import annotations

import math

import numpy as np

from synth_jax.fractals.families.dead_leaves import RADIUS_CDF, RADIUS_GRID

SHAPE_KINDS = ("circle", "square", "oriented", "rectangle", "triangle", "quadrilateral")


def radius_cdf(exponent: float = 3.0) -> np.ndarray:
    """CDF on the radius grid of the pmf proportional to r^-exponent - 1 (the paper: 3)."""
    pmf = RADIUS_GRID**-exponent - 1.0
    return np.cumsum(pmf) / pmf.sum()


def dead_leaves_shape(rng: np.random.Generator, size: int, shapes: str, cdf=RADIUS_CDF) -> dict:
    """One shape: centre (x, y), radius (pixels), kind, vertices float[k, 2] (rounded offsets in
    increasing angle; none for circles), colour int[3]. `cdf`: the radius law (radius_cdf)."""
    u = rng.uniform()
    radius = max(int(RADIUS_GRID[np.argmin(np.abs(cdf - u))] * size), 1)
    centre = rng.integers(0, size, 2)
    colour = rng.integers(0, 256, 3)
    kind = {"squares": "square", "oriented": "oriented"}.get(shapes)
    if kind is None:
        kind = SHAPE_KINDS[rng.integers(0, len(SHAPE_KINDS))]
    vertices = None
    if kind in ("square", "oriented"):
        h = math.floor(radius / math.sqrt(2))
        vertices = np.array([[h, h], [-h, h], [-h, -h], [h, -h]], float)
        if kind == "oriented":
            a = rng.uniform(0, 2 * math.pi)
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            vertices = vertices @ rot.T
    elif kind == "rectangle":
        a = rng.uniform(0, math.pi / 2)
        w, h = radius * math.cos(a), radius * math.sin(a)
        vertices = np.array([[w, h], [-w, h], [-w, -h], [w, -h]])
    elif kind in ("triangle", "quadrilateral"):
        angles = np.sort(rng.uniform(0, 2 * math.pi, 3 if kind == "triangle" else 4))
        vertices = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    if vertices is not None:
        vertices = np.round(vertices)
    return dict(centre=centre, radius=radius, kind=kind, vertices=vertices, colour=colour)


def shape_mask(shape: dict, size: int):
    """(rows, cols, mask): the pixels (centres at integer x, y) the shape covers, as a boolean
    mask over the slices rows x cols of the image (its bounding box, clipped)."""
    cx, cy = shape["centre"]
    if shape["kind"] == "circle":
        r = shape["radius"]
        lo_x, hi_x, lo_y, hi_y = -r, r, -r, r
    else:
        v = shape["vertices"]
        lo_x, hi_x, lo_y, hi_y = v[:, 0].min(), v[:, 0].max(), v[:, 1].min(), v[:, 1].max()
    x0, x1 = max(int(cx + lo_x), 0), min(int(cx + hi_x), size - 1)
    y0, y1 = max(int(cy + lo_y), 0), min(int(cy + hi_y), size - 1)
    x1, y1 = max(x1, x0 - 1), max(y1, y0 - 1)  # a box wholly off the image: empty
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    dx, dy = xs - cx, ys - cy
    if shape["kind"] == "circle":
        mask = dx * dx + dy * dy <= shape["radius"] ** 2
    else:
        mask = np.ones(dx.shape, bool)
        for a, b in zip(v, np.roll(v, -1, axis=0)):
            mask &= (b[0] - a[0]) * (dy - a[1]) - (b[1] - a[1]) * (dx - a[0]) >= 0
    return slice(y0, y1 + 1), slice(x0, x1 + 1), mask


def dead_leaves_paint(shapes, size: int):
    """Paints `shapes` (an iterable of shape dicts, in order) each on top of the last until no
    pixel is uncovered: (image uint8[size, size, 3], shapes painted)."""
    image = np.zeros((size, size, 3), np.uint8)
    covered = np.zeros((size, size), bool)
    painted = 0
    for shape in shapes:
        rows, cols, mask = shape_mask(shape, size)
        image[rows, cols][mask] = shape["colour"]
        covered[rows, cols] |= mask
        painted += 1
        if covered.all():
            break
    return image, painted


def dead_leaves_image(rng, size: int, shapes: str, max_shapes: int = 5000, cdf=RADIUS_CDF):
    """One dead-leaves image with its own stream: (uint8[size, size, 3], shapes painted)."""
    return dead_leaves_paint(
        (dead_leaves_shape(rng, size, shapes, cdf) for _ in range(max_shapes)), size
    )


def spectrum_colour_basis(rng: np.random.Generator, size: int):
    """(M float[3], E float[3, 3]): mean colour and scatter eigenvectors of a random blurred
    palette image (see synth_jax.fractals.families.spectrum)."""
    count = 3 + int(math.floor(rng.uniform(0, 20)))
    proportions = 0.001 + rng.uniform(size=count)
    colours = rng.uniform(0, 255, (count, 3))
    pixels = rng.multinomial(size * size, proportions / proportions.sum())
    labels = np.repeat(np.arange(count), pixels)
    palette = colours[labels].reshape(size, size, 3)
    m = max(int(math.ceil(rng.uniform(0, 10))), 1)
    lo = (m - 1) // 2
    padded = np.pad(palette, ((m, m), (m, m), (0, 0)))
    blurred = np.zeros_like(palette)
    for i in range(-lo, m - lo):
        for j in range(-lo, m - lo):
            blurred += padded[m + i : m + i + size, m + j : m + j + size]
    palette = blurred / (m * m) + rng.uniform(0, 10, palette.shape)
    palette = (palette - palette.min()) / (palette.max() - palette.min()) * 255
    flat = palette.reshape(-1, 3)
    mean = flat.mean(0)
    _, vectors = np.linalg.eigh((flat - mean).T @ (flat - mean))
    return mean, vectors


def spectrum_image(rng: np.random.Generator, size: int, slopes=(0.5, 3.5), anisotropy=3 / 60):
    """One Spectrum image uint8[size, size, 3] and its (ax, ay)."""
    mean, vectors = spectrum_colour_basis(rng, size)
    s = rng.uniform(*slopes)
    d = rng.normal() * anisotropy
    ax, ay = s + d, s - d
    f = np.abs(np.fft.fftfreq(size))
    mag = 1.0 / (1e-16 + f[None, :] ** ax + f[:, None] ** ay)
    mag[0, 0] = 0.0
    x = 256 * rng.uniform(size=(3, size, size))
    rgb = spectrum_compose(spectrum_impose(x, mag), mean, vectors)
    return np.round(rgb).astype(np.uint8), (ax, ay)


def spectrum_impose(x: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """Each channel of x float[3, N, N]: the phase of FFT(x - mean) with magnitude `mag`,
    transformed back (real part), rescaled to the channel's mean and standard deviation."""
    channels = []
    for c in x:
        phase = np.angle(np.fft.fft2(c - c.mean()))
        y = np.real(np.fft.ifft2(mag * np.exp(1j * phase)))
        channels.append((y - y.mean()) / y.std() * c.std() + c.mean())
    return np.stack(channels)


def spectrum_compose(channels: np.ndarray, mean: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """rgb = E^T channels + M per pixel, min-max normalised jointly to [0, 255]: float[N, N, 3]."""
    rgb = np.einsum("ji,jhw->hwi", vectors, channels) + mean
    return (rgb - rgb.min()) / (rgb.max() - rgb.min()) * 255
