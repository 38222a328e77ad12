"""Start a fine-tune from a pre-training run: which pre-trained arrays go into the new model.

big_vision's recipe: build the model for the new task (new classes, new resolution), then copy
every pre-trained array into it except the classifier (`head/...`, re-initialised for the new
classes). A learned position embedding whose grid differs (pre-train at 32 px, fine-tune at 64 or
224) is resampled bilinearly. `check_fits` runs before anything compiles and lists EVERY array
that does not fit, so that a wrong `model.name` is one clear error. The merge itself is the
trainer's (`synth_jax.train.trainer.select_init_params`), so fine-tuning and the linear probe load
weights the same way.
"""

from __future__ import annotations

import re

import jax
import numpy as np
from flax import nnx, traverse_util

from synth_jax import weights
from synth_jax.errors import UsageError
from synth_jax.models import create_model
from synth_jax.train import checkpoint
from synth_jax.train.optim import param_path
from synth_jax.train.trainer import select_init_params


def load_pretrained(init_from: str) -> tuple[dict, dict, dict | None]:
    """(params, extra (batch statistics; {} for ViTs), pre-training config dict or None).

    `init_from`: a synth_jax workdir or checkpoint, or a timm-layout .safetensors / big_vision
    .npz weights file (see synth_jax.weights)."""
    if weights.is_weights_file(init_from):
        return weights.load(init_from)
    state = checkpoint.load_train_state(init_from)
    _, config = checkpoint.load_params(init_from)
    return state["params"], state.get("extra") or {}, config


def _flat(tree) -> dict:
    flat = traverse_util.flatten_dict(tree) if tree else {}
    return {"/".join(str(k) for k in key): v for key, v in flat.items()}


def check_fits(target: dict, loaded: dict, dont_load=("head/.*",)) -> list[str]:
    """Compares pre-trained arrays with a model's (nested dicts of arrays or shape structs).

    Returns the names of the arrays that will be loaded. Raises UsageError listing every array
    of the model that is missing from `loaded` or has another shape (a `posemb` of another grid
    with the same width is fine: it is resampled).
    """
    patterns = [re.compile(p) for p in dont_load]
    flat_target, flat_loaded = _flat(target), _flat(loaded)
    problems, names = [], []
    for name, leaf in flat_target.items():
        if any(p.fullmatch(name) for p in patterns):
            continue
        if name not in flat_loaded:
            problems.append(f"{name} (not in the checkpoint)")
            continue
        have, want = tuple(np.shape(flat_loaded[name])), tuple(leaf.shape)
        resample = name.endswith("posemb") and len(have) == 3 and have[2] == want[2]
        if have != want and not resample:
            problems.append(f"{name} (checkpoint {have}, model {want})")
        names.append(name)
    if problems:
        raise UsageError(
            f"the pre-trained parameters do not fit this model: {'; '.join(problems)}. "
            f"Use the pre-training's model.name (and its pool/posemb settings)"
        )
    return names


def abstract_params(model_config, num_classes: int, image_size: int) -> dict:
    """The model's parameters as shape structs (nothing is allocated)."""
    model = nnx.eval_shape(
        lambda: create_model(model_config, num_classes, image_size, nnx.Rngs(params=0))
    )
    return nnx.state(model, nnx.Param).to_pure_dict()


def load_into(model: nnx.Module, init_from: str, dont_load=("head/.*",)) -> dict:
    """Loads `init_from`'s newest checkpoint into `model` in place (parameters and batch-norm
    statistics; `dont_load` regexes keep their fresh values). Returns the pre-training config."""
    params, extra, config = load_pretrained(init_from)
    for kind, loaded in ((nnx.Param, params), (nnx.BatchStat, extra)):
        state = nnx.state(model, kind)
        pure = state.to_pure_dict()
        if not _flat(pure):
            continue
        check_fits(pure, loaded, dont_load)
        chosen = select_init_params(pure, loaded, dont_load)
        pure = jax.tree_util.tree_map_with_path(
            lambda path, x, chosen=chosen: chosen.get(param_path(path), x), pure
        )
        state.replace_by_pure_dict(pure)
        nnx.update(model, state)
    return config
