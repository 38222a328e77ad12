"""Start a fine-tune from a pre-training run: load the backbone into a freshly built model.

big_vision's recipe: build the model for the new task (new classes, new resolution), then copy
every pre-trained array into it except the classifier (`head/...`, re-initialised for the new
classes). A learned position embedding whose grid differs (pre-train at 32 px, fine-tune at 64 or
224) is resampled bilinearly. Anything else that does not fit is an error listing every offending
array, so that a wrong `model.name` is caught before training starts.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
from flax import nnx, traverse_util

from synth_jax.errors import UsageError


def resample_posemb(posemb: np.ndarray, new_tokens: int) -> np.ndarray:
    """Bilinear resampling of a square grid of position embeddings.

    posemb: float[1, g*g, D] (patch tokens only; the class token has its own parameter);
    returns float[1, n*n, D] with n*n = new_tokens. Same grid: returned unchanged.
    """
    _, tokens, width = posemb.shape
    old, new = int(round(tokens**0.5)), int(round(new_tokens**0.5))
    if old * old != tokens or new * new != new_tokens:
        raise ValueError(f"position embeddings must form square grids: {tokens} -> {new_tokens}")
    if old == new:
        return posemb
    grid = np.asarray(posemb, np.float32).reshape(old, old, width)
    zoom = (new / old, new / old, 1)
    grid = scipy.ndimage.zoom(grid, zoom, order=1)  # bilinear, as big_vision's resample_posemb
    return grid.reshape(1, new * new, width).astype(posemb.dtype)


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(tree) if tree else {}


def _name(key) -> str:
    return "/".join(str(k) for k in key)


def merge_pretrained(target: dict, loaded: dict, dont_load=("head",)) -> tuple[dict, dict]:
    """Copies `loaded` into `target` (nested dicts of arrays, nnx pure-dict layout).

    Keys whose first part is in `dont_load` keep the target's fresh values. Returns
    (merged nested dict, report {"loaded": [...], "kept": [...], "resampled": [...]}).
    Raises UsageError listing every array that is missing or has another shape.
    """
    flat_target, flat_loaded = _flat(target), _flat(loaded)
    merged, report, problems = {}, {"loaded": [], "kept": [], "resampled": []}, []
    for key, fresh in flat_target.items():
        name = _name(key)
        if key[0] in dont_load:
            merged[key] = fresh
            report["kept"].append(name)
            continue
        if key not in flat_loaded:
            problems.append(f"{name} (not in the checkpoint)")
            continue
        value = np.asarray(flat_loaded[key])
        if value.shape == tuple(fresh.shape):
            merged[key] = value.astype(fresh.dtype)
            report["loaded"].append(name)
        elif key[-1] == "posemb" and value.ndim == 3 and value.shape[-1] == fresh.shape[-1]:
            merged[key] = resample_posemb(value, fresh.shape[1]).astype(fresh.dtype)
            report["resampled"].append(f"{name} {value.shape} -> {tuple(fresh.shape)}")
        else:
            problems.append(f"{name} (checkpoint {value.shape}, model {tuple(fresh.shape)})")
    if problems:
        raise UsageError(
            f"the pre-trained parameters do not fit this model: {'; '.join(problems)}. "
            f"Use the pre-training's model.name (and pool/posemb settings)"
        )
    return traverse_util.unflatten_dict(merged), report


def load_into(model: nnx.Module, init_from: str, dont_load=("head",)) -> dict:
    """Loads the newest checkpoint of `init_from` (a workdir or checkpoint path) into `model`
    in place: parameters and, for batch-norm models, running statistics; the head stays fresh.

    Returns the report of `merge_pretrained` plus the pre-training config (`config`, a dict or
    None).
    """
    from synth_jax.train import checkpoint

    saved = checkpoint.load_train_state(init_from)
    _, config = checkpoint.load_params(init_from)
    params = nnx.state(model, nnx.Param)
    merged, report = merge_pretrained(params.to_pure_dict(), saved["params"], dont_load)
    params.replace_by_pure_dict(merged)
    nnx.update(model, params)
    stats = nnx.state(model, nnx.BatchStat)
    if _flat(stats.to_pure_dict()):
        loaded_stats = saved.get("extra") or {}
        merged, stats_report = merge_pretrained(stats.to_pure_dict(), loaded_stats, dont_load)
        stats.replace_by_pure_dict(merged)
        nnx.update(model, stats)
        report["loaded"] += stats_report["loaded"]
    report["config"] = config
    return report
