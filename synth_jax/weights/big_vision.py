"""ViT weights from JAX `.npz` checkpoints into synth_jax: big_vision's layout and that of
google-research/vision_transformer (the public ImageNet-21k "AugReg" ViTs), as timm reads them.

Both hold a flax parameter tree flattened with "/", optionally under a prefix (`params/`,
`params/img/`, `opt/target/`); kernels are already in flax's layout (no transposes):

    big_vision                           vision_transformer              synth_jax
    embedding/{kernel,bias}              (same)                          embedding
    pos_embedding  [1, N, D]             Transformer/posembed_input/     posemb [1, N, D]
                                           pos_embedding [1, 1+N, D]
    cls            [1, 1, D]             (same)                          cls
    Transformer/encoderblock_i/ (or encoderblock/ with a leading depth axis: a scanned encoder)
      LayerNorm_0                        LayerNorm_0                     blocks/i/norm1
      MultiHeadDotProductAttention_0     MultiHeadDotProductAttention_1  blocks/i/attn
        {query,key,value}/kernel [D, heads, D/heads], out/kernel [heads, D/heads, D]  -> [D, D]
      LayerNorm_1                        LayerNorm_2                     blocks/i/norm2
      MlpBlock_0/Dense_{0,1}             MlpBlock_3/Dense_{0,1}          blocks/i/mlp1, mlp2
    Transformer/encoder_norm             (same)                          norm
    head/{kernel,bias}                   (same)                          head

big_vision adds the position embedding before prepending the class token, as synth_jax does;
vision_transformer adds it after, so its table has a class-token slot, folded into `cls` here.
Without a class token the model pools by averaging ("gap": big_vision's pool_type "0", taking
the first token, cannot be told apart by its parameters). A big_vision file without a position
embedding used the fixed sin-cos table (posemb "sincos2d", image size assumed 224). A
`pre_logits` layer (old ImageNet-21k ViTs) has no synth_jax twin: it is dropped with the head
that follows it, as fine-tuning re-initialises the head anyway. An attention-pooling head
(MAPHead) is refused.
"""

from __future__ import annotations

import math
import zipfile

import ml_dtypes
import numpy as np

from synth_jax.errors import UsageError
from synth_jax.models import model_config, vit

PREFIXES = ("params/img/", "params/", "opt/target/", "")


def read_npz(path: str) -> dict[str, np.ndarray]:
    """{name: array} of an .npz file; bfloat16 arrays (stored as 2-byte voids) become float32."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise UsageError(f"{path}: not a readable .npz file ({reason}); copy it again") from e
    for name, a in arrays.items():
        if a.dtype.kind == "V" and a.dtype.itemsize == 2:
            arrays[name] = a.view(ml_dtypes.bfloat16).astype(np.float32)
    return arrays


def _getter(arrays: dict, prefix: str, path: str, used: set):
    """get(name) -> float32 array of prefix + name, recorded in `used`; UsageError if absent."""

    def get(name):
        key = prefix + name
        if key not in arrays:
            raise UsageError(f"{path}: {key} is missing: not a plain ViT checkpoint")
        used.add(key)
        return np.asarray(arrays[key], np.float32)

    return get


def _variant(width: int, depth: int, mlp_dim: int, heads: int, path: str) -> str:
    """The synth_jax ViT variant of these dimensions; UsageError when there is none."""
    for v, dims in vit.VARIANTS.items():
        if dims == (width, depth, mlp_dim, heads):
            return v
    known = ", ".join(
        f"{v} ({w}x{d}, mlp {m}, {h} heads)" for v, (w, d, m, h) in vit.VARIANTS.items()
    )
    raise UsageError(
        f"{path}: a ViT of width {width}, depth {depth}, mlp {mlp_dim}, {heads} heads has "
        f"no synth_jax twin; synth_jax's ViTs: {known}"
    )


def _position(arrays, prefix, get, big_vision: bool, width: int, patch: int, path: str):
    """({"posemb": [1, g*g, D], "cls": [1, 1, D]} as present, posemb kind, grid g): a
    vision_transformer table's class-token slot folded into `cls`; no table in a big_vision
    file means the fixed sin-cos one at 224 px."""
    has_cls = f"{prefix}cls" in arrays
    pos_key = "pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding"
    out = {}
    if f"{prefix}{pos_key}" in arrays:
        pos = get(pos_key).reshape(1, -1, width)
        if has_cls and not big_vision:
            out["cls"] = get("cls") + pos[:, :1]
            pos = pos[:, 1:]
        grid = math.isqrt(pos.shape[1])
        if grid * grid != pos.shape[1]:
            raise UsageError(f"{path}: {prefix}{pos_key} {pos.shape} is not a square grid")
        out["posemb"], kind = pos, "learn"
    elif big_vision:
        kind, grid = "sincos2d", 224 // patch
    else:
        get(pos_key)  # raises: the vision_transformer layout always has one
    if has_cls and "cls" not in out:
        out["cls"] = get("cls")
    return out, kind, grid


def _block(block, i: int, mha: str, ln2_i: int, mlp_i: int, width: int) -> dict:
    """Encoder block i in synth_jax's layout: attention kernels [D, heads, D/heads] -> [D, D]."""
    flat = lambda a: a.reshape(a.shape[0], -1)
    attn = {
        n: {
            "kernel": flat(block(i, f"{mha}/{n}/kernel")),
            "bias": block(i, f"{mha}/{n}/bias").reshape(-1),
        }
        for n in ("query", "key", "value")
    }
    attn["out"] = {
        "kernel": block(i, f"{mha}/out/kernel").reshape(width, width),
        "bias": block(i, f"{mha}/out/bias"),
    }
    return {
        "norm1": _norm(lambda n: block(i, f"LayerNorm_0/{n}")),
        "attn": attn,
        "norm2": _norm(lambda n: block(i, f"LayerNorm_{ln2_i}/{n}")),
        "mlp1": _dense(lambda n: block(i, f"MlpBlock_{mlp_i}/Dense_0/{n}")),
        "mlp2": _dense(lambda n: block(i, f"MlpBlock_{mlp_i}/Dense_1/{n}")),
    }


