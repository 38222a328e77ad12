"""Image-space operations of the renderer: patches and stamps, random windows, HSV colour
and a smooth-noise background. Pure JAX functions of one image; the renderer vmaps them."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synth_jax.fractals.engine import counter_random

# P(a given bit is off in a uniform non-empty 9-bit mask): 255 of the 511 non-empty masks.
PATCH_BIT_OFF = 255.0 / 511.0


def shifted_sum(counts: jax.Array, weights: jax.Array) -> jax.Array:
    """sum_k weights[k] * counts shifted by offset k of the 3x3 neighbourhood (zero padded).
    counts: float[H, W]; weights: float[9] (row-major offsets -1..1) -> float[H, W]."""
    h, w = counts.shape
    padded = jnp.pad(counts, 1)
    out = jnp.zeros_like(counts)
    for k in range(9):
        dy, dx = k // 3, k % 3
        out = out + weights[k] * padded[2 - dy : 2 - dy + h, 2 - dx : 2 - dx + w]
    return out


def per_point_patches(counts: jax.Array, key: jax.Array) -> jax.Array:
    """FractalDB's per-point random 3x3 patches without drawing them point by point.

    A pixel stays off only if each of the S points in its 3x3 neighbourhood has the matching bit
    of its own mask off, independently with probability 255/511; so the pixel is on with
    probability 1 - (255/511)^S. Masks of different points are independent, and the bits of one
    mask are nearly so (only the all-off mask is excluded), which is why sampling each pixel
    independently reproduces the per-point render's fill rate (tested against the reference).
    counts: float[H, W] hits -> bool[H, W]."""
    s = shifted_sum(counts, jnp.ones(9, counts.dtype))
    h, w = counts.shape
    words = jax.random.bits(key, (2,), jnp.uint32)
    u = counter_random.uniform16(words, jnp.arange((h * w + 1) // 2, dtype=jnp.uint32))
    u = (u[: h * w].astype(jnp.float32) + 0.5) / 65536.0
    return u.reshape(h, w) < 1.0 - PATCH_BIT_OFF**s


def expected_patch_fill(counts: jax.Array) -> jax.Array:
    """Expected fill rate of `per_point_patches` (a deterministic, low-noise filter statistic)."""
    s = shifted_sum(counts, jnp.ones(9, counts.dtype))
    return jnp.mean(1.0 - PATCH_BIT_OFF**s)


def random_stamp(key: jax.Array) -> jax.Array:
    """One uniform non-empty 3x3 binary stamp per image (Anderson & Farrell): float[9]."""
    mask = jax.random.randint(key, (), 1, 512)
    return ((mask >> jnp.arange(9)) & 1).astype(jnp.float32)


def random_window(key: jax.Array, lo: jax.Array, hi: jax.Array):
    """The min/max box rescaled by U(0.5, 2) and shifted by U(-0.2, 0.2) of its extent, per axis.
    lo, hi: float[2] -> (lo', hi')."""
    k1, k2 = jax.random.split(key)
    scale = jnp.exp(jax.random.uniform(k1, (2,), minval=jnp.log(0.5), maxval=jnp.log(2.0)))
    shift = jax.random.uniform(k2, (2,), minval=-0.2, maxval=0.2)
    extent = hi - lo
    centre = 0.5 * (lo + hi) + shift * extent
    return centre - 0.5 * scale * extent, centre + 0.5 * scale * extent


def hsv_to_rgb(h: jax.Array, s: jax.Array, v: jax.Array) -> jax.Array:
    """h, s, v in [0, 1], broadcastable -> float[..., 3] in [0, 1]."""
    i = jnp.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(jnp.int32) % 6
    r = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [v, q, p, p, t], v)
    g = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [t, v, v, q, p], p)
    b = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [p, p, t, v, v], q)
    return jnp.stack([r, g, b], -1)


def hsv_colourise(intensity: jax.Array, key: jax.Array) -> jax.Array:
    """Anderson & Farrell's colouring: hue shift U(0, 1), saturation U(0.3, 1), value U(0.5, 1);
    the hue runs with the intensity so graded images get bands of colour.
    intensity: float[H, W] in [0, 1] -> float[H, W, 3]."""
    k1, k2, k3 = jax.random.split(key, 3)
    hue = jax.random.uniform(k1)
    sat = jax.random.uniform(k2, minval=0.3, maxval=1.0)
    val = jax.random.uniform(k3, minval=0.5, maxval=1.0)
    return hsv_to_rgb(jnp.mod(hue + 0.5 * intensity, 1.0), sat, val * jnp.ones_like(intensity))


def smooth_noise(key: jax.Array, size: int, octaves: int = 4) -> jax.Array:
    """A cheap plasma-like background: value noise on 2x2, 4x4, ... grids, bilinearly upsampled
    and summed with weights 1/2^k, in colour. float[size, size, 3] in [0, 1]."""
    total = jnp.zeros((size, size, 3))
    weight_sum = 0.0
    for k, sub in enumerate(jax.random.split(key, octaves)):
        grid = 2 ** (k + 1)
        coarse = jax.random.uniform(sub, (grid, grid, 3))
        total = total + 0.5**k * jax.image.resize(coarse, (size, size, 3), "linear")
        weight_sum += 0.5**k
    return total / weight_sum


# -- Anderson & Farrell's 8-bit colour and blur (multi-instance images; the blur also for sigma) --
def hsv8_to_rgb(h: jax.Array, s: jax.Array, v: jax.Array) -> jax.Array:
    """OpenCV's 8-bit HSV -> RGB, which Anderson & Farrell's code uses: h in hue codes of 2 degrees
    (a turn is 180 codes, so codes 180..255 wrap: hue = (h mod 180) / 180 turn), s and v in
    0..255; broadcastable -> float[..., 3] on the 0..255 scale, rounded as OpenCV rounds."""
    rgb = hsv_to_rgb(jnp.mod(h, 180.0) / 180.0, s / 255.0, v / 255.0)
    return jnp.round(rgb * 255.0)


def colourise_hsv8(level: jax.Array, key: jax.Array) -> jax.Array:
    """Anderson & Farrell's fractal colouring: hue shift h ~ U(0, 255), saturation U(0.3, 1) and
    value U(0.5, 1) (x 255, truncated to uint8); hue code uint8(level * 255 + h) mod 256, then
    OpenCV's hue wrap (so the first 76 of 256 codes are twice as likely). Black where level == 0.
    level: float[H, W] in [0, 1] -> float[H, W, 3] on the 0..255 scale (integer values)."""
    u = jax.random.uniform(key, (3,))
    shift = u[0] * 255.0
    sat = jnp.floor((0.3 + 0.7 * u[1]) * 255.0)
    val = jnp.floor((0.5 + 0.5 * u[2]) * 255.0)
    hue = jnp.mod(jnp.floor(level * 255.0 + shift), 256.0)
    rgb = hsv8_to_rgb(hue, sat, val * jnp.ones_like(level))
    return jnp.where(level[..., None] > 0, rgb, 0.0)


BLUR_SIGMA = (0.5, 1.0)  # Anderson & Farrell: sigma ~ U(0.5, 1) of a 3x3 Gaussian kernel


def gaussian_blur3(image: jax.Array, sigma: jax.Array) -> jax.Array:
    """A 3x3 Gaussian blur (OpenCV's GaussianBlur with ksize 3: separable, normalised weights
    exp(-x^2 / (2 sigma^2)) for x in -1, 0, 1, border reflected without repeating the edge).
    image: float[H, W, C] -> float[H, W, C]."""
    g = jnp.exp(-(jnp.arange(-1.0, 2.0) ** 2) / (2.0 * sigma**2))
    g = g / g.sum()
    h, w = image.shape[:2]
    p = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    rows = g[0] * p[:-2] + g[1] * p[1:-1] + g[2] * p[2:]
    return g[0] * rows[:, :-2] + g[1] * rows[:, 1:-1] + g[2] * rows[:, 2:]


def random_blur(image: jax.Array, key: jax.Array, prob: float) -> jax.Array:
    """With probability `prob`, gaussian_blur3 with sigma ~ U(0.5, 1); the result is rounded to
    integers, as an 8-bit image is. image: float[H, W, C] on the 0..255 scale."""
    if prob <= 0:
        return image
    u = jax.random.uniform(key, (2,))
    sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * u[1]
    blurred = jnp.round(gaussian_blur3(image, sigma))
    return jnp.where(u[0] < prob, blurred, image)
