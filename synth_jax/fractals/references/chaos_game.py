"""The simple sequential chaos game and rasteriser in NumPy: the reference the device renderer is
tested against. Written for clarity, one point at a time, as in the original FractalDB code."""

from __future__ import annotations

import numpy as np


def chaos_game(
    params: np.ndarray, num_points: int, rng: np.random.Generator, burn_in: int = 0
) -> np.ndarray:
    """One chain from (0, 0): float[num_points, 2]. params: float[N, 7] rows (a..f, p)."""
    params = np.asarray(params, np.float64)
    probs = params[:, 6] / params[:, 6].sum()
    choices = rng.choice(len(params), size=num_points + burn_in, p=probs)
    x = y = 0.0
    out = np.empty((num_points, 2))
    with np.errstate(over="ignore", invalid="ignore"):
        for t, i in enumerate(choices):
            a, b, c, d, e, f = params[i, :6]
            x, y = a * x + b * y + e, c * x + d * y + f
            if t >= burn_in:
                out[t - burn_in] = x, y
    return out


def occupancy(points: np.ndarray, image_size: int, pad: int) -> np.ndarray:
    """Hit counts int[H, W] of the finite points in their min/max box, fitted to
    [pad, image_size - 1 - pad] per axis (row = y, column = x)."""
    ok = np.all(np.isfinite(points), -1)
    pts = points[ok]
    counts = np.zeros((image_size, image_size), np.int64)
    if len(pts) == 0:
        return counts
    lo, hi = pts.min(0), pts.max(0)
    extent = np.maximum(hi - lo, 1e-12)
    span = image_size - 1 - 2 * pad
    pix = np.floor(pad + (pts - lo) / extent * span + 0.5).astype(np.int64)  # nearest pixel
    for px, py in pix:
        counts[py, px] += 1
    return counts


def patch_render(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """FractalDB's per-point patches: each point switches on the pixels of its own random
    non-empty 3x3 mask around it. Returns bool[H, W]."""
    h, w = counts.shape
    on = np.zeros((h + 2, w + 2), bool)
    for (py, px), n in np.ndenumerate(counts):
        for _ in range(n):
            mask = rng.integers(1, 512)  # a non-empty 9-bit mask
            for k in range(9):
                if mask >> k & 1:
                    on[py + k // 3, px + k % 3] = True
    return on[1:-1, 1:-1]


def fill_rate(image: np.ndarray) -> float:
    """Fraction of non-zero pixels (over the first two axes)."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image.max(-1)
    return float(np.mean(image > 0))
