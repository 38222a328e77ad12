"""synth_jax ResNet <-> timm `ResNet` state dict (resnet18/34/50/101), exact in both directions.

Both are ResNet v1.5 with torchvision's layout: 7x7 stride-2 stem, 3x3 stride-2 max pool, the
stride on the bottleneck's 3x3 convolution, a 1x1 projection shortcut (conv + batch norm) where
the shape changes, global average pool, linear classifier; batch norm eps 1e-5 (PyTorch's
momentum 0.1 is flax's 0.9). Names and layouts:

    synth_jax                                    timm
    stem/kernel          float[7, 7, 3, 64]      conv1.weight  float[64, 3, 7, 7]
    stem_norm/norm/{scale,bias} (params)         bn1.{weight,bias}
    stem_norm/norm/{mean,var}   (batch stats)    bn1.{running_mean,running_var}
    blocks/k/conv{r}/kernel, norm{r}/norm/*      layer{s+1}.{j}.conv{r}.weight, bn{r}.*
    blocks/k/shortcut/kernel, shortcut_norm/*    layer{s+1}.{j}.downsample.0.weight, .1.*
    head {kernel float[D, C], bias}              fc {weight float[C, D], bias}

Block k is block j of stage s, counting blocks stage by stage. timm also stores
`num_batches_tracked` (int64) per batch norm; it only matters to momentum-free averaging, and
the export writes the checkpoint's step there.

No timm twin, so refused: group norm (timm's resnet50_gn normalises with eps 1e-5, flax's
GroupNorm with 1e-6, so the logits would differ), and images of 64 px or less (synth_jax's
CIFAR stem, a 3x3 stride-1 convolution without max pool, which timm's ResNet cannot build).
ResNet-10 is timm's resnet18 with model_args layers=[1, 1, 1, 1] (timm's resnet10t has another
stem).
"""

from __future__ import annotations

import numpy as np

from synth_jax.errors import UsageError
from synth_jax.models import model_config, resnet
from synth_jax.weights.layout import check_same_layout

TIMM_ARCHITECTURES = {f"resnet{d}": d for d in (18, 34, 50, 101)}
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def timm_twin(model: dict, image_size: int) -> tuple[str, dict, list[str]]:
    """(timm architecture, model_args, differences in words); UsageError when there is none."""
    depth = resnet.parse_name(model["name"])
    if model.get("norm", "batch") != "batch":
        raise UsageError(
            f"model {model['name']} with norm={model['norm']!r} has no timm twin: timm's "
            "group-norm ResNet (resnet50_gn) uses eps 1e-5, synth_jax's 1e-6, so its logits "
            "would differ; export a batch-norm ResNet"
        )
    if image_size <= 64:
        raise UsageError(
            f"model {model['name']} at {image_size} px has no timm twin: at 64 px or less "
            "synth_jax uses the CIFAR stem (3x3 stride-1 convolution, no max pool), which timm's "
            "ResNet cannot build; export a ResNet trained at more than 64 px"
        )
    if f"resnet{depth}" in TIMM_ARCHITECTURES:
        return f"resnet{depth}", {}, []
    layers = list(resnet.DEPTHS[depth][1])
    return (
        "resnet18",
        {"layers": layers},
        [f"timm has no plain {model['name']}; model_args layers={layers} rebuild resnet18 as it"],
    )


def _stages(depth: int):
    """(k, stage s, index j) of every block, in synth_jax's order."""
    k = 0
    for s, n in enumerate(resnet.DEPTHS[depth][1]):
        for j in range(n):
            yield k, s, j
            k += 1


