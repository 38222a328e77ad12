"""Model FLOPs per image, from the architecture alone: 2 x the multiply-adds of the matrix
products and convolutions of one forward pass.

    forward_flops(model_config("B/16"), image_size=224, num_classes=1000)   # 34.9e9
    train_flops(model_config("B/16"), 224, 1000)                          # 3 x that

Counted as for MFU in PaLM (Chowdhery et al. 2022, appendix B): a training step costs three
forward passes (the backward pass computes gradients for activations and for weights, each as
costly as the forward); attention's two batched products (Q K^T and the weighted sum of V)
count; normalisation, activations, softmax, pooling, the optimiser, data augmentation and any
recomputation (rematerialisation) do not. The hardware runs more than this; XLA's count of the
compiled program (HFU) includes it.
"""

from __future__ import annotations

from synth_jax.models import resnet, vit


def vit_forward_flops(name: str, image_size: int, num_classes: int, pool: str = "gap") -> float:
    """FLOPs of one image through a ViT: patch embedding, blocks, head."""
    variant, patch = vit.parse_name(name)
    width, depth, mlp, _ = vit.VARIANTS[variant]
    patches = (image_size // patch) ** 2
    tokens = patches + (1 if pool == "cls" else 0)
    embedding = patches * (patch * patch * 3) * width
    projections = tokens * width * width * 4  # query, key, value, output
    attention = tokens * tokens * width * 2  # Q K^T and weights x V, over all heads
    feed_forward = tokens * width * mlp * 2
    head = width * num_classes
    return 2.0 * (embedding + depth * (projections + attention + feed_forward) + head)


def _conv(size: int, kernel: int, stride: int, cin: int, cout: int) -> tuple[int, float]:
    """(output size, multiply-adds) of a square convolution padded by kernel // 2."""
    out = (size + 2 * (kernel // 2) - kernel) // stride + 1
    return out, float(out * out * kernel * kernel * cin * cout)


def resnet_forward_flops(name: str, image_size: int, num_classes: int) -> float:
    """FLOPs of one image through a ResNet v1.5 (synth_jax.models.resnet): stem, blocks, head."""
    kind, stages = resnet.DEPTHS[resnet.parse_name(name)]
    if image_size <= 64:  # the CIFAR stem: one 3x3 convolution, no max pool
        size, macs = _conv(image_size, 3, 1, 3, 64)
    else:
        size, macs = _conv(image_size, 7, 2, 3, 64)
        size = (size + 2 - 3) // 2 + 1  # 3x3 max pool, stride 2 (no multiply-adds)
    cin = 64
    for i, blocks in enumerate(stages):
        width = 64 * 2**i
        cout = width * (4 if kind == "bottleneck" else 1)
        for j in range(blocks):
            stride = 2 if (i > 0 and j == 0) else 1
            if kind == "bottleneck":
                _, a = _conv(size, 1, 1, cin, width)
                out, b = _conv(size, 3, stride, width, width)  # v1.5: stride on the 3x3
                _, c = _conv(out, 1, 1, width, cout)
                macs += a + b + c
            else:
                out, a = _conv(size, 3, stride, cin, width)
                _, b = _conv(out, 3, 1, width, width)
                macs += a + b
            if stride != 1 or cin != cout:  # projection shortcut
                macs += _conv(size, 1, stride, cin, cout)[1]
            size, cin = out, cout
    macs += cin * num_classes
    return 2.0 * macs


def forward_flops(model_config, image_size: int, num_classes: int) -> float | None:
    """FLOPs of one image's forward pass through the model a `model_config` names; None for a
    model registered from outside (synth_jax.models.MODELS) that no formula here describes: its
    runs report XLA's count (HFU) and no MFU."""
    name = model_config.name
    if resnet.claims(name):
        return resnet_forward_flops(name, image_size, num_classes)
    if vit.claims(name):
        return vit_forward_flops(name, image_size, num_classes, model_config.get("pool", "gap"))
    return None


def train_flops(model_config, image_size: int, num_classes: int) -> float | None:
    """Model FLOPs of one training image: forward and backward, 3 x forward_flops (None: see
    forward_flops)."""
    forward = forward_flops(model_config, image_size, num_classes)
    return None if forward is None else 3.0 * forward
