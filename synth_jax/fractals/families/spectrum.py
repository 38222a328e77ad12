"""The "Spectrum" noise model ("Learning to See by Looking at Noise", Baradad et al., NeurIPS
2021): random-phase noise with an anisotropic 1/f power spectrum in a random colour basis; the
`spectrum` data family (see synth_jax.fractals.family). The simplest of the paper's statistical
models: the spectrum imposed, channels correlated, no colour histogram, no wavelet model.

Per category (on the device, from the category key of the data config's seed):
- slopes: s ~ U(min_slope, max_slope), d ~ N(0, 1) * anisotropy, ax = s + d, ay = s - d;
- colour basis: n = 3 + floor(U(0, 20)) colours U(0, 255)^3 with proportions 0.001 + U(0, 1)
  (normalised); an N x N palette image of multinomial pixel counts laid out in sorted order, box
  blurred m x m (m = ceil(U(0, 10)), zero padding), plus U(0, 10) per pixel, min-max scaled to
  [0, 255]; M = its mean colour and E = the eigenvectors of its 3 x 3 colour scatter matrix.
Per instance (from the instance key): for each of 3 channels, x = 256 U(0, 1) noise; the phase of
FFT(x - mean x) with the magnitude 1 / (1e-16 + |fx/N|^ax + |fy/N|^ay) (0 at DC) is transformed
back (real part) and rescaled to the mean and standard deviation of x (the original iterates
this 10 times; it is idempotent after the first). Then rgb = E^T channels + M, min-max
normalised jointly over all channels to 0..255: the per-channel means survive, so each image
keeps a colour tint (normalising per channel would remove it and change the data).

The spectrum is "a sum of powers": a true radial 1/f^alpha only where ax = ay = 2.
With images_per_category = 1 (the default), every image is its own category and draws all of
the above afresh, as the paper's generator does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synth_jax.config import check
from synth_jax.fractals.engine import data_keys, draw_keys

NAME = "spectrum"
MAX_COLOURS = 3 + 19  # n = 3 + floor(U(0, 20))
MAX_BLUR = 10

DEFAULTS = dict(
    image_size=128,  # the paper's small scale (256: large scale)
    min_slope=0.5,
    max_slope=3.5,
    anisotropy=3 / 60,  # standard deviation of d: ax = s + d, ay = s - d
    images_per_category=1,
    degenerate="keep",  # (min-max normalised noise is never degenerate)
)
CHOICES = {"degenerate": ("keep",)}
TABLE_FREE_KEYS = ("min_slope", "max_slope", "anisotropy", "images_per_category")


def validate(config) -> None:
    check(config, "images_per_category", data_keys.positive_int, "a positive integer")
    check(config, "min_slope", lambda v: 0 < v <= 10, "a number in (0, 10]")
    check(config, "max_slope", lambda v: config.min_slope <= v <= 10, "a number in min_slope..10")
    check(config, "anisotropy", lambda v: 0 <= v <= 1, "a number in 0..1")


def build_table(config, rng, progress: bool) -> tuple[dict, dict]:
    """No table: each category's slopes and colours are drawn on the device from its key."""
    return {}, {}


def box_blur(image: jax.Array, m: jax.Array) -> jax.Array:
    """m x m box filter (m: int scalar in 1..MAX_BLUR, zero padding, MATLAB's window
    [i - (m - 1) // 2, i + m // 2]) of float[N, N, 3], from an integral image."""
    n = image.shape[0]
    pad = MAX_BLUR
    integral = jnp.pad(
        jnp.cumsum(jnp.cumsum(jnp.pad(image, ((pad, pad), (pad, pad), (0, 0))), 0), 1),
        ((1, 0), (1, 0), (0, 0)),
    )
    lo, hi = (m - 1) // 2, m - 1 - (m - 1) // 2
    i = jnp.arange(n) + pad
    top, bottom = i - lo, i + hi + 1
    rows = integral[bottom] - integral[top]
    box = rows[:, bottom] - rows[:, top]
    return box / (m * m).astype(jnp.float32)


def colour_basis(key: jax.Array, size: int):
    """(M float32[3], E float32[3, 3]) of one category: the mean colour and the eigenvectors
    (columns) of the colour scatter of a random blurred palette image of size x size."""
    ks = jax.random.split(key, 6)
    count = 3 + jnp.floor(jax.random.uniform(ks[0], (), maxval=20.0)).astype(jnp.int32)
    used = jnp.arange(MAX_COLOURS) < count
    proportions = jnp.where(used, 0.001 + jax.random.uniform(ks[1], (MAX_COLOURS,)), 0.0)
    colours = jax.random.uniform(ks[2], (MAX_COLOURS, 3), maxval=255.0)
    # Multinomial counts of size^2 pixels (each pixel's colour by inverse CDF), laid out in
    # order: pixel j has the colour whose cumulative count first exceeds j.
    cdf = jnp.cumsum(proportions) / jnp.sum(proportions)
    cdf = jnp.where(jnp.arange(MAX_COLOURS) >= count - 1, 2.0, cdf)  # no u falls past the last
    u = jax.random.uniform(ks[3], (size * size,))
    drawn = jnp.searchsorted(cdf, u, side="right", method="compare_all")
    cumulative = jnp.cumsum(jnp.zeros(MAX_COLOURS, jnp.int32).at[drawn].add(1, mode="drop"))
    label = jnp.searchsorted(
        cumulative, jnp.arange(size * size), side="right", method="compare_all"
    )
    palette = colours[jnp.minimum(label, MAX_COLOURS - 1)].reshape(size, size, 3)
    m = jnp.maximum(jnp.ceil(jax.random.uniform(ks[4], (), maxval=float(MAX_BLUR))), 1)
    palette = box_blur(palette, m.astype(jnp.int32))
    palette = palette + jax.random.uniform(ks[5], palette.shape, maxval=10.0)
    palette = (palette - palette.min()) / jnp.maximum(palette.max() - palette.min(), 1e-6) * 255
    pixels = palette.reshape(-1, 3)
    mean = pixels.mean(0)
    centred = pixels - mean
    _, vectors = jnp.linalg.eigh(centred.T @ centred)
    return mean, vectors