def to_timm(
    params: dict, model_state: dict, model: dict, image_size: int, with_head: bool, step: int = 0
) -> dict:
    """synth_jax ResNet params and batch statistics -> timm state dict {name: array, possibly
    a transposed view}."""
    depth = resnet.parse_name(model["name"])
    f32 = lambda x: np.asarray(x, np.float32)  # transposes below are views: no copies

    def conv(kernel):
        return f32(kernel).transpose(3, 2, 0, 1)

    def bn(p, e, prefix):
        return {
            f"{prefix}.weight": f32(p["norm"]["scale"]),
            f"{prefix}.bias": f32(p["norm"]["bias"]),
            f"{prefix}.running_mean": f32(e["norm"]["mean"]),
            f"{prefix}.running_var": f32(e["norm"]["var"]),
            f"{prefix}.num_batches_tracked": np.asarray(step, np.int64),
        }

    out = {"conv1.weight": conv(params["stem"]["kernel"])}
    out.update(bn(params["stem_norm"], model_state["stem_norm"], "bn1"))
    for k, s, j in _stages(depth):
        p, e, prefix = params["blocks"][k], model_state["blocks"][k], f"layer{s + 1}.{j}"
        r = 1
        while f"conv{r}" in p:
            out[f"{prefix}.conv{r}.weight"] = conv(p[f"conv{r}"]["kernel"])
            out.update(bn(p[f"norm{r}"], e[f"norm{r}"], f"{prefix}.bn{r}"))
            r += 1
        if "shortcut" in p:
            out[f"{prefix}.downsample.0.weight"] = conv(p["shortcut"]["kernel"])
            out.update(bn(p["shortcut_norm"], e["shortcut_norm"], f"{prefix}.downsample.1"))
    if with_head:
        out["fc.weight"] = f32(params["head"]["kernel"]).T
        out["fc.bias"] = f32(params["head"]["bias"])
    return out


def from_timm(state_dict: dict, config: dict | None, path: str) -> tuple[dict, dict, dict]:
    """timm ResNet state dict -> (params, batch stats, {"model": ..., "image_size": px})."""
    config = config or {}
    stages = []
    for s in range(1, 5):
        blocks = {k.split(".")[1] for k in state_dict if k.startswith(f"layer{s}.")}
        stages.append(len(blocks))
    kind = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    depth = next((d for d, spec in resnet.DEPTHS.items() if spec == (kind, tuple(stages))), None)
    if depth is None:
        known = ", ".join(f"ResNet-{d} {spec[1]}" for d, spec in resnet.DEPTHS.items())
        raise UsageError(
            f"{path}: a {kind} ResNet with {tuple(stages)} blocks per stage has no synth_jax "
            f"twin; synth_jax's ResNets: {known}"
        )
    image_size = int((config.get("pretrained_cfg") or {}).get("input_size", (3, 224, 224))[-1])
    image_size = int((config.get("synth_jax") or {}).get("image_size", image_size))
    ours = (config.get("synth_jax") or {}).get("model") or {}
    name = f"ResNet-{depth}"
    model = model_config(**ours) if ours.get("name") == name else model_config(name)
    model = dict(model.to_dict(), norm="batch")
    f32 = lambda key: np.asarray(state_dict[key], np.float32)

    def bn(prefix):
        return (
            {"norm": {"scale": f32(f"{prefix}.weight"), "bias": f32(f"{prefix}.bias")}},
            {"norm": {"mean": f32(f"{prefix}.running_mean"), "var": f32(f"{prefix}.running_var")}},
        )

    conv = lambda key: f32(key).transpose(2, 3, 1, 0)
    params = {"stem": {"kernel": conv("conv1.weight")}, "blocks": {}}
    stats = {"blocks": {}}
    params["stem_norm"], stats["stem_norm"] = bn("bn1")
    for k, s, j in _stages(depth):
        prefix, p, e = f"layer{s + 1}.{j}", {}, {}
        for r in range(1, 4 if kind == "bottleneck" else 3):
            p[f"conv{r}"] = {"kernel": conv(f"{prefix}.conv{r}.weight")}
            p[f"norm{r}"], e[f"norm{r}"] = bn(f"{prefix}.bn{r}")
        if f"{prefix}.downsample.0.weight" in state_dict:
            p["shortcut"] = {"kernel": conv(f"{prefix}.downsample.0.weight")}
            p["shortcut_norm"], e["shortcut_norm"] = bn(f"{prefix}.downsample.1")
        params["blocks"][k], stats["blocks"][k] = p, e
    if "fc.weight" in state_dict:
        params["head"] = {"kernel": f32("fc.weight").T, "bias": f32("fc.bias")}
    return params, stats, {"model": model, "image_size": image_size}


def load(state_dict: dict, config: dict | None, path: str) -> tuple[dict, dict, dict]:
    """`from_timm`, then a check that the file holds exactly the names and shapes of the
    inferred timm ResNet (a deep stem, SE blocks or another layout are one clear error)."""
    try:
        params, stats, info = from_timm(state_dict, config, path)
        expected = to_timm(
            params, stats, info["model"], info["image_size"], with_head="head" in params
        )
    except KeyError as e:
        raise UsageError(f"{path}: not a timm ResNet state dict: {e.args[0]} is missing") from None
    name = f"timm ResNet ({info['model']['name']})"
    check_same_layout(path, state_dict, expected, name, optional=("num_batches_tracked",))
    return params, stats, info
