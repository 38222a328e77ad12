"""synth_jax ViT <-> timm `VisionTransformer` state dict, exact in both directions.

Both are the ViT of Dosovitskiy et al. with LayerNorm eps 1e-6, exact GELU, pre-norm blocks,
attention heads split head-major, and a learned (or fixed) position embedding added to the patch
tokens. The names and layouts differ:

    synth_jax (params pure dict)              timm (state dict)
    embedding/kernel   float[p, p, 3, D]      patch_embed.proj.weight  float[D, 3, p, p]
    embedding/bias     float[D]               patch_embed.proj.bias
    posemb             float[1, N, D]         pos_embed  float[1, N, D]  (pool=gap)
                                                         float[1, 1+N, D] (pool=cls, see below)
    cls                float[1, 1, D]         cls_token
    blocks/i/norm1, norm2 {scale, bias}       blocks.i.norm1, norm2 {weight, bias}
    blocks/i/attn/{query,key,value}/kernel    blocks.i.attn.qkv.weight  float[3D, D]: rows q; k; v
        float[D, D] each (and biases)                               (transposed; bias likewise)
    blocks/i/attn/out/kernel                  blocks.i.attn.proj.weight (transposed)
    blocks/i/mlp1, mlp2 {kernel, bias}        blocks.i.mlp.fc1, fc2 {weight (transposed), bias}
    norm {scale, bias}                        norm {weight, bias}
    head {kernel float[D, C], bias}           head {weight float[C, D], bias}

Pooling. synth_jax "gap" normalises every token, then averages: timm's `class_token=False,
global_pool='avg', fc_norm=False` (timm's own default for 'avg', fc_norm=None, would normalise
after pooling instead). synth_jax "cls" adds the position embedding to the patch tokens, then
prepends the class token (big_vision); timm's default adds `pos_embed[:, 0]` to the class token
as well. Exporting writes that slot as zeros, so the file loads into the plain timm architecture;
importing a timm file folds `pos_embed[:, 0]` into `cls` (cls + slot is what both models see).
A fixed sin-cos position embedding is written as timm's (learned) `pos_embed` holding the table.
"""

from __future__ import annotations

import math

import numpy as np

from synth_jax.errors import UsageError
from synth_jax.models import model_config, vit
from synth_jax.weights.layout import check_same_layout

FAMILIES = {"Ti": "tiny", "S": "small", "M": "medium", "B": "base", "L": "large"}
# timm's VisionTransformer arguments that this mapping reads, with timm's defaults.
TIMM_DEFAULTS = dict(
    img_size=224,
    patch_size=16,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4.0,
    qkv_bias=True,
    init_values=None,
    class_token=True,
    global_pool="token",
    fc_norm=None,
    no_embed_class=False,
)


def _timm_architectures() -> dict[str, dict]:
    """timm's registered plain ViTs with a synth_jax twin: name -> arguments (timm 1.0)."""
    sizes = {
        "tiny": {16: (224, 384)},
        "small": {8: (224,), 16: (224, 384), 32: (224, 384)},
        "base": {8: (224,), 16: (224, 384), 32: (224, 384)},
        "large": {16: (224, 384), 32: (224, 384)},
    }
    archs = {}
    for variant, family in FAMILIES.items():
        width, depth, _, heads = vit.VARIANTS[variant]
        for patch, image_sizes in sizes.get(family, {}).items():
            for size in image_sizes:
                archs[f"vit_{family}_patch{patch}_{size}"] = dict(
                    img_size=size, patch_size=patch, embed_dim=width, depth=depth, num_heads=heads
                )
    for size in (240, 256, 384):  # timm's ViT-M: no class token, GAP, no qkv bias, layer scale
        archs[f"vit_medium_patch16_gap_{size}"] = dict(
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
        )
    return archs


TIMM_ARCHITECTURES = _timm_architectures()