def magnitude(size: int, ax: jax.Array, ay: jax.Array) -> jax.Array:
    """1 / (1e-16 + |fx/N|^ax + |fy/N|^ay) on the FFT grid (DC at [0, 0], set to 0), rows fy."""
    f = jnp.abs(jnp.fft.fftfreq(size)).astype(jnp.float32)  # |k| / N for k = 0, 1, .., -1
    fy, fx = f[:, None], f[None, :]
    mag = 1.0 / (1e-16 + jnp.power(fx, ax) + jnp.power(fy, ay))
    return mag.at[0, 0].set(0.0)


def impose_spectrum(x: jax.Array, mag: jax.Array) -> jax.Array:
    """Channels float32[C, N, N] with the magnitude `mag` imposed on their Fourier phases, each
    rescaled to the mean and standard deviation it had."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    phase = jnp.angle(jnp.fft.fft2(x - mean))
    y = jnp.real(jnp.fft.ifft2(mag * jnp.exp(1j * phase)))
    y = (y - y.mean(axis=(1, 2), keepdims=True)) / jnp.maximum(
        y.std(axis=(1, 2), keepdims=True), 1e-12
    )
    return y * std + mean


def compose(channels: jax.Array, mean: jax.Array, vectors: jax.Array) -> jax.Array:
    """rgb = E^T channels + M, min-max normalised jointly: float32[N, N, 3] in [0, 255]."""
    rgb = jnp.einsum("ji,jhw->hwi", vectors, channels) + mean
    return (rgb - rgb.min()) / jnp.maximum(rgb.max() - rgb.min(), 1e-12) * 255.0


class SpectrumImages:
    """Image i shows category i // images_per_category."""

    def __init__(self, config):
        self.size = int(config.image_size)
        self.images_per_category = int(config.images_per_category)
        self.seed = int(config.seed)
        self.slopes = (float(config.min_slope), float(config.max_slope))
        self.anisotropy = float(config.anisotropy)
        self.dtype = config.dtype

    def decompose(self, indices):
        """Global indices int[B] -> (category, instance), each int32[B]."""
        return jnp.divmod(jnp.asarray(indices, jnp.int32), self.images_per_category)

    def category(self, key):
        """(ax, ay, M, E) of the category key `key`."""
        k_slope, k_tilt, k_colour = jax.random.split(key, 3)
        s = jax.random.uniform(k_slope, (), minval=self.slopes[0], maxval=self.slopes[1])
        d = jax.random.normal(k_tilt, ()) * self.anisotropy
        mean, vectors = colour_basis(k_colour, self.size)
        return s + d, s - d, mean, vectors

    def draw(self, category_key, instance_key):
        """One image float32[N, N, 3] in [0, 255] and its slopes (ax, ay)."""
        ax, ay, mean, vectors = self.category(category_key)
        x = jax.random.uniform(instance_key, (3, self.size, self.size), maxval=256.0)
        channels = impose_spectrum(x, magnitude(self.size, ax, ay))
        return compose(channels, mean, vectors), jnp.stack([ax, ay])

    def render(self, seed, indices):
        """seed: uint32 scalar (the phases); indices int32[B] -> (images [B, N, N, 3]
        uint8|bfloat16 on the 0..255 scale, labels int32[B], info of [B]: degenerate (never),
        fill (1), slopes float32[B, 2] (ax, ay))."""
        category, instance = self.decompose(indices)
        kc = draw_keys.category_keys(self.seed, NAME, category)
        ki = draw_keys.instance_keys(seed, NAME, category, instance)
        images, slopes = jax.vmap(self.draw)(kc, ki)
        images = jnp.round(images).astype(jnp.uint8 if self.dtype == "uint8" else jnp.bfloat16)
        batch = len(category)
        info = {"degenerate": jnp.zeros(batch, bool), "fill": jnp.ones(batch), "slopes": slopes}
        return images, category, info


def renderer(config, table) -> SpectrumImages:
    return SpectrumImages(config)


def preview_overrides(num: int, image_size: int) -> dict:
    return {}
