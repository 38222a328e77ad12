"""timm's VisionTransformer and ResNet in NumPy (float64): an independent reference for the export
to timm and the import from it, so that CI checks the layout mapping numerically without PyTorch.

Written from timm 1.0's architectures (timm/models/vision_transformer.py, resnet.py) and
PyTorch's conventions, not from synth_jax's models:

    nn.Conv2d       weight [out, in, kh, kw] on NCHW images; cross-correlation, zero padding
    nn.Linear       weight [out, in]: y = x W^T + b
    nn.LayerNorm    timm's ViT: eps 1e-6, biased variance over the last axis
    nn.BatchNorm2d  eval: running statistics, eps 1e-5
    nn.GELU         exact (erf)
    nn.MaxPool2d    3x3, stride 2, padding 1 (padded with -inf)
    timm Attention  qkv rows ordered (3, heads, head_dim); softmax(q k^T / sqrt(head_dim)) v
    state dict      strict: exactly the names and shapes the architecture holds

`create` resolves an architecture's arguments as `timm.create_model` does (the registered
architecture's, then the keyword arguments; None arguments dropped), `from_config` as
`timm.create_model("local-dir:DIR")` does from DIR/config.json; `shapes` lists the state dict
the model holds, `random_state_dict` fills one, `forward` loads one strictly and runs it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf

VIT_DEFAULTS = dict(
    img_size=224,
    patch_size=16,
    in_chans=3,
    num_classes=1000,
    global_pool="token",
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4.0,
    qkv_bias=True,
    init_values=None,
    class_token=True,
    no_embed_class=False,
    fc_norm=None,
)
RESNET_DEFAULTS = dict(in_chans=3, num_classes=1000, global_pool="avg", block="basic", layers=None)
_VIT_SIZES = {  # timm's registered plain ViTs: family -> (width, depth, heads), {patch: sizes}
    "tiny": ((192, 12, 3), {16: (224, 384)}),
    "small": ((384, 12, 6), {32: (224, 384), 16: (224, 384), 8: (224,)}),
    "base": ((768, 12, 12), {32: (224, 384), 16: (224, 384), 8: (224,)}),
    "large": ((1024, 24, 16), {32: (224, 384), 16: (224, 384), 14: (224,)}),
}
ARCHITECTURES = {
    **{
        f"vit_{family}_patch{patch}_{size}": (
            "vit",
            dict(img_size=size, patch_size=patch, embed_dim=w, depth=d, num_heads=h),
        )
        for family, ((w, d, h), patches) in _VIT_SIZES.items()
        for patch, sizes in patches.items()
        for size in sizes
    },
    **{
        f"vit_medium_patch16_gap_{size}": (
            "vit",
            dict(
                img_size=size,
                patch_size=16,
                embed_dim=512,
                depth=12,
                num_heads=8,
                class_token=False,
                global_pool="avg",
                qkv_bias=False,
                init_values=1e-6,
                fc_norm=False,
            ),
        )
        for size in (240, 256, 384)
    },
    "resnet18": ("resnet", dict(block="basic", layers=(2, 2, 2, 2))),
    "resnet34": ("resnet", dict(block="basic", layers=(3, 4, 6, 3))),
    "resnet50": ("resnet", dict(block="bottleneck", layers=(3, 4, 6, 3))),
    "resnet101": ("resnet", dict(block="bottleneck", layers=(3, 4, 23, 3))),
}
LN_EPS, BN_EPS = 1e-6, 1e-5
STAGE_WIDTHS = (64, 128, 256, 512)


# -- building: arguments and the state dict's names and shapes ---------------------------------
def create(architecture: str, **kwargs) -> dict:
    """The resolved arguments of `timm.create_model(architecture, **kwargs)`, with "kind"
    ("vit" | "resnet"). Raises ValueError for an architecture or argument not modelled here."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{architecture!r}: not one of {', '.join(ARCHITECTURES)}")
    kind, registered = ARCHITECTURES[architecture]
    defaults = VIT_DEFAULTS if kind == "vit" else RESNET_DEFAULTS
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # as timm.create_model does
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError(f"{architecture}: arguments {unknown} are not modelled")
    args = {**defaults, **registered, **kwargs, "kind": kind}
    if kind == "vit" and not args["class_token"] and args["global_pool"] == "token":
        raise ValueError(f"{architecture}: token pooling needs the class token")
    if args["global_pool"] not in ("token", "avg"):
        raise ValueError(f"{architecture}: global_pool {args['global_pool']!r} is not modelled")
    return args


