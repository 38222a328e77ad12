"""Training objectives by name: `config.objective.type` picks one from `OBJECTIVES` (an extension
point like the data families and models, synth_jax.registry).

    supervised  the data's labels, cross-entropy (synth_jax.train.objective.SUPERVISED)
    simclr      image-image contrastive, NT-Xent over the global batch (synth_jax.train.simclr)
    mae         masked autoencoder of a ViT (synth_jax.train.mae)

`config.objective` holds `type` and that objective's keys (its module's DEFAULTS; a key left out
takes its default):

    config.objective = objective_config("simclr", temperature=0.2)

An entry is a module (or any object) with
    DEFAULTS: dict                          its keys and their defaults
    validate(config, model_config)          raises UsageError naming the bad objective.<key>
    build(config, *, model_config, feature_dim, image_size, augment_config) -> Objective
and is added with `OBJECTIVES.register("name", module)`. The default is supervised, so configs
and checkpoints written before the key existed run and restore as they did.
"""

from __future__ import annotations

import types

import ml_collections

from synth_jax.errors import UsageError
from synth_jax.registry import Registry
from synth_jax.train import mae, simclr
from synth_jax.train.objective import SUPERVISED, Objective

supervised = types.SimpleNamespace(
    DEFAULTS={},
    validate=lambda config, model_config: None,
    build=lambda config, **_: SUPERVISED,
)

OBJECTIVES = Registry(
    "objective",
    "objective.type",
    {"supervised": supervised, "simclr": simclr, "mae": mae},
    required=("DEFAULTS", "validate", "build"),
)


def objective_config(type: str = "supervised", **overrides) -> ml_collections.ConfigDict:
    """`type` and its objective's keys with their defaults, `overrides` applied."""
    defaults = OBJECTIVES.lookup(type).DEFAULTS
    values = {"type": type, **defaults}
    for key, value in overrides.items():
        if key not in values:
            known = ", ".join(sorted(defaults)) or "none"
            raise UsageError(
                f"objective config key {key!r} is unknown for {type!r}; known: {known}"
            )
        values[key] = value
    return ml_collections.ConfigDict(values)


def resolved(config) -> ml_collections.ConfigDict:
    """A config.objective section with its objective's defaults for the keys it lacks."""
    config = config if config is not None else ml_collections.ConfigDict()
    kind = config.get("type", "supervised")
    out = objective_config(kind)
    for key in config.keys():
        if key not in out:
            known = ", ".join(sorted(out.keys()))
            raise UsageError(
                f"config key 'objective.{key}' is unknown for objective.type={kind!r}; "
                f"known keys here: {known}"
            )
        out[key] = config[key]
    return out


def validate(config, model_config) -> None:
    """Raises UsageError naming the bad `objective.*` key."""
    full = resolved(config)
    OBJECTIVES.lookup(full.type).validate(full, model_config)


def build(config, *, model_config, feature_dim, image_size: int, augment_config) -> Objective:
    """The Objective of a validated config.objective section."""
    full = resolved(config)
    return OBJECTIVES.lookup(full.type).build(
        full,
        model_config=model_config,
        feature_dim=feature_dim,
        image_size=image_size,
        augment_config=augment_config,
    )
