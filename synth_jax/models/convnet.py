"""A small VGG-style ConvNet in Flax NNX, for small images on a CPU.

Names: "ConvNet-W" with W the width of the first stage (e.g. "ConvNet-16", "ConvNet-32"). Three
stages of widths W, 2W, 4W, each a 3x3 convolution, a norm and a ReLU; the first two stages end
in a 2x2 max pool, the last in a global average pool (the features, 4W wide) and the linear
`head`. At 16 px a ConvNet-32 costs about 2.6 M multiply-adds a forward pass per image (a
ResNet-10 about 60 M), which is what makes seeds and grids of cells affordable on a laptop.

As a model module (see synth_jax.models) it owns the key `norm` ("batch" or "group"); a
pre-trained checkpoint is loaded as is (batch statistics included).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from synth_jax.config import check_choice
from synth_jax.errors import UsageError
from synth_jax.models import adapt
from synth_jax.models.resnet import Norm, _conv
from synth_jax.models.sharding import partitioned


def parse_name(name: str) -> int:
    """'ConvNet-32' -> 32; raises ValueError for another name."""
    prefix, _, width = name.partition("-")
    if prefix != "ConvNet" or not width.isdigit() or int(width) < 1:
        raise ValueError(f"unknown ConvNet name {name!r}: ConvNet-W with W >= 1 (e.g. ConvNet-32)")
    return int(width)


class ConvNet(nnx.Module):
    """`model(images float[B,H,W,3], train, rng=None) -> logits float32[B, num_classes]`."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        norm: str = "batch",
        dtype=jnp.float32,
        head_zero_init: bool = True,
    ):
        width = parse_name(name)
        if norm not in ("batch", "group"):
            raise ValueError(f"norm {norm!r}: expected 'batch' or 'group'")
        self.dtype = dtype
        widths = [width, 2 * width, 4 * width]
        cins = [3] + widths[:-1]
        self.convs = nnx.List([_conv(i, o, 3, 1, dtype, rngs) for i, o in zip(cins, widths)])
        self.norms = nnx.List([Norm(o, norm, dtype, rngs) for o in widths])
        self.width = widths[-1]
        head_init = (
            nnx.initializers.zeros_init() if head_zero_init else nnx.initializers.lecun_normal()
        )
        self.head = nnx.Linear(
            self.width,
            num_classes,
            kernel_init=partitioned(head_init, ("embed", "classes")),
            bias_init=partitioned(nnx.initializers.zeros_init(), ("classes",)),
            rngs=rngs,
        )

    def features(self, images, train: bool = False, rng=None):
        """images float[B,H,W,3] -> pooled features float32[B, 4W]."""
        x = images.astype(self.dtype)
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = nnx.relu(norm(conv(x), train))
            if i < last:
                x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        return x.mean(axis=(1, 2)).astype(jnp.float32)

    def __call__(self, images, train: bool = False, rng=None):
        return self.head(self.features(images, train, rng)).astype(jnp.float32)


# -- the model module --------------------------------------------------------------------------
NAMES = "ConvNet-W (ConvNet-16, ConvNet-32, ...)"
DEFAULTS = dict(norm="batch")  # batch | group (shared with ResNet)
HEAD = ("head/.*",)


def claims(name: str) -> bool:
    return name.startswith("ConvNet")


def validate(config, image_size: int) -> None:
    try:
        parse_name(config.name)
    except ValueError as e:
        raise UsageError(f"model.name: {e}") from None
    check_choice(config, "norm", ("batch", "group"), "model.")
    if image_size < 4:
        raise UsageError(f"image_size {image_size}: a ConvNet pools twice by 2, use >= 4 px")


def create(config, num_classes: int, image_size: int, rngs: nnx.Rngs, dtype) -> ConvNet:
    return ConvNet(
        config.name,
        num_classes,
        rngs=rngs,
        norm=config.norm,
        dtype=dtype,
        head_zero_init=config.head_zero_init,
    )


def adapt_pretrained(target, loaded, dont_load=HEAD) -> dict:
    """{path: array} of the pre-trained arrays this ConvNet takes (see synth_jax.models.adapt)."""
    return adapt.select_arrays(target, loaded, dont_load)