def from_config(config: dict) -> dict:
    """The arguments `timm.create_model("local-dir:DIR", pretrained=True)` builds from
    DIR/config.json: its model_args, then num_classes, global_pool, in_chans and (for a fixed
    input size) img_size from its pretrained_cfg."""
    cfg = dict(config.get("pretrained_cfg") or {})
    if "num_classes" in config:
        cfg["num_classes"] = config["num_classes"]
    kwargs = dict(config.get("model_args") or {})
    if cfg.get("num_classes") is not None and cfg["num_classes"] >= 0:
        kwargs.setdefault("num_classes", cfg["num_classes"])
    if cfg.get("global_pool") is not None:
        kwargs.setdefault("global_pool", cfg["global_pool"])
    if cfg.get("input_size") is not None:
        kwargs.setdefault("in_chans", cfg["input_size"][0])
        if cfg.get("fixed_input_size", False):
            kwargs.setdefault("img_size", cfg["input_size"][-1])
    return create(config["architecture"], **kwargs)


def _use_fc_norm(args: dict) -> bool:
    """timm normalises after pooling (fc_norm) by default exactly when it averages."""
    return args["global_pool"] == "avg" if args["fc_norm"] is None else bool(args["fc_norm"])


def dtype(name: str) -> np.dtype:
    """The dtype timm stores a state-dict entry in: int64 batch counters, float32 otherwise."""
    return np.dtype(np.int64 if name.endswith("num_batches_tracked") else np.float32)


def _linear(name: str, dout: int, din: int, bias: bool = True) -> dict:
    return {f"{name}.weight": (dout, din), **({f"{name}.bias": (dout,)} if bias else {})}


def _norm(name: str, width: int) -> dict:
    return {f"{name}.weight": (width,), f"{name}.bias": (width,)}


def _vit_shapes(args: dict) -> dict:
    width, patch = args["embed_dim"], args["patch_size"]
    grid, hidden = args["img_size"] // patch, int(width * args["mlp_ratio"])
    prefix = 1 if args["class_token"] else 0
    out = {"cls_token": (1, 1, width)} if prefix else {}
    out["pos_embed"] = (1, grid * grid + (0 if args["no_embed_class"] else prefix), width)
    out["patch_embed.proj.weight"] = (width, args["in_chans"], patch, patch)
    out["patch_embed.proj.bias"] = (width,)
    for i in range(args["depth"]):
        p = f"blocks.{i}"
        out.update(_norm(f"{p}.norm1", width))
        out.update(_linear(f"{p}.attn.qkv", 3 * width, width, args["qkv_bias"]))
        out.update(_linear(f"{p}.attn.proj", width, width))
        out.update({f"{p}.ls1.gamma": (width,)} if args["init_values"] else {})
        out.update(_norm(f"{p}.norm2", width))
        out.update(_linear(f"{p}.mlp.fc1", hidden, width))
        out.update(_linear(f"{p}.mlp.fc2", width, hidden))
        out.update({f"{p}.ls2.gamma": (width,)} if args["init_values"] else {})
    out.update(_norm("fc_norm" if _use_fc_norm(args) else "norm", width))
    if args["num_classes"]:
        out.update(_linear("head", args["num_classes"], width))
    return out


def _resnet_blocks(args: dict):
    """(name, in channels, planes, stride, has downsample) of every block, stage by stage: the
    stride on each stage's first block (1 in layer1, then 2), a 1x1 conv + BN downsample where
    the stride or the channels change (timm's make_blocks)."""
    expansion = 4 if args["block"] == "bottleneck" else 1
    inplanes = 64
    for s, (planes, n) in enumerate(zip(STAGE_WIDTHS, args["layers"])):
        for j in range(n):
            stride = 2 if s > 0 and j == 0 else 1
            yield (
                f"layer{s + 1}.{j}",
                inplanes,
                planes,
                stride,
                j == 0 and (stride != 1 or inplanes != planes * expansion),
            )
            inplanes = planes * expansion


def _block_convs(block: str, cin: int, planes: int, stride: int) -> list[tuple]:
    """(index r of convR/bnR, out channels, in channels, kernel, stride, padding) of a block's
    main path: BasicBlock 3x3 (stride) + 3x3; Bottleneck 1x1 + 3x3 (stride: v1.5) + 1x1 (x4)."""
    if block == "basic":
        return [(1, planes, cin, 3, stride, 1), (2, planes, planes, 3, 1, 1)]
    return [
        (1, planes, cin, 1, 1, 0),
        (2, planes, planes, 3, stride, 1),
        (3, 4 * planes, planes, 1, 1, 0),
    ]


