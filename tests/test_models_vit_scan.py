"""The ViT's compile-friendly forms against their plain references: the patch embedding as a
matrix product is the strided convolution, the scanned blocks are the blocks called one by one
(drop-path included), and neither the scan nor rematerialisation changes a gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from synth_jax.models import vit

X = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3))


def model(**kwargs):
    return vit.ViT(
        "mu/4",
        10,
        16,
        rngs=nnx.Rngs(0),
        drop_path=0.2,
        dropout=0.1,
        head_zero_init=False,
        **kwargs,
    )


def test_patch_embedding_is_the_strided_convolution():
    m = model()
    conv = m.embedding(X).reshape(4, 16, -1)
    np.testing.assert_allclose(m.embed(X), conv, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_scanned_blocks_are_the_blocks_one_by_one(dtype):
    m = model(dtype=dtype)
    keys = jax.random.split(jax.random.key(3), len(m.blocks))
    x = m.embed(X) + m.posemb[...].astype(dtype)
    expected = blocks_one_by_one(m, x, keys)
    scanned = m.run_blocks(x, True, keys)
    assert scanned.dtype == dtype
    # bfloat16: XLA fuses the scanned body differently; a few values differ by one unit in
    # the last place (8 bits of mantissa: 0.03 at 4)
    atol = 1e-5 if dtype == jnp.float32 else 0.07
    np.testing.assert_allclose(
        scanned.astype(jnp.float32), expected.astype(jnp.float32), rtol=atol, atol=atol
    )
    # drop-path drew masks: some samples' branches were dropped, so training differs from eval
    assert not np.allclose(m.run_blocks(x, False, None), scanned, atol=1e-3)


def blocks_one_by_one(m, x, keys):
    for i, block in enumerate(m.blocks):  # DeiT: drop-path 0.2 * i / (depth - 1)
        x = block(x, True, keys[i], 0.2 * i / (len(m.blocks) - 1))
    return x


@pytest.mark.parametrize("remat", ["minimal", "full"])
def test_scanned_and_rematerialised_blocks_have_the_gradients_of_the_blocks(remat):
    keys = jax.random.split(jax.random.key(3), 2)

    def grads(run):
        m = model(remat=remat)
        loss = lambda m: jnp.sum(run(m, m.embed(X), keys) ** 2)
        return jax.tree.leaves(nnx.state(nnx.grad(loss)(m), nnx.Param))

    scanned = grads(lambda m, x, k: m.run_blocks(x, True, k))
    for a, b in zip(scanned, grads(blocks_one_by_one)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
