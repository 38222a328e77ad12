"""Anderson & Farrell's "plasma" background: diamond-square noise, colourised in 8-bit HSV.

Diamond-square builds a (2^n + 1)^2 grid level by level. Level k (1..n) halves the spacing: the
diamond step sets each square's centre to the mean of its 4 corners, the square step each edge
midpoint to the mean of its 4 neighbours (indices taken mod 2^k, the grid's period), and
both add U(-m_k, m_k) with m_k = 0.5 exp(d (1 - k)), d ~ U(0.4, 0.8) per image; the 4 corners
start U(0, 1). Level k only touches the points of spacing 2^(n-k), so the grid is grown from
2 x 2 to (2^n + 1)^2 by interleaving: n small static-shape steps, pure and jittable. The values
can leave [0, 1]; the colouring below says what becomes of them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.fractals.engine import counter_random
from synth_jax.fractals.engine.image_ops import hsv8_to_rgb

ROUGHNESS = (0.4, 0.8)  # d ~ U(0.4, 0.8): larger d, smoother noise


def hashed_uniform(words: jax.Array, salt: int, shape) -> jax.Array:
    """float32 U(0, 1) of `shape` from key words uint32[2] and a salt (one per draw site): a keyed
    hash of a counter; one threefry per image instead of one per level keeps compilation short."""
    count = int(np.prod(shape))
    salted = words[0] + jnp.uint32((salt * 0x9E3779B1) & 0xFFFFFFFF)
    counter = jax.lax.iota(jnp.uint32, count)  # not a folded constant: keeps compiles short
    h = counter_random.mix32(counter_random.mix32(counter ^ salted) ^ words[1])
    return ((h >> 8).astype(jnp.float32) * (1.0 / (1 << 24))).reshape(shape)


def refine(grid: jax.Array, words: jax.Array, level: int, m: jax.Array) -> jax.Array:
    """One diamond-square level: float[M + 1, M + 1] -> float[2M + 1, 2M + 1].

    Built by interleaving slices (no scatter or gather: their index constants make XLA's CPU
    compiler crawl): corners G, centres C[M, M], edge midpoints on even rows H[M + 1, M] and on
    odd rows V[M, M + 1]. Neighbour indices are taken mod 2M on the new grid, as in the classic
    periodic loop (reference_multi.diamond_square): the grid without its last row and column is
    one period, so a neighbour in the last row or column is read from the first."""
    size = grid.shape[0] - 1
    u = lambda site, shape: m * (2.0 * hashed_uniform(words, 3 * level + site, shape) - 1.0)
    centres = 0.25 * (grid[:-1, :-1] + grid[:-1, 1:] + grid[1:, :-1] + grid[1:, 1:])
    centres = centres + u(0, (size, size))
    above = jnp.concatenate([centres[-1:], centres], 0)  # row i - 1, wrapped
    below = jnp.concatenate([centres, centres[:1]], 0)  # row i, wrapped
    right = jnp.concatenate([grid[:, 1:-1], grid[:, :1]], 1)  # column j + 1, mod M
    h_edges = 0.25 * (grid[:, :-1] + right + above + below) + u(1, (size + 1, size))
    left = jnp.concatenate([centres[:, -1:], centres], 1)
    right = jnp.concatenate([centres, centres[:, :1]], 1)
    down = jnp.concatenate([grid[1:-1], grid[:1]], 0)  # row i + 1, mod M
    v_edges = 0.25 * (grid[:-1] + down + left + right) + u(2, (size, size + 1))

    def interleave(a, b, axis):  # a has one more entry than b along `axis`
        a_head = jax.lax.slice_in_dim(a, 0, size, axis=axis)
        a_last = jax.lax.slice_in_dim(a, size, size + 1, axis=axis)
        both = jnp.stack([a_head, b], axis=axis + 1)
        shape = list(a_head.shape)
        shape[axis] = 2 * size
        return jnp.concatenate([both.reshape(shape), a_last], axis=axis)

    even_rows = interleave(grid, h_edges, axis=1)  # [M + 1, 2M + 1]
    odd_rows = interleave(v_edges, centres, axis=1)  # [M, 2M + 1]
    return interleave(even_rows, odd_rows, axis=0)


def diamond_square(key: jax.Array, size: int) -> jax.Array:
    """Diamond-square noise float[size, size] (unclipped; about [0, 1]), n = ceil(log2 size)."""
    levels = max(1, math.ceil(math.log2(size)))
    words = jax.random.bits(key, (2,), jnp.uint32)
    start = hashed_uniform(words, 0, (5,))
    d = ROUGHNESS[0] + (ROUGHNESS[1] - ROUGHNESS[0]) * start[0]
    grid = start[1:].reshape(2, 2)
    for k in range(1, levels + 1):
        grid = refine(grid, words, k, 0.5 * jnp.exp(d * (1 - k)))
    return grid[:size, :size]


def colourise_plasma(x: jax.Array, key: jax.Array) -> jax.Array:
    """Anderson & Farrell's background colours of noise x float[H, W]: hue code
    uint8(x hs + h0), saturation min(x ss + s0, 255), value min(x vs + v0, 255), with
    hs ~ U(0.25, 1), ss ~ U(0.1, 0.3), vs ~ U(0.3, 0.6), s0 and v0 ~ U(0.4, 0.6), h0 ~ U(0, 1),
    all x 255; then OpenCV's 8-bit HSV -> RGB. Values outside [0, 1]: the hue code wraps mod 256
    as the original's uint8 cast does; saturation and value, already capped at 255, are clamped
    at 0 (the original's cast would wrap them, which needs x < -1.3). -> float[H, W, 3], 0..255."""
    draws = jax.random.uniform(key, (6,))
    u = lambda i, lo, hi: (lo + (hi - lo) * draws[i]) * 255.0
    hue = jnp.mod(jnp.floor(x * u(0, 0.25, 1.0) + u(1, 0.0, 1.0)), 256.0)
    sat = jnp.floor(jnp.clip(x * u(2, 0.1, 0.3) + u(3, 0.4, 0.6), 0.0, 255.0))
    val = jnp.floor(jnp.clip(x * u(4, 0.3, 0.6) + u(5, 0.4, 0.6), 0.0, 255.0))
    return hsv8_to_rgb(hue, sat, val)


def plasma_background(key: jax.Array, size: int) -> jax.Array:
    """A colourised diamond-square background float[size, size, 3] on the 0..255 scale."""
    k_noise, k_colour = jax.random.split(key)
    return colourise_plasma(diamond_square(k_noise, size), k_colour)
