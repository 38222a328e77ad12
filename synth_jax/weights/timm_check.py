"""The same images through an exported model in timm and through synth_jax: the proof that an
export is exact. timm's side needs PyTorch and timm (`pip install 'synth_jax[timm]'`), imported
only here and only when called.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from synth_jax.errors import UsageError
from synth_jax.models import create_model, model_config
from synth_jax.train.optim import param_path


def require_timm():
    """(torch, timm), or a UsageError saying how to install them."""
    try:
        import timm
        import torch
    except ImportError as e:
        raise UsageError(
            f"checking in timm needs PyTorch and timm ({e.name} is missing): "
            "pip install 'synth_jax[timm]'"
        ) from None
    return torch, timm


def timm_outputs(folder: str, images: np.ndarray) -> np.ndarray:
    """images float32[B, H, W, 3] (already normalised) -> logits float32[B, C] of the timm model
    in `folder` (model.safetensors + config.json), or its pooled features [B, D] when the
    export has no head."""
    torch, timm = require_timm()
    model = timm.create_model(f"local-dir:{os.path.abspath(folder)}", pretrained=True).eval()
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2)))
    with torch.no_grad():
        if model.num_classes:
            return model(x).numpy()
        return model.forward_head(model.forward_features(x), pre_logits=True).numpy()


def synth_jax_outputs(
    model: dict, image_size: int, params: dict, model_state: dict, images: np.ndarray
) -> np.ndarray:
    """images float32[B, H, W, 3] -> logits float32[B, C] of the synth_jax model holding
    `params`/`model_state` (computed in float32), or its features [B, D] when `params` has no
    head."""
    has_head = "head" in params
    num_classes = int(np.shape(params["head"]["bias"])[0]) if has_head else 1
    config = model_config(**{**model, "dtype": "float32"})
    net = create_model(config, num_classes, image_size, nnx.Rngs(params=0))
    for kind, loaded in ((nnx.Param, params), (nnx.BatchStat, model_state)):
        state = nnx.state(net, kind)
        flat = {param_path(p): v for p, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
        pure = jax.tree_util.tree_map_with_path(
            lambda p, x, flat=flat: jnp.asarray(flat.get(param_path(p), x), x.dtype),
            nnx.to_pure_dict(state),
        )
        nnx.replace_by_pure_dict(state, pure)
        nnx.update(net, state)
    if "posemb" in model_state and not isinstance(net.posemb, nnx.Param):
        net.posemb[...] = jnp.asarray(model_state["posemb"], jnp.float32)
    x = jnp.asarray(images, jnp.float32)
    out = net(x, train=False) if has_head else net.features(x, train=False)
    return np.asarray(out, np.float32)
