"""Model FLOPs against hand counts and XLA's count; MFU and HFU against the exact chip's peak."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from synth_jax import chips
from synth_jax.models import create_model, flops, model_config
from synth_jax.train import metrics


def test_vit_b16_against_a_hand_count():
    # 196 patches of 16 x 16 x 3, width 768, 12 blocks, MLP 3072, 1,000 classes, GAP head.
    t, d, m = 196, 768, 3072
    embedding = 196 * 768 * 768
    block = 4 * t * d * d + 2 * t * t * d + 2 * t * d * m  # projections, attention, MLP
    hand = 2 * (embedding + 12 * block + d * 1000)
    assert flops.forward_flops(model_config("B/16"), 224, 1000) == hand
    assert abs(hand / 1e9 - 34.94) < 0.01
    # With a class token (197 tokens): 17.6 GMACs, the figure published for ViT-B/16 at 224 px.
    cls = flops.forward_flops(model_config("B/16", pool="cls"), 224, 1000)
    assert abs(cls / 2e9 - 17.56) < 0.01
    assert flops.train_flops(model_config("B/16"), 224, 1000) == 3 * hand


def test_resnet50_against_a_hand_count():
    # multiply-adds: stem 7x7/2 to 112 px, max pool to 56, then per stage (blocks, width, input
    # size, output size); the first block of stages 2-4 strides its 3x3 (v1.5) and projects.
    macs = 112 * 112 * 49 * 3 * 64
    cin = 64
    for blocks, width, size_in, size in [
        (3, 64, 56, 56),
        (4, 128, 56, 28),
        (6, 256, 28, 14),
        (3, 512, 14, 7),
    ]:
        cout = 4 * width
        for j in range(blocks):
            first = j == 0
            macs += (size_in if first else size) ** 2 * cin * width  # 1x1 reduce
            macs += size * size * 9 * width * width  # 3x3
            macs += size * size * width * cout  # 1x1 expand
            if first:
                macs += size * size * cin * cout  # projection shortcut
            cin = cout
    macs += 2048 * 1000
    counted = flops.forward_flops(model_config("ResNet-50"), 224, 1000)
    assert counted == 2 * macs
    assert abs(macs / 1e9 - 4.09) < 0.01  # the published 4.1 GMACs


@pytest.mark.parametrize(
    "name, size, low, high", [("Ti/16", 224, 1.0, 1.08), ("ResNet-18", 224, 0.9, 1.0)]
)
def test_formula_against_xla_count_of_the_forward_pass(name, size, low, high):
    # XLA counts every operation of the lowered program: a little more than the matrix products
    # for a ViT (norms, GELU, softmax), a little less for a ResNet (it skips the padded taps
    # of a convolution, which the convention counts).
    config = model_config(name)
    model = nnx.eval_shape(lambda: create_model(config, 10, size, nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    images = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    lowered = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False)).lower(state, images)
    counted = lowered.cost_analysis()["flops"]
    if hasattr(model, "posemb"):  # XLA counts the ViT's scan over its blocks once: add the rest
        block_def, block_state = nnx.split(model.blocks[0])
        tokens = jax.ShapeDtypeStruct((1, (size // 16) ** 2, model.posemb.shape[-1]), jnp.float32)
        block = jax.jit(lambda s, x: nnx.merge(block_def, s)(x, False, None))
        counted += (len(model.blocks) - 1) * block.lower(block_state, tokens).cost_analysis()[
            "flops"
        ]
    ratio = counted / flops.forward_flops(config, size, 10)
    assert low <= ratio <= high, ratio


@pytest.mark.parametrize(
    "kind, chip",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB"),
        ("TPU v4", "TPU v4"),
        ("TPU v5 lite", "TPU v5e"),
        ("TPU v5", "TPU v5p"),
        ("TPU v6 lite", "TPU v6e"),
        ("cpu", None),
    ],
)
def test_device_kinds_map_to_their_exact_chip(kind, chip):
    found = chips.chip_for_device_kind(kind)
    assert (found.name if found else None) == chip
    if found:
        assert found.peak_bf16_flops > 1e14 and found.hbm_bytes > 1e10 and found.source


def test_mfu_and_hfu_over_all_chips_peak():
    meter = metrics.Throughput(256, 3e12, 4e12, device_kind="NVIDIA H100 PCIe", num_devices=2)
    meter.measure(0)
    meter.t -= 2.0  # two steps took 2 s: 1 s per step
    row = meter.measure(2)
    assert row["images_per_s"] == pytest.approx(256, rel=1e-3)
    assert row["mfu"] == pytest.approx(3e12 / (2 * 756.5e12), rel=1e-3)
    assert row["hfu"] == pytest.approx(4e12 / (2 * 756.5e12), rel=1e-3)
    cpu = metrics.Throughput(256, 3e12, device_kind="cpu")
    cpu.measure(0)
    assert "mfu" not in cpu.measure(1)


def test_a_model_without_a_formula_has_no_model_flops():
    # a model registered from outside (synth_jax.models.MODELS): MFU is unknown, HFU still counts
    config = model_config("Ti/16").copy_and_resolve_references()
    config.name = "OneLayer"
    assert flops.forward_flops(config, 32, 10) is None
    assert flops.train_flops(config, 32, 10) is None