def _batch_norm_shapes(name: str, width: int) -> dict:
    stats = {f"{name}.running_mean": (width,), f"{name}.running_var": (width,)}
    return {**_norm(name, width), **stats, f"{name}.num_batches_tracked": ()}


def _resnet_shapes(args: dict) -> dict:
    out = {"conv1.weight": (64, args["in_chans"], 7, 7), **_batch_norm_shapes("bn1", 64)}
    width = 64
    for name, cin, planes, stride, down in _resnet_blocks(args):
        for r, cout, c, k, _, _ in _block_convs(args["block"], cin, planes, stride):
            out[f"{name}.conv{r}.weight"] = (cout, c, k, k)
            out.update(_batch_norm_shapes(f"{name}.bn{r}", cout))
            width = cout
        if down:
            out[f"{name}.downsample.0.weight"] = (width, cin, 1, 1)
            out.update(_batch_norm_shapes(f"{name}.downsample.1", width))
    if args["num_classes"]:
        out.update(_linear("fc", args["num_classes"], width))
    return out


def shapes(args: dict) -> dict[str, tuple]:
    """{name: shape} of the state dict of the model `args` (from `create`), as
    `model.state_dict()` holds it; each entry's dtype is `dtype(name)`."""
    return _vit_shapes(args) if args["kind"] == "vit" else _resnet_shapes(args)


