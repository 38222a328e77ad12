"""1-D Perlin noise as VisualAtom and RCDB use it: the `noise` package's `pnoise1` with its
defaults (one octave, repeat 1024, base 0), evaluated at fresh uniform points u ~ U(0, 10^4).

Drawn at fresh uniform points, the values are white noise (independent per vertex), not a smooth
curve: range +-0.952, mean 0, standard deviation 0.329. The joint law of the two table entries a
point reads, and so that deviation, depends on Ken Perlin's permutation table, which is why the
table is kept (two independent bytes would give 0.319).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.fractals.engine import counter_random

# Ken Perlin's reference permutation of 0..255 (the `noise` package's PERM, first half).
PERM = np.array([
    151, 160, 137, 91, 90, 15, 131, 13, 201, 95, 96, 53, 194, 233, 7, 225, 140, 36, 103, 30, 69,
    142, 8, 99, 37, 240, 21, 10, 23, 190, 6, 148, 247, 120, 234, 75, 0, 26, 197, 62, 94, 252, 219,
    203, 117, 35, 11, 32, 57, 177, 33, 88, 237, 149, 56, 87, 174, 20, 125, 136, 171, 168, 68, 175,
    74, 165, 71, 134, 139, 48, 27, 166, 77, 146, 158, 231, 83, 111, 229, 122, 60, 211, 133, 230,
    220, 105, 92, 41, 55, 46, 245, 40, 244, 102, 143, 54, 65, 25, 63, 161, 1, 216, 80, 73, 209, 76,
    132, 187, 208, 89, 18, 169, 200, 196, 135, 130, 116, 188, 159, 86, 164, 100, 109, 198, 173,
    186, 3, 64, 52, 217, 226, 250, 124, 123, 5, 202, 38, 147, 118, 126, 255, 82, 85, 212, 207, 206,
    59, 227, 47, 16, 58, 17, 182, 189, 28, 42, 223, 183, 170, 213, 119, 248, 152, 2, 44, 154, 163,
    70, 221, 153, 101, 155, 167, 43, 172, 9, 129, 22, 39, 253, 19, 98, 108, 110, 79, 113, 224, 232,
    178, 185, 112, 104, 218, 246, 97, 228, 251, 34, 242, 193, 238, 210, 144, 12, 191, 179, 162,
    241, 81, 51, 145, 235, 249, 14, 239, 107, 49, 192, 214, 31, 181, 199, 106, 157, 184, 84, 204,
    176, 115, 121, 50, 45, 127, 4, 150, 254, 138, 236, 205, 93, 222, 114, 67, 29, 24, 72, 243, 141,
    128, 195, 78, 66, 215, 61, 156, 180,
], np.int32)  # fmt: skip

U_MAX = 10_000.0  # the generators evaluate the noise at u ~ U(0, 10^4)


def _slope(h: np.ndarray) -> np.ndarray:
    """The gradient of table entry h: -1 (bit 3 set) or 1..8 (bits 0-2, plus one)."""
    return np.where(h & 8, -1.0, (h & 7) + 1.0)


# SLOPES[i] = (slope of PERM[i], slope of PERM[i + 1 mod 256]): a point reads both, one gather.
SLOPES = np.stack([_slope(PERM), _slope(np.roll(PERM, -1))], 1).astype(np.float32)


def noise1(u: jax.Array) -> jax.Array:
    """pnoise1(u) of the `noise` package (one octave, repeat 1024, base 0), in float32.
    u: float32[...] >= 0 -> float32[...] in [-0.952, 0.952]."""
    u = jnp.asarray(u, jnp.float32)
    whole = jnp.floor(u)
    # i0 = floor(u) mod 1024 and i1 = i0 + 1 mod 1024, both masked to 0..255: 1024 is a
    # multiple of 256, so they are floor(u) mod 256 and the entry after it.
    slopes = jnp.asarray(SLOPES)[whole.astype(jnp.int32) & 255]
    t = u - whole
    fade = t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
    a, b = slopes[..., 0] * t, slopes[..., 1] * (t - 1.0)
    return (a + fade * (b - a)) * 0.4


def uniform_u(words: jax.Array, counter: jax.Array) -> jax.Array:
    """u ~ U(0, 10^4) as float32 (24 random bits, the resolution of a float32 draw), one per
    counter value: a keyed hash, as cheap as the chaos game's map choices (an orbit image needs
    up to 400k of them). words: uint32[2]; counter: uint32[...] distinct -> float32[...]."""
    h = counter_random.mix32(counter_random.mix32(counter ^ words[0]) ^ words[1])
    return (h >> 8).astype(jnp.float32) * jnp.float32(U_MAX / 2**24)


def white_noise(words: jax.Array, counter: jax.Array) -> jax.Array:
    """pn(U(0, 10^4)) per counter value: the generators' per-vertex noise. float32[...]."""
    return noise1(uniform_u(words, counter))