def _refuse_leftovers(arrays: dict, prefix: str, used: set, name: str, path: str) -> None:
    left = sorted(k for k in arrays if k.startswith(prefix) and k not in used)
    if prefix == "":
        left = [k for k in left if not k.startswith(PREFIXES[:-1])]
    if left:
        more = f" and {len(left) - 3} more" if len(left) > 3 else ""
        raise UsageError(
            f"{path}: arrays a synth_jax {name} ViT has no place for: {', '.join(left[:3])}{more}"
        )


def vit_from_npz(arrays: dict[str, np.ndarray], path: str) -> tuple[dict, dict, dict]:
    """big_vision / vision_transformer ViT arrays -> (params, {}, {"model", "image_size"}).

    Raises UsageError (one line) for a file that is not a plain ViT with a synth_jax twin.
    """
    prefix = next((p for p in PREFIXES if f"{p}embedding/kernel" in arrays), None)
    if prefix is None:
        raise UsageError(
            f"{path}: no embedding/kernel: not a big_vision or vision_transformer ViT checkpoint"
        )
    used = set()
    get = _getter(arrays, prefix, path, used)
    if any(k.startswith(f"{prefix}MAPHead") for k in arrays):
        raise UsageError(f"{path}: an attention-pooling head (MAPHead) has no synth_jax twin")
    scanned = f"{prefix}Transformer/encoderblock/LayerNorm_0/scale" in arrays
    big_vision = prefix.startswith("params/") or f"{prefix}pos_embedding" in arrays or scanned
    attn_i, ln2_i, mlp_i = (0, 1, 0) if big_vision else (1, 2, 3)
    kernel = get("embedding/kernel")
    if kernel.ndim != 4 or kernel.shape[2] != 3 or kernel.shape[0] != kernel.shape[1]:
        raise UsageError(f"{path}: embedding/kernel {kernel.shape} is not [p, p, 3, D]")
    patch, width = kernel.shape[0], kernel.shape[3]
    if scanned:
        depth = arrays[f"{prefix}Transformer/encoderblock/LayerNorm_0/scale"].shape[0]
        block = lambda i, name: get(f"Transformer/encoderblock/{name}")[i]
    else:
        blocks = f"{prefix}Transformer/encoderblock_"
        depth = len({k[len(blocks) :].split("/")[0] for k in arrays if k.startswith(blocks)})
        block = lambda i, name: get(f"Transformer/encoderblock_{i}/{name}")
    mha = f"MultiHeadDotProductAttention_{attn_i}"
    mlp_dim = block(0, f"MlpBlock_{mlp_i}/Dense_0/kernel").shape[1] if depth else 0
    heads = block(0, f"{mha}/query/kernel").shape[1] if depth else 0
    variant = _variant(width, depth, mlp_dim, heads, path)
    position, posemb, grid = _position(arrays, prefix, get, big_vision, width, patch, path)
    params = {"embedding": {"kernel": kernel, "bias": get("embedding/bias")}, **position}
    params["blocks"] = {i: _block(block, i, mha, ln2_i, mlp_i, width) for i in range(depth)}
    params["norm"] = _norm(lambda n: get(f"Transformer/encoder_norm/{n}"))
    if f"{prefix}pre_logits/kernel" in arrays:  # no twin: dropped with the head after it
        used.update(k for k in arrays if k.startswith((f"{prefix}pre_logits/", f"{prefix}head/")))
    elif f"{prefix}head/kernel" in arrays:
        params["head"] = _dense(lambda n: get(f"head/{n}"))
    _refuse_leftovers(arrays, prefix, used, f"{variant}/{patch}", path)
    model = model_config(
        f"{variant}/{patch}", pool="cls" if "cls" in params else "gap", posemb=posemb
    )
    return params, {}, {"model": model.to_dict(), "image_size": grid * patch}


def _norm(get):
    return {"scale": get("scale"), "bias": get("bias")}


def _dense(get):
    return {"kernel": get("kernel"), "bias": get("bias")}
