"""Random streams of the per-category / per-instance families (VisualAtom, RCDB, dead leaves,
spectrum): every category-level value comes from the category's own stream and every
instance-level value from the instance's key, so no two categories share a stream and nothing
depends on the batch layout or on how many processes built the table.

    category stream  numpy default_rng((seed, family_tag, c))          on the host, once
    instance key     ki = fold_in(fold_in(kc, INSTANCE_TAG), j),
                     kc = fold_in(fold_in(key(seed), family_tag), c)   on the device, per image

The category values are drawn with the data config's seed into the family's table (numpy: the
same on every machine, and a few microseconds per category where compiling a JAX sampler takes
seconds); the instance values are drawn inside the render from the image seed it is given (the
data config's seed for `synth-jax render` and `export`, the run's seed in training).
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

INSTANCE_TAG = 0x1A57A7CE


def family_tag(name: str) -> int:
    """A fixed 31-bit tag per family name (CRC-32), so two families never share keys."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def category_keys(seed, name: str, categories) -> jax.Array:
    """kc of categories int[C] -> keys[C]."""
    base = jax.random.fold_in(jax.random.key(jnp.asarray(seed, jnp.uint32)), family_tag(name))
    return jax.vmap(lambda c: jax.random.fold_in(base, c))(jnp.asarray(categories, jnp.int32))


def instance_keys(seed, name: str, categories, instances) -> jax.Array:
    """ki of (category, instance) int[B] pairs -> keys[B]."""
    kc = category_keys(seed, name, categories)
    return jax.vmap(lambda k, j: jax.random.fold_in(jax.random.fold_in(k, INSTANCE_TAG), j))(
        kc, jnp.asarray(instances, jnp.int32)
    )


def category_rng(seed: int, name: str, category: int) -> np.random.Generator:
    """The numpy stream of one category's values."""
    return np.random.default_rng((int(seed), family_tag(name), int(category)))


def category_table(name: str, config, sample, int_columns=()) -> dict:
    """Columns of `sample(rng, config) -> dict of scalars` over every category, each drawn from
    category_rng(config.seed, name, c): int32 for `int_columns`, float32 otherwise."""
    rows = [sample(category_rng(config.seed, name, c), config) for c in range(config.num_classes)]
    return {
        key: np.array([r[key] for r in rows], np.int32 if key in int_columns else np.float32)
        for key in rows[0]
    }


def integers(bits: jax.Array, low: int, high: int) -> jax.Array:
    """Uniform integers in low..high (inclusive) from uint32 random bits: bits mod (high - low +
    1), whose bias (under (high - low + 1) / 2^32) is far below any statistic of an image."""
    span = jnp.uint32(high - low + 1)
    return (bits % span).astype(jnp.int32) + low


def unit(bits: jax.Array) -> jax.Array:
    """Uniform float32 in [0, 1) from uint32 random bits (their top 24)."""
    return (bits >> 8).astype(jnp.float32) * jnp.float32(2**-24)
