"""timm's `config.json` beside a weights file (the Hugging Face Hub layout timm reads with
`timm.create_model("local-dir:DIR", pretrained=True)`), with a `synth_jax` section.

    {"architecture": "vit_tiny_patch16_224", "num_classes": 1000, "num_features": 192,
     "global_pool": "avg", "model_args": {...differences from the architecture...},
     "pretrained_cfg": {"input_size": [3, 224, 224], "mean": [...], "std": [...], ...},
     "synth_jax": {"model": {...}, "image_size": 224, "differences": ["..."], "source": ...}}

timm reads architecture, num_classes, model_args and pretrained_cfg and ignores the rest.
"""

from __future__ import annotations

import json
import os

from synth_jax.errors import UsageError

FILE = "config.json"


def build(
    *,
    architecture: str,
    model_args: dict,
    num_classes: int,
    num_features: int,
    global_pool: str,
    image_size: int,
    mean,
    std,
    first_conv: str,
    classifier: str,
    fixed_input_size: bool,
    synth_jax: dict,
) -> dict:
    """The config.json dict. The eval transform is synth_jax's: the whole image resized to
    size x size (bilinear; timm's crop_mode 'squash'), then (x - mean) / std on [0, 1] pixels."""
    return {
        "architecture": architecture,
        "num_classes": int(num_classes),
        "num_features": int(num_features),
        "global_pool": global_pool,
        "model_args": dict(model_args),
        "pretrained_cfg": {
            "input_size": [3, int(image_size), int(image_size)],
            "fixed_input_size": bool(fixed_input_size),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "crop_mode": "squash",
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "num_classes": int(num_classes),
            "first_conv": first_conv,
            "classifier": classifier,
            "custom_load": False,
        },
        "synth_jax": synth_jax,
    }


def read(weights_path: str) -> dict | None:
    """The timm config.json in the folder of `weights_path`, or None when there is none (a
    config.json without an "architecture" is not timm's and is ignored)."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights_path)), FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not readable JSON ({type(e).__name__}); fix or remove it") from e
    if not isinstance(config, dict) or "architecture" not in config:
        return None
    return config
