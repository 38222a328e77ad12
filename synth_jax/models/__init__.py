"""Models by name: ViT ("Ti/16", "S/16", "B/16", "L/16", "Ti/4", ...), ResNet ("ResNet-18",
"ResNet-50", ...) and a small ConvNet ("ConvNet-32", for small images on a CPU), as Flax NNX
modules.

    model = create_model(config.model, num_classes=1000, image_size=224, rngs=nnx.Rngs(0))
    logits = model(images, train=False)        # float32[B, num_classes]
    feats = model.features(images, train=False)  # float32[B, D], the pre-head representation

The classifier is the attribute `head` (so fine-tuning can drop or re-initialise `head/...`).
A model config holds the shared keys
    name            "Ti/16", "ResNet-50", ...: the model module that claims it builds the model
    dtype           compute dtype, "float32" or "bfloat16" (parameters are always float32)
    head_zero_init  start from a zero classifier (big_vision default)
plus the keys of that module (`DEFAULTS`): ViT pool, posemb, dropout, drop_path; ResNet norm.
(Keys of another model kind are allowed and unused, so a config can switch `model.name`.)

Adding a model is one module and one table entry: the module defines

    NAMES: str                 the names it takes, for error messages
    DEFAULTS: dict             its own model.<key> defaults
    claims(name) -> bool       whether `model.name` is one of its models (ask narrowly: modules
                               are asked in registration order, built-ins first)
    validate(config, image_size)
                               raises synth_jax.errors.UsageError naming the bad model.<key>
    create(config, num_classes, image_size, rngs, dtype) -> nnx.Module
                               with __call__(images float[B,H,W,3], train, rng=None) -> logits,
                               features(images, train, rng=None) -> float32[B, D] (pre-logits;
                               the linear probe and the k-NN evaluator read it) and a `head`
    adapt_pretrained(target, loaded, dont_load=HEAD) -> {path: array}
                               which pre-trained arrays go into a freshly built model (target:
                               its nested dict of arrays or shape structs), resized where the
                               model knows how; see synth_jax.models.adapt.select_arrays

and is registered with `MODELS.register("name", module)` (see docs/extending.md).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
from flax import nnx

from synth_jax.config import check_choice
from synth_jax.errors import UsageError
from synth_jax.models import convnet, resnet, vit
from synth_jax.registry import Registry

MODELS = Registry(
    "model",
    "model.name",
    {"vit": vit, "resnet": resnet, "convnet": convnet},
    required=("DEFAULTS", "claims", "validate", "create", "adapt_pretrained"),
)
SHARED_DEFAULTS = dict(name="Ti/16", dtype="float32", head_zero_init=True)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def model_module(name: str):
    """The registered module that claims `name`; a UsageError naming model.name otherwise."""
    for module in MODELS.values():
        if isinstance(name, str) and module.claims(name):
            return module
    names = "; ".join(getattr(m, "NAMES", key) for key, m in MODELS.items())
    raise UsageError(f"config key 'model.name'={name!r}: no model takes this name ({names})")


def model_config(name: str = "Ti/16", **overrides) -> ml_collections.ConfigDict:
    """The default model config for `name` (shared keys and its module's) with `overrides`."""
    values = {**SHARED_DEFAULTS, **model_module(name).DEFAULTS, "name": name}
    for key, value in overrides.items():
        if key not in values:
            raise UsageError(f"model config key {key!r} is unknown for model {name!r}")
        values[key] = value
    return ml_collections.ConfigDict(values)


def check_model_config(config, image_size: int) -> None:
    """Raises UsageError naming the bad `model.*` key. Keys of other model kinds are let through
    (and unused), so that a config can switch `model.name` between kinds."""
    module = model_module(config.get("name", ""))
    known = all_model_defaults()
    unknown = [key for key in config.keys() if key not in known]
    if unknown:
        allowed = {**SHARED_DEFAULTS, **module.DEFAULTS}
        raise UsageError(f"model.{unknown[0]} is not a model option; known: {', '.join(allowed)}")
    check_choice(config, "dtype", tuple(DTYPES), "model.")
    module.validate(config, image_size)


def create_model(config, num_classes: int, image_size: int, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the model that `config.name` names (see the module docstring for the keys); a bad
    value is a ValueError (configs are checked with `check_model_config` first)."""
    module = model_module(config.name)
    values = {**SHARED_DEFAULTS, **module.DEFAULTS, **dict(config.items())}
    if values["dtype"] not in DTYPES:
        raise ValueError(f"model.dtype={values['dtype']!r}: one of {', '.join(DTYPES)}")
    return module.create(
        ml_collections.ConfigDict(values), num_classes, image_size, rngs, DTYPES[values["dtype"]]
    )


def adapt_pretrained(config, target, loaded, dont_load=None) -> dict:
    """{path: array} of the pre-trained arrays `loaded` that a model of `config` takes; the model
    module decides (position embeddings resampled for a ViT). dont_load: regexes of arrays kept
    fresh (None: the module's head). Raises UsageError listing every array that does not fit."""
    module = model_module(config.name)
    if dont_load is None:
        return module.adapt_pretrained(target, loaded)
    return module.adapt_pretrained(target, loaded, tuple(dont_load))


def all_model_defaults() -> dict:
    """Every model.<key> any registered module knows, with its default (for configs written by
    earlier versions, whose model sections held every key)."""
    out = dict(SHARED_DEFAULTS)
    for module in MODELS.values():
        out.update(module.DEFAULTS)
    return out
