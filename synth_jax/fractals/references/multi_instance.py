"""Simple sequential NumPy references of Anderson & Farrell's image pieces (8-bit HSV, 3x3 blur,
diamond-square, bilinear resize and compositing) and of OFDB's painter: written one pixel or
one point at a time, as the original code runs, for the device renderers to be tested against.
"""

from __future__ import annotations

import colorsys

import numpy as np


def hsv8_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """OpenCV's 8-bit HSV -> RGB of one pixel: hue code h (2 degrees; 180 wraps), s, v 0..255."""
    rgb = colorsys.hsv_to_rgb((h % 180) / 180.0, s / 255.0, v / 255.0)
    return np.round(np.asarray(rgb) * 255.0)


def gaussian_blur3(image: np.ndarray, sigma: float) -> np.ndarray:
    """OpenCV's GaussianBlur, ksize 3, BORDER_REFLECT_101, one output pixel at a time."""
    g = np.exp(-(np.arange(-1.0, 2.0) ** 2) / (2 * sigma**2))
    g /= g.sum()
    h, w = image.shape[:2]
    reflect = lambda i, n: -i if i < 0 else (2 * (n - 1) - i if i >= n else i)
    out = np.zeros(image.shape, np.float64)
    for y in range(h):
        for x in range(w):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    out[y, x] += (
                        g[dy + 1] * g[dx + 1] * image[reflect(y + dy, h), reflect(x + dx, w)]
                    )
    return out


def diamond_square(corners: np.ndarray, d: float, levels: int, noise) -> np.ndarray:
    """Diamond-square in place on the (2^levels + 1)^2 grid, as the classic loop: at level k
    (spacing `half` = 2^(levels - k)), each square's centre gets the mean of its 4 corners, then
    each edge midpoint the mean of its 4 neighbours (indices wrap with period 2^levels, the grid
    without its last row and column), each plus m_k * noise(k, y, x), m_k = 0.5 exp(d (1 - k)),
    noise in [-1, 1]. corners: float[2, 2]."""
    n = 2**levels
    grid = np.zeros((n + 1, n + 1))
    grid[0, 0], grid[0, n], grid[n, 0], grid[n, n] = corners.ravel()
    for k in range(1, levels + 1):
        step, half = n >> (k - 1), n >> k
        m = 0.5 * np.exp(d * (1 - k))
        for y in range(half, n, step):
            for x in range(half, n, step):
                mean = (
                    grid[y - half, x - half]
                    + grid[y - half, x + half]
                    + grid[y + half, x - half]
                    + grid[y + half, x + half]
                ) / 4
                grid[y, x] = mean + m * noise(k, y, x)
        for y in range(0, n + 1, half):
            for x in range((y + half) % step, n + 1, step):
                mean = (
                    grid[(y - half) % n, x]
                    + grid[(y + half) % n, x]
                    + grid[y, (x - half) % n]
                    + grid[y, (x + half) % n]
                ) / 4
                grid[y, x] = mean + m * noise(k, y, x)
    return grid


def resize_bilinear(image: np.ndarray, side: int) -> np.ndarray:
    """OpenCV's INTER_LINEAR resize of a square uint8-valued image to side x side, one output
    pixel at a time: half-pixel centres, source positions clamped, rounded."""
    src = image.shape[0]
    out = np.zeros((side, side, image.shape[2]))
    for y in range(side):
        for x in range(side):
            fy = min(max((y + 0.5) * src / side - 0.5, 0.0), src - 1.0)
            fx = min(max((x + 0.5) * src / side - 0.5, 0.0), src - 1.0)
            y0, x0 = int(np.floor(fy)), int(np.floor(fx))
            y1, x1 = min(y0 + 1, src - 1), min(x0 + 1, src - 1)
            wy, wx = fy - y0, fx - x0
            out[y, x] = (1 - wy) * ((1 - wx) * image[y0, x0] + wx * image[y0, x1]) + wy * (
                (1 - wx) * image[y1, x0] + wx * image[y1, x1]
            )
    return np.round(out)


def composite(background: np.ndarray, objects: list) -> np.ndarray:
    """Pastes each (image uint8-valued float[s0, s0, 3], side, x, y) in order: resized to
    side x side, then every pixel that is not exactly black is copied, clipped to the canvas."""
    canvas = np.array(background, np.float64)
    size = canvas.shape[0]
    for image, side, x, y in objects:
        resized = resize_bilinear(image, side)
        for r in range(side):
            for c in range(side):
                if 0 <= y + r < size and 0 <= x + c < size and resized[r, c].any():
                    canvas[y + r, x + c] = resized[r, c]
    return canvas


def paint_blocks(pixels: np.ndarray, masks: np.ndarray, size: int) -> np.ndarray:
    """OFDB's painter: for each point in order (flat pixel index, size^2 = dropped), paste a
    3x3 block centred on it whose cell k = (dy + 1) * 3 + dx + 1 is on or off by bit k of its
    mask; off cells overwrite too. Returns bool[size, size]."""
    canvas = np.zeros((size, size), bool)
    for pixel, mask in zip(pixels, masks):
        if pixel >= size * size:
            continue
        py, px = divmod(int(pixel), size)
        for k in range(9):
            y, x = py + k // 3 - 1, px + k % 3 - 1
            if 0 <= y < size and 0 <= x < size:
                canvas[y, x] = bool(mask >> k & 1)
    return canvas