def random_state_dict(args: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """A state dict of the model `args` with every entry random (norm weights, biases, batch
    statistics, class token and position embedding included), so that any misplaced entry
    changes the outputs; weights scaled by 1/sqrt(fan-in) so that activations stay O(1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes(args).items():
        if name.endswith("num_batches_tracked"):
            value = np.asarray(rng.integers(0, 1000), np.int64)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2 and name.endswith(".weight"):
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[1:])), shape)
        elif name.endswith((".weight", "gamma")):  # norm scales and layer scale
            value = 1.0 + rng.normal(0.0, 0.2, shape)
        else:  # biases, running means, class token, position embedding
            value = rng.normal(0.0, 0.1, shape)
        out[name] = np.asarray(value, dtype(name))
    return out


def load_strict(args: dict, state_dict: dict) -> dict[str, np.ndarray]:
    """`model.load_state_dict(state_dict)` (strict): {name: float64 array}, or ValueError naming
    the missing, unexpected or reshaped entries."""
    expected = shapes(args)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    reshaped = sorted(
        f"{n} {np.shape(state_dict[n])} (needs {expected[n]})"
        for n in set(expected) & set(state_dict)
        if tuple(np.shape(state_dict[n])) != tuple(expected[n])
    )
    if missing or unexpected or reshaped:
        raise ValueError(
            f"state dict does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"shapes {reshaped[:3]}"
        )
    return {n: np.asarray(v, np.float64) for n, v in state_dict.items()}


# -- the forward pass --------------------------------------------------------------------------
def conv2d(x, weight, stride: int = 1, padding: int = 0, bias=None):
    """nn.Conv2d: x [B, C, H, W], weight [O, C, kh, kw] -> [B, O, Ho, Wo] with
    Ho = (H + 2 padding - kh) // stride + 1 (cross-correlation, zero padding)."""
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    kh, kw = weight.shape[2:]
    windows = sliding_window_view(np.pad(x, pad), (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    y = np.einsum("bchwij,ocij->bohw", windows, weight, optimize=True)
    return y if bias is None else y + bias[:, None, None]


def max_pool(x, kernel: int = 3, stride: int = 2, padding: int = 1):
    """nn.MaxPool2d: x [B, C, H, W] -> [B, C, Ho, Wo], padding never chosen (-inf)."""
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    x = np.pad(x, pad, constant_values=-np.inf)
    windows = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.max(axis=(-2, -1))


def batch_norm(x, w: dict, name: str):
    """nn.BatchNorm2d in eval mode: x [B, C, H, W] normalised by the running statistics."""
    mean, var = w[f"{name}.running_mean"], w[f"{name}.running_var"]
    scale = w[f"{name}.weight"] / np.sqrt(var + BN_EPS)
    return (x - mean[:, None, None]) * scale[:, None, None] + w[f"{name}.bias"][:, None, None]


def layer_norm(x, w: dict, name: str):
    """nn.LayerNorm over the last axis (biased variance), eps 1e-6."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * w[f"{name}.weight"] + w[f"{name}.bias"]


def linear(x, w: dict, name: str):
    """nn.Linear: x [..., in] -> [..., out] = x W^T + b (no bias when the state dict has none)."""
    y = x @ w[f"{name}.weight"].T
    return y + w[f"{name}.bias"] if f"{name}.bias" in w else y


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def attention(x, w: dict, name: str, heads: int):
    """timm's Attention: x [B, N, C] -> [B, N, C]; the fused qkv output split as
    (3, heads, head_dim), softmax(q k^T / sqrt(head_dim)) v, heads concatenated, then proj."""
    b, n, c = x.shape
    qkv = linear(x, w, f"{name}.qkv").reshape(b, n, 3, heads, c // heads).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv  # each [B, heads, N, head_dim]
    scores = q @ k.transpose(0, 1, 3, 2) * (c // heads) ** -0.5
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    y = (scores / scores.sum(-1, keepdims=True)) @ v
    return linear(y.transpose(0, 2, 1, 3).reshape(b, n, c), w, f"{name}.proj")


def _vit_forward(args: dict, w: dict, images):
    b, _, h, wd = images.shape
    if (h, wd) != (args["img_size"], args["img_size"]):
        raise ValueError(f"images of {h}x{wd} px: the model takes {args['img_size']} px")
    x = conv2d(
        images, w["patch_embed.proj.weight"], args["patch_size"], 0, w["patch_embed.proj.bias"]
    )
    x = x.reshape(b, x.shape[1], -1).transpose(0, 2, 1)  # flatten(2).transpose(1, 2): row-major
    prefix = [np.broadcast_to(w["cls_token"], (b, 1, x.shape[2]))] if args["class_token"] else []
    if args["no_embed_class"]:
        x = np.concatenate(prefix + [x + w["pos_embed"]], axis=1)
    else:
        x = np.concatenate(prefix + [x], axis=1) + w["pos_embed"]
    for i in range(args["depth"]):
        p = f"blocks.{i}"
        scale = lambda y, r, p=p: y * w[f"{p}.ls{r}.gamma"] if args["init_values"] else y
        x = x + scale(
            attention(layer_norm(x, w, f"{p}.norm1"), w, f"{p}.attn", args["num_heads"]), 1
        )
        y = linear(
            gelu(linear(layer_norm(x, w, f"{p}.norm2"), w, f"{p}.mlp.fc1")), w, f"{p}.mlp.fc2"
        )
        x = x + scale(y, 2)
    fc_norm = _use_fc_norm(args)
    if not fc_norm:
        x = layer_norm(x, w, "norm")
    x = x[:, 0] if args["global_pool"] == "token" else x[:, len(prefix) :].mean(1)
    if fc_norm:
        x = layer_norm(x, w, "fc_norm")
    return linear(x, w, "head") if args["num_classes"] else x


def _resnet_forward(args: dict, w: dict, images):
    relu = lambda y: np.maximum(y, 0.0)
    x = max_pool(relu(batch_norm(conv2d(images, w["conv1.weight"], 2, 3), w, "bn1")))
    for name, cin, planes, stride, down in _resnet_blocks(args):
        convs = _block_convs(args["block"], cin, planes, stride)
        y = x
        for r, _, _, _, s, padding in convs:
            y = batch_norm(conv2d(y, w[f"{name}.conv{r}.weight"], s, padding), w, f"{name}.bn{r}")
            y = relu(y) if r < len(convs) else y
        if down:
            x = conv2d(x, w[f"{name}.downsample.0.weight"], stride)
            x = batch_norm(x, w, f"{name}.downsample.1")
        x = relu(x + y)
    x = x.mean(axis=(2, 3))
    return linear(x, w, "fc") if args["num_classes"] else x


def forward(args: dict, state_dict: dict, images) -> np.ndarray:
    """images float[B, C, H, W] (NCHW, normalised) -> float64 logits [B, num_classes] of the
    model `args` (from `create`/`from_config`) holding `state_dict` (loaded strictly), or its
    pooled features [B, D] (timm's pre-logits) when it has no classifier (num_classes 0)."""
    w = load_strict(args, state_dict)
    x = np.asarray(images, np.float64)
    return _vit_forward(args, w, x) if args["kind"] == "vit" else _resnet_forward(args, w, x)