def timm_twin(model: dict, image_size: int) -> tuple[str, dict, list[str]]:
    """(timm architecture, model_args to pass to `timm.create_model`, differences in words)
    of the synth_jax ViT `model` (a model config dict) at `image_size` px."""
    variant, patch = vit.parse_name(model["name"])
    width, depth, mlp_dim, heads = vit.VARIANTS[variant]
    gap = model.get("pool", "gap") == "gap"
    needed = dict(
        TIMM_DEFAULTS,
        img_size=image_size,
        patch_size=patch,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_dim / width,
        class_token=not gap,
        global_pool="avg" if gap else "token",
        fc_norm=False if gap else None,
    )
    exact = f"vit_{FAMILIES.get(variant, '')}_patch{patch}_{image_size}"
    if exact in TIMM_ARCHITECTURES:
        arch = exact
    elif variant == "M":  # timm's only ViT-M: GAP, at 240, 256 or 384 px
        sized = f"vit_medium_patch16_gap_{image_size}"
        arch = sized if sized in TIMM_ARCHITECTURES else "vit_medium_patch16_gap_256"
    else:  # the nearest timm ViT, rebuilt to this size by model_args
        arch = f"vit_{FAMILIES.get(variant, 'tiny')}_patch16_224"
    defaults = dict(TIMM_DEFAULTS, **TIMM_ARCHITECTURES[arch])
    args = {k: v for k, v in needed.items() if v != defaults[k]}
    # timm.create_model drops None arguments: layer scale goes off with 0 (falsy), and an
    # fc_norm of None means none under token pooling, as the architecture's False does.
    if "init_values" in args:
        args["init_values"] = 0.0
    args = {k: v for k, v in args.items() if v is not None}
    differences = []
    pooling = {"class_token", "global_pool", "fc_norm"} & set(args)
    if pooling:
        how = "averages the normalised tokens (GAP)" if gap else "takes the class token"
        differences.append(
            f"pooling: synth_jax {how}; model_args "
            f"{', '.join(f'{k}={args[k]!r}' for k in sorted(pooling))} make timm do the same"
        )
    size = {"img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio"} & set(args)
    if size:
        differences.append(
            f"size: timm has no ViT like synth_jax's {model['name']} at {image_size} px; "
            f"model_args {', '.join(f'{k}={args[k]!r}' for k in sorted(size))} rebuild {arch} "
            "as it"
        )
    if {"qkv_bias", "init_values"} & set(args):
        differences.append(
            f"{arch} has no qkv bias and has layer scale; model_args qkv_bias=True, "
            "init_values=0.0 make it synth_jax's ViT-M"
        )
    if not gap:
        differences.append(
            "pos_embed[:, 0] (timm adds it to the class token) is zero: synth_jax adds no "
            "position embedding to the class token"
        )
    if model.get("posemb", "learn") == "sincos2d":
        differences.append(
            "the position embedding is synth_jax's fixed 2-D sin-cos table; timm treats "
            "pos_embed as a learned parameter (it holds the same table)"
        )
    return arch, args, differences


def to_timm(params: dict, model_state: dict, model: dict, image_size: int, with_head: bool) -> dict:
    """synth_jax ViT arrays -> timm state dict {name: float32 array, possibly a transposed
    view} (see the module docstring).

    `params`/`model_state`: the checkpoint's parameters and other state (nested dicts, blocks under
    int keys); `model`: its model config dict.
    """
    variant, _ = vit.parse_name(model["name"])
    _, depth, _, _ = vit.VARIANTS[variant]
    f32 = lambda x: np.asarray(x, np.float32)  # transposes below are views: no copies

    def lin(d, prefix):
        return {f"{prefix}.weight": f32(d["kernel"]).T, f"{prefix}.bias": f32(d["bias"])}

    def norm(d, prefix):
        return {f"{prefix}.weight": f32(d["scale"]), f"{prefix}.bias": f32(d["bias"])}

    out = {
        "patch_embed.proj.weight": f32(params["embedding"]["kernel"]).transpose(3, 2, 0, 1),
        "patch_embed.proj.bias": f32(params["embedding"]["bias"]),
    }
    if "posemb" in params:
        posemb = f32(params["posemb"])
    elif "posemb" in model_state:
        posemb = f32(model_state["posemb"])
    else:
        width = np.shape(params["embedding"]["bias"])[0]
        grid = image_size // vit.parse_name(model["name"])[1]
        posemb = vit.sincos_posemb_2d(grid, grid, width)
    if "cls" in params:
        out["cls_token"] = f32(params["cls"])
        posemb = np.concatenate([np.zeros_like(posemb[:, :1]), posemb], axis=1)
    out["pos_embed"] = posemb
    for i in range(depth):
        block, p = params["blocks"][i], f"blocks.{i}"
        attn = block["attn"]
        out.update(norm(block["norm1"], f"{p}.norm1"))
        out[f"{p}.attn.qkv.weight"] = np.concatenate(
            [f32(attn[n]["kernel"]).T for n in ("query", "key", "value")]
        )
        out[f"{p}.attn.qkv.bias"] = np.concatenate(
            [f32(attn[n]["bias"]) for n in ("query", "key", "value")]
        )
        out.update(lin(attn["out"], f"{p}.attn.proj"))
        out.update(norm(block["norm2"], f"{p}.norm2"))
        out.update(lin(block["mlp1"], f"{p}.mlp.fc1"))
        out.update(lin(block["mlp2"], f"{p}.mlp.fc2"))
    out.update(norm(params["norm"], "norm"))
    if with_head:
        out.update(lin(params["head"], "head"))
    return out


