"""Models by name: ViT ("Ti/16", "S/16", "B/16", "L/16", "Ti/4", ...) and ResNet ("ResNet-18",
"ResNet-50", ...), as Flax NNX modules.

    model = create_model(config.model, num_classes=1000, image_size=224, rngs=nnx.Rngs(0))
    logits = model(images, train=False)        # float32[B, num_classes]
    feats = model.features(images, train=False)  # float32[B, D], the pre-head representation

The classifier is the attribute `head` (so fine-tuning can drop or re-initialise `head/...`).
A model config holds:
    name            "Ti/16", "ResNet-50", ...
    dtype           compute dtype, "float32" or "bfloat16" (parameters are always float32)
    pool            ViT: "gap" (global average pool) or "cls" (class token)
    posemb          ViT: "learn" or "sincos2d"
    dropout         ViT: dropout rate
    drop_path       ViT: stochastic-depth rate of the last block (linear in depth)
    norm            ResNet: "batch" or "group"
    head_zero_init  start from a zero classifier (big_vision default)
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
from flax import nnx

from synth_jax.models import resnet, vit

MODEL_KEYS = ("name", "dtype", "pool", "posemb", "dropout", "drop_path", "norm", "head_zero_init")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def model_config(name: str = "Ti/16", **overrides) -> ml_collections.ConfigDict:
    """The default model config for `name` with `overrides` applied."""
    config = ml_collections.ConfigDict(
        dict(
            name=name,
            dtype="float32",
            pool="gap",
            posemb="learn",
            dropout=0.0,
            drop_path=0.0,
            norm="batch",
            head_zero_init=True,
        )
    )
    config.update(overrides)
    return config


def check_model_config(config, image_size: int) -> str | None:
    """Returns an error message naming the bad key, or None when `config` is usable."""
    unknown = sorted(set(config.keys()) - set(MODEL_KEYS))
    if unknown:
        return f"model.{unknown[0]} is not a model option; known: {', '.join(MODEL_KEYS)}"
    name = config.get("name", "")
    try:
        if name.startswith("ResNet"):
            resnet.parse_name(name)
        else:
            _, patch = vit.parse_name(name)
            if image_size % patch:
                return f"model.name={name!r}: image size {image_size} is not a multiple of {patch}"
    except ValueError as e:
        return f"model.name: {e}"
    if config.get("dtype", "float32") not in DTYPES:
        return f"model.dtype={config.dtype!r}: one of {', '.join(DTYPES)}"
    if config.get("pool", "gap") not in ("gap", "cls"):
        return f"model.pool={config.pool!r}: one of gap, cls"
    if config.get("posemb", "learn") not in ("learn", "sincos2d"):
        return f"model.posemb={config.posemb!r}: one of learn, sincos2d"
    if config.get("norm", "batch") not in ("batch", "group"):
        return f"model.norm={config.norm!r}: one of batch, group"
    for key in ("dropout", "drop_path"):
        if not 0.0 <= float(config.get(key, 0.0)) < 1.0:
            return f"model.{key}={config[key]}: a rate in [0, 1)"
    return None


def create_model(config, num_classes: int, image_size: int, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the model that `config.name` names (see the module docstring for the keys)."""
    error = check_model_config(config, image_size)
    if error:
        raise ValueError(error)
    dtype = DTYPES[config.get("dtype", "float32")]
    head_zero_init = config.get("head_zero_init", True)
    if config.name.startswith("ResNet"):
        return resnet.ResNet(
            config.name,
            num_classes,
            image_size,
            rngs=rngs,
            norm=config.get("norm", "batch"),
            dtype=dtype,
            head_zero_init=head_zero_init,
        )
    return vit.ViT(
        config.name,
        num_classes,
        image_size,
        rngs=rngs,
        pool=config.get("pool", "gap"),
        posemb=config.get("posemb", "learn"),
        dropout=config.get("dropout", 0.0),
        drop_path=config.get("drop_path", 0.0),
        dtype=dtype,
        head_zero_init=head_zero_init,
    )
