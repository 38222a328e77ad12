"""Start a fine-tune from a pre-training run: read its checkpoint, put its arrays into a new model.

big_vision's recipe: build the model for the new task (new classes, new resolution), then copy
every pre-trained array into it except the classifier (`head/...`, re-initialised for the new
classes). Which arrays fit, and how one of another shape is adapted (a ViT resamples its position
embedding), is the model module's `adapt_pretrained` (synth_jax.models); the trainer and
`load_into` (the linear probe) both go through it, so weights load the same way everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

from flax import nnx

from synth_jax import models, weights
from synth_jax.models import adapt
from synth_jax.train import checkpoint


class Pretrained(NamedTuple):
    """A pre-trained model's arrays, as nested dicts of numpy arrays in the layout of
    `nnx.to_pure_dict` (list entries under int keys, the classifier under "head")."""

    params: dict
    model_state: dict  # the non-parameter state: batch statistics ({} for most ViTs)
    config: dict | None  # the pre-training's config.json, when there is one


def load_pretrained(init_from: str) -> Pretrained:
    """The one entry point for `init_from`: a pre-training workdir, its checkpoints/ dir or one
    step's dir (the newest checkpoint is read), or a timm-layout .safetensors / big_vision .npz
    weights file (see synth_jax.weights)."""
    if weights.is_weights_file(init_from):
        return Pretrained(*weights.load(init_from))
    state = checkpoint.load_train_state(init_from)
    _, config = checkpoint.load_params(init_from)
    return Pretrained(state["params"], state.get("model_state") or {}, config)


def load_into(model: nnx.Module, model_config, init_from: str, dont_load=("head/.*",)) -> dict:
    """Loads `init_from`'s newest checkpoint into `model` (built from `model_config`) in place:
    parameters and batch-norm statistics; `dont_load` regexes keep their fresh values. Returns
    the pre-training config."""
    params, model_state, config = load_pretrained(init_from)
    for kind, loaded in ((nnx.Param, params), (nnx.BatchStat, model_state)):
        state = nnx.state(model, kind)
        pure = nnx.to_pure_dict(state)
        if not adapt.flatten(pure):
            continue
        chosen = models.adapt_pretrained(model_config, pure, loaded, dont_load)
        nnx.replace_by_pure_dict(state, adapt.merge(pure, chosen))
        nnx.update(model, state)
    return config