def _count_blocks(state_dict: dict) -> int:
    return len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})


def _variant(state_dict: dict, path: str) -> tuple[str, int]:
    """(synth_jax ViT variant, patch size) of a timm ViT state dict, from its shapes."""
    kernel = state_dict["patch_embed.proj.weight"]
    if kernel.ndim != 4 or kernel.shape[1] != 3 or kernel.shape[2] != kernel.shape[3]:
        raise UsageError(f"{path}: patch_embed.proj.weight {kernel.shape} is not [D, 3, p, p]")
    width, patch = kernel.shape[0], kernel.shape[2]
    depth = _count_blocks(state_dict)
    fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    mlp_dim = fc1.shape[0] if fc1 is not None else 0
    variant = next(
        (v for v, (w, d, m, _) in vit.VARIANTS.items() if (w, d, m) == (width, depth, mlp_dim)),
        None,
    )
    if variant is None:
        known = ", ".join(f"{v} ({w}x{d}, mlp {m})" for v, (w, d, m, _) in vit.VARIANTS.items())
        raise UsageError(
            f"{path}: a ViT of width {width}, depth {depth}, mlp {mlp_dim} has no synth_jax "
            f"twin; synth_jax's ViTs: {known}"
        )
    return variant, patch


def _check_timm_args(state_dict: dict, config: dict, variant: str, path: str) -> None:
    """Raises UsageError when the config.json's heads or pooling differ from synth_jax's."""
    heads = vit.VARIANTS[variant][3]
    arch, model_args = config.get("architecture"), config.get("model_args") or {}
    if config and arch not in TIMM_ARCHITECTURES and "num_heads" not in model_args:
        raise UsageError(
            f"{path}: config.json names {arch!r}, whose number of heads synth_jax does not know; "
            f"add model_args.num_heads to it (or use one of {', '.join(TIMM_ARCHITECTURES)})"
        )
    timm_args = {**TIMM_DEFAULTS, **TIMM_ARCHITECTURES.get(arch, {}), **model_args}
    if timm_args["num_heads"] != heads and config:
        raise UsageError(
            f"{path}: {timm_args['num_heads']} attention heads; synth_jax's {variant} ViT "
            f"(width {vit.VARIANTS[variant][0]}) has {heads}"
        )
    if "fc_norm.weight" in state_dict:
        raise UsageError(
            f"{path}: this ViT normalises after pooling (fc_norm); synth_jax's GAP normalises "
            "the tokens before pooling (timm fc_norm=False)"
        )
    has_cls, pool = "cls_token" in state_dict, timm_args["global_pool"]
    if config and (pool != "token" if has_cls else pool != "avg"):
        raise UsageError(
            f"{path}: global_pool={pool!r} {'with' if has_cls else 'without'} a class token; "
            "synth_jax pools by taking the class token ('token') or by averaging all tokens "
            "('avg')"
        )


def _split_posemb(state_dict: dict, width: int, path: str) -> tuple:
    """(class token float32[1, 1, D] or None, posemb [1, g*g, D], g): timm's class-token slot
    of pos_embed, when there is one, folded into the class token (cls + slot is what timm adds)."""
    pos = np.asarray(state_dict.get("pos_embed", np.zeros((1, 0, width))), np.float32)
    tokens = pos.shape[1]
    grid = math.isqrt(tokens)
    cls = np.asarray(state_dict["cls_token"], np.float32) if "cls_token" in state_dict else None
    if cls is not None and grid * grid != tokens:  # timm's default: a slot for the class token
        grid = math.isqrt(tokens - 1)
        cls, pos = cls + pos[:, :1], pos[:, 1:]
    if grid * grid != pos.shape[1] or grid == 0:
        raise UsageError(
            f"{path}: pos_embed {np.shape(state_dict.get('pos_embed'))} is not a square grid "
            "of patch positions (plus an optional class-token slot)"
        )
    return cls, pos, grid


