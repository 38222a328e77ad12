"""Models: published parameter counts, attention against the textbook formula, stochastic
layers driven by an explicit key, batch/group norm, and logical sharding annotations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from synth_jax.models import create_model, model_config, vit
from synth_jax.train import mesh as mesh_lib


def param_count(name, num_classes=1000, image_size=224, **kw):
    model = nnx.eval_shape(
        lambda: create_model(model_config(name, **kw), num_classes, image_size, nnx.Rngs(0))
    )
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize(
    "name, kw, expected",
    [
        # timm deit_tiny_patch16_224 has 5,717,416 with 197 position rows; ours has 196 + cls.
        ("Ti/16", dict(pool="cls"), 5_717_416 - 192),
        ("B/16", dict(pool="cls"), 86_567_656 - 768),  # timm vit_base_patch16_224
        ("ResNet-18", {}, 11_689_512),  # torchvision
        ("ResNet-50", {}, 25_557_032),  # torchvision
    ],
)
def test_parameter_counts_match_the_published_models(name, kw, expected):
    assert param_count(name, **kw) == expected


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown ViT name"):
        create_model(model_config("Q/16"), 10, 32, nnx.Rngs(0))
    with pytest.raises(ValueError, match="ResNet"):
        create_model(model_config("ResNet-19"), 10, 32, nnx.Rngs(0))
    with pytest.raises(ValueError, match="multiple"):
        create_model(model_config("Ti/16"), 10, 40, nnx.Rngs(0))


@pytest.mark.parametrize("pool, posemb", [("gap", "learn"), ("cls", "sincos2d")])
def test_vit_outputs_and_features(pool, posemb):
    model = create_model(model_config("mu/4", pool=pool, posemb=posemb), 7, 16, nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (3, 16, 16, 3))
    assert model(x, train=False).shape == (3, 7)
    assert model.features(x).shape == (3, 32)
    assert isinstance(model.head, nnx.Linear)
    # a zero-initialised head: uniform predictions at the start
    np.testing.assert_allclose(model(x), 0.0)


def test_attention_equals_the_textbook_formula():
    attn = vit.Attention(32, 4, jnp.float32, nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 5, 32))
    q, k, v = (f(x).reshape(2, 5, 4, 8) for f in (attn.query, attn.key, attn.value))
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(8), axis=-1)
    expected = attn.out(jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(2, 5, 32))
    np.testing.assert_allclose(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_dropout_and_drop_path_follow_the_key():
    model = create_model(model_config("mu/4", dropout=0.2, drop_path=0.3), 5, 16, nnx.Rngs(0))
    model.head.kernel[...] = jax.random.normal(jax.random.key(2), model.head.kernel.shape)
    x = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3))
    a = model(x, train=True, rng=jax.random.key(3))
    b = model(x, train=True, rng=jax.random.key(3))
    c = model(x, train=True, rng=jax.random.key(4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(
        model(x, train=False), model(x, train=False, rng=jax.random.key(5))
    )
    with pytest.raises(ValueError, match="rng"):
        model(x, train=True)


def test_batch_norm_updates_statistics_and_group_norm_has_none():
    bn = create_model(model_config("ResNet-10"), 3, 32, nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    before = jax.tree.map(np.array, nnx.state(bn, nnx.BatchStat))
    bn(x, train=True)
    after = nnx.state(bn, nnx.BatchStat)
    changed = [
        not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after))
    ]
    assert all(changed)
    out = bn(x, train=False)
    assert out.shape == (2, 3)
    gn = create_model(model_config("ResNet-10", norm="group"), 3, 32, nnx.Rngs(0))
    assert jax.tree.leaves(nnx.state(gn, nnx.BatchStat)) == []
    assert gn.features(x).shape == (2, 512)


def test_fsdp_rules_split_the_embedding_dimension():
    mesh = jax.make_mesh((1, 4, 1), mesh_lib.MESH_AXES)
    abstract = nnx.eval_shape(lambda: create_model(model_config("Ti/16"), 10, 224, nnx.Rngs(0)))
    shardings = mesh_lib.param_shardings(nnx.state(abstract, nnx.Param), mesh)
    assert shardings["blocks"][0]["mlp1"]["kernel"].spec == jax.P("fsdp", None)
    assert shardings["blocks"][0]["attn"]["out"]["kernel"].spec == jax.P(None, "fsdp")
    # 10 classes do not split over 4 devices: that dimension stays replicated
    assert shardings["head"]["bias"].spec == jax.P(None)
