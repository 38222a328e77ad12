"""ResNet v1.5 (He et al. 2016) in Flax NNX, with batch norm or group norm.

Names: "ResNet-10", "ResNet-18", "ResNet-34" (basic blocks), "ResNet-50", "ResNet-101"
(bottleneck blocks). Images of 64 px or less get the CIFAR stem (one 3x3 convolution, no max
pool); larger images the ImageNet stem (7x7 stride 2 + max pool). Batch statistics are computed
over the global batch: under `jax.jit` with a sharded batch the mean is an all-reduce.

As a model module (see synth_jax.models) it owns the key `norm`; a pre-trained checkpoint is
loaded as is (batch statistics included), without resizing.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from synth_jax.config import check_choice
from synth_jax.errors import UsageError
from synth_jax.models import adapt
from synth_jax.models.sharding import partitioned

# depth -> (block kind, blocks per stage)
DEPTHS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


def parse_name(name: str) -> int:
    """'ResNet-50' -> 50; raises ValueError for an unknown name."""
    prefix, _, depth = name.partition("-")
    if prefix != "ResNet" or not depth.isdigit() or int(depth) not in DEPTHS:
        known = ", ".join(f"ResNet-{d}" for d in DEPTHS)
        raise ValueError(f"unknown ResNet name {name!r}: one of {known}")
    return int(depth)


def _conv(cin, cout, k, stride, dtype, rngs):
    return nnx.Conv(
        cin,
        cout,
        kernel_size=(k, k),
        strides=(stride, stride),
        padding=[(k // 2, k // 2)] * 2,
        use_bias=False,
        dtype=dtype,
        kernel_init=partitioned(
            nnx.initializers.variance_scaling(2.0, "fan_out", "normal"), (None, None, None, "embed")
        ),
        rngs=rngs,
    )


class Norm(nnx.Module):
    """Batch norm (running statistics in `nnx.BatchStat`) or group norm (32 groups)."""

    def __init__(self, channels, kind, dtype, rngs, zero_init=False):
        scale = nnx.initializers.zeros_init() if zero_init else nnx.initializers.ones_init()
        common = dict(
            dtype=dtype,
            scale_init=partitioned(scale, ("embed",)),
            bias_init=partitioned(nnx.initializers.zeros_init(), ("embed",)),
            rngs=rngs,
        )
        self.kind = kind
        if kind == "batch":
            self.norm = nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, **common)
        else:
            self.norm = nnx.GroupNorm(channels, num_groups=min(32, channels), **common)

    def __call__(self, x, train: bool):
        if self.kind == "batch":
            return self.norm(x, use_running_average=not train)
        return self.norm(x)


class BasicBlock(nnx.Module):
    expansion = 1

    def __init__(self, cin, width, stride, norm, dtype, rngs):
        cout = width * self.expansion
        self.conv1, self.norm1 = (
            _conv(cin, width, 3, stride, dtype, rngs),
            Norm(width, norm, dtype, rngs),
        )
        self.conv2 = _conv(width, cout, 3, 1, dtype, rngs)
        # Zero-init of the last norm's scale: each block starts as the identity (Goyal et al.).
        self.norm2 = Norm(cout, norm, dtype, rngs, zero_init=True)
        self.has_shortcut = stride != 1 or cin != cout
        if self.has_shortcut:  # a projection where the shape changes
            self.shortcut = _conv(cin, cout, 1, stride, dtype, rngs)
            self.shortcut_norm = Norm(cout, norm, dtype, rngs)

    def __call__(self, x, train):
        y = nnx.relu(self.norm1(self.conv1(x), train))
        y = self.norm2(self.conv2(y), train)
        if self.has_shortcut:
            x = self.shortcut_norm(self.shortcut(x), train)
        return nnx.relu(x + y)


class Bottleneck(nnx.Module):
    expansion = 4

    def __init__(self, cin, width, stride, norm, dtype, rngs):
        cout = width * self.expansion
        self.conv1, self.norm1 = (
            _conv(cin, width, 1, 1, dtype, rngs),
            Norm(width, norm, dtype, rngs),
        )
        # v1.5: the stride sits on the 3x3 convolution.
        self.conv2 = _conv(width, width, 3, stride, dtype, rngs)
        self.norm2 = Norm(width, norm, dtype, rngs)
        self.conv3 = _conv(width, cout, 1, 1, dtype, rngs)
        self.norm3 = Norm(cout, norm, dtype, rngs, zero_init=True)
        self.has_shortcut = stride != 1 or cin != cout
        if self.has_shortcut:  # a projection where the shape changes
            self.shortcut = _conv(cin, cout, 1, stride, dtype, rngs)
            self.shortcut_norm = Norm(cout, norm, dtype, rngs)

    def __call__(self, x, train):
        y = nnx.relu(self.norm1(self.conv1(x), train))
        y = nnx.relu(self.norm2(self.conv2(y), train))
        y = self.norm3(self.conv3(y), train)
        if self.has_shortcut:
            x = self.shortcut_norm(self.shortcut(x), train)
        return nnx.relu(x + y)


class ResNet(nnx.Module):
    """`model(images float[B,H,W,3], train, rng=None) -> logits float32[B, num_classes]`.

    `rng` is accepted for a common call signature with ViT and unused (no dropout here).
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        image_size: int,
        *,
        rngs: nnx.Rngs,
        norm: str = "batch",
        dtype=jnp.float32,
        head_zero_init: bool = True,
    ):
        depth = parse_name(name)
        if norm not in ("batch", "group"):
            raise ValueError(f"norm {norm!r}: expected 'batch' or 'group'")
        kind, stages = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.dtype = dtype
        self.small_stem = image_size <= 64
        if self.small_stem:
            self.stem = _conv(3, 64, 3, 1, dtype, rngs)
        else:
            self.stem = _conv(3, 64, 7, 2, dtype, rngs)
        self.stem_norm = Norm(64, norm, dtype, rngs)
        blocks, cin = [], 64
        for i, n in enumerate(stages):
            width = 64 * 2**i
            for j in range(n):
                blocks.append(block(cin, width, 2 if (i > 0 and j == 0) else 1, norm, dtype, rngs))
                cin = width * block.expansion
        self.blocks = nnx.List(blocks)
        self.width = cin
        head_init = (
            nnx.initializers.zeros_init() if head_zero_init else nnx.initializers.lecun_normal()
        )
        self.head = nnx.Linear(
            cin,
            num_classes,
            kernel_init=partitioned(head_init, ("embed", "classes")),
            bias_init=partitioned(nnx.initializers.zeros_init(), ("classes",)),
            rngs=rngs,
        )

    def features(self, images, train: bool = False, rng=None):
        """images float[B,H,W,3] -> pooled features float32[B, 512 or 2048]."""
        x = nnx.relu(self.stem_norm(self.stem(images.astype(self.dtype)), train))
        if not self.small_stem:
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x, train)
        return x.mean(axis=(1, 2)).astype(jnp.float32)

    def __call__(self, images, train: bool = False, rng=None):
        return self.head(self.features(images, train, rng)).astype(jnp.float32)


# -- the model module --------------------------------------------------------------------------
NAMES = "ResNet-N (ResNet-10, -18, -34, -50, -101)"
DEFAULTS = dict(norm="batch")  # batch | group
HEAD = ("head/.*",)  # the classifier: re-initialised for a new task


def claims(name: str) -> bool:
    return name.startswith("ResNet")


def validate(config, image_size: int) -> None:
    try:
        parse_name(config.name)
    except ValueError as e:
        raise UsageError(f"model.name: {e}") from None
    check_choice(config, "norm", ("batch", "group"), "model.")


def create(config, num_classes: int, image_size: int, rngs: nnx.Rngs, dtype) -> ResNet:
    return ResNet(
        config.name,
        num_classes,
        image_size,
        rngs=rngs,
        norm=config.norm,
        dtype=dtype,
        head_zero_init=config.head_zero_init,
    )


def adapt_pretrained(target, loaded, dont_load=HEAD) -> dict:
    """{path: array} of the pre-trained arrays this ResNet takes (see synth_jax.models.adapt)."""
    return adapt.select_arrays(target, loaded, dont_load)