def _block_params(state_dict: dict, i: int) -> dict:
    """Block i's parameters: the fused qkv split in timm's order (rows q; k; v), kernels
    transposed from [out, in] to [in, out]."""
    f32 = lambda key: np.asarray(state_dict[key], np.float32)
    lin = lambda prefix: {"kernel": f32(f"{prefix}.weight").T, "bias": f32(f"{prefix}.bias")}
    norm = lambda prefix: {"scale": f32(f"{prefix}.weight"), "bias": f32(f"{prefix}.bias")}
    p = f"blocks.{i}"
    qkv_w, qkv_b = np.split(f32(f"{p}.attn.qkv.weight"), 3), np.split(f32(f"{p}.attn.qkv.bias"), 3)
    attn = {
        n: {"kernel": qkv_w[j].T, "bias": qkv_b[j]} for j, n in enumerate(("query", "key", "value"))
    }
    return {
        "norm1": norm(f"{p}.norm1"),
        "attn": attn | {"out": lin(f"{p}.attn.proj")},
        "norm2": norm(f"{p}.norm2"),
        "mlp1": lin(f"{p}.mlp.fc1"),
        "mlp2": lin(f"{p}.mlp.fc2"),
    }


def from_timm(state_dict: dict, config: dict | None, path: str) -> tuple[dict, dict, dict]:
    """timm ViT state dict -> (params, model_state, {"model": model config, "image_size": px}).

    `config`: the timm config.json beside the file (architecture, model_args, and a synth_jax
    section when synth_jax wrote it), or None; without one the heads are the standard ones of
    the width. Raises UsageError naming the first thing without a synth_jax twin.
    """
    config = config or {}
    variant, patch = _variant(state_dict, path)
    _check_timm_args(state_dict, config, variant, path)
    cls, pos, grid = _split_posemb(state_dict, vit.VARIANTS[variant][0], path)
    pool = "gap" if cls is None else "cls"
    ours = (config.get("synth_jax") or {}).get("model") or {}
    name = f"{variant}/{patch}"
    if ours.get("name") == name:
        model = model_config(**{**ours, "pool": pool}).to_dict()
    else:
        model = model_config(name, pool=pool).to_dict()
    f32 = lambda key: np.asarray(state_dict[key], np.float32)
    params = {
        "embedding": {
            "kernel": f32("patch_embed.proj.weight").transpose(2, 3, 1, 0),
            "bias": f32("patch_embed.proj.bias"),
        },
        "blocks": {i: _block_params(state_dict, i) for i in range(_count_blocks(state_dict))},
        "norm": {"scale": f32("norm.weight"), "bias": f32("norm.bias")},
    }
    model_state = {}
    if model.get("posemb", "learn") == "sincos2d":
        model_state["posemb"] = pos
    else:
        params["posemb"] = pos
    if cls is not None:
        params["cls"] = cls
    if "head.weight" in state_dict:
        params["head"] = {"kernel": f32("head.weight").T, "bias": f32("head.bias")}
    return params, model_state, {"model": model, "image_size": grid * patch}


def load(state_dict: dict, config: dict | None, path: str) -> tuple[dict, dict, dict]:
    """`from_timm`, then a check that the file holds exactly what a timm twin of the inferred
    model holds (names and shapes): a file of another architecture is one clear error."""
    try:
        params, model_state, info = from_timm(state_dict, config, path)
        expected = to_timm(
            params, model_state, info["model"], info["image_size"], with_head="head" in params
        )
    except KeyError as e:
        raise UsageError(f"{path}: not a timm ViT state dict: {e.args[0]} is missing") from None
    arch, args, _ = timm_twin(info["model"], info["image_size"])
    check_same_layout(path, state_dict, _with_cls_slot(expected, state_dict), f"{arch} {args}")
    return params, model_state, info


def _with_cls_slot(expected: dict, state_dict: dict) -> dict:
    """A file may store pos_embed without the class-token slot (timm no_embed_class)."""
    if "pos_embed" in state_dict and "pos_embed" in expected:
        if np.shape(state_dict["pos_embed"])[1] == np.shape(expected["pos_embed"])[1] - 1:
            expected = dict(expected, pos_embed=state_dict["pos_embed"])
    return expected
