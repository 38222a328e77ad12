"""Counter-based random numbers: a keyed integer hash of a counter.

The chaos game draws one map choice per point (10^5 per image), and the per-point patches one
number per pixel; threefry costs ~100 integer operations per 32 bits, this ~10 per two 16-bit
draws. Pure uint32 arithmetic: the same numbers on every backend and device count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mix32(x: jax.Array) -> jax.Array:
    """A 32-bit integer hash (the lowbias32 finaliser): uint32 -> uint32, same on every backend."""
    x = jnp.asarray(x, jnp.uint32)
    x ^= x >> 16
    x *= jnp.uint32(0x7FEB352D)
    x ^= x >> 15
    x *= jnp.uint32(0x846CA68B)
    x ^= x >> 16
    return x


def uniform16(words: jax.Array, counter: jax.Array) -> jax.Array:
    """Two 16-bit uniform integers (as uint32 in [0, 65536)) per counter value: a keyed hash of
    the counter, about 10 integer operations instead of threefry's ~100 per 32 bits; the
    chaos game is by far the largest consumer of random numbers. words: uint32[2] key words;
    counter: uint32[M] distinct -> uint32[2 M]."""
    h = mix32(mix32(counter ^ words[0]) ^ words[1])
    return jnp.concatenate([h & jnp.uint32(0xFFFF), h >> 16])
