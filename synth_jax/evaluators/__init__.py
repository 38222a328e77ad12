"""Evaluators, big_vision style: `config.evals.<name> = {type, every_steps, ...}`, run by the
trainer every `every_steps` steps (0: only at the end) and at the end of training; their scalar
metrics go through the metric writer as `<name>/<metric>` beside the loss, and the last results
into summary.json under `evals`.

    config.evals.knn = eval_config("knn", every_steps=100, data=tfds_config(data_dir=DIR))

Built in: `classification` (top-1/top-5/per-class accuracy on a labelled split; fine-tuning's
test-split evaluation) and `knn` (k-NN accuracy on the pre-logit features, DINO's monitor).

Adding one is one module and one table entry: the module defines

    DEFAULTS: dict               its keys (beside type and every_steps) with their defaults
    validate(config, prefix)     raises synth_jax.errors.UsageError naming the bad key
                                 (prefix: "evals.<name>.")
    Evaluator(config, context)   opens what it needs (errors as UsageError, before anything
                                 compiles); context: a `Context` (mesh, image size, ...)
        .run(model) -> dict      metrics of an nnx model (model(images, train=False) -> logits,
                                 model.features(...) -> pre-logits); scalars are logged
        .close()                 optional: releases data sources

and is registered with `EVALUATORS.register("name", module)` (see docs/extending.md).
"""

from __future__ import annotations

import dataclasses

import ml_collections

from synth_jax.config import allowed_keys, check, require_keys
from synth_jax.errors import UsageError
from synth_jax.evaluators import classification, knn
from synth_jax.registry import Registry

EVALUATORS = Registry(
    "evaluator",
    "evals.<name>.type",
    {"classification": classification, "knn": knn},
    required=("DEFAULTS", "validate", "Evaluator"),
)
SHARED_DEFAULTS = dict(type="", every_steps=0)  # every_steps 0: only at the end of training


def _defaults(kind: str) -> dict:
    module = EVALUATORS.lookup(kind)
    return {**SHARED_DEFAULTS, **module.DEFAULTS, "type": kind}


def eval_config(kind: str, **overrides) -> ml_collections.ConfigDict:
    """The default config of an evaluator of type `kind` with `overrides` applied."""
    config = ml_collections.ConfigDict(_defaults(kind))
    for key, value in overrides.items():
        if key not in config:
            raise UsageError(f"evaluator config key {key!r} is unknown for type {kind!r}")
        config[key] = value
    return config


def validate_evals(evals) -> None:
    """Checks every `evals.<name>` section; raises UsageError naming the first bad key."""
    for name, section in evals.items():
        prefix = f"evals.{name}."
        if not isinstance(section, ml_collections.ConfigDict):
            raise UsageError(f"config key 'evals.{name}': expected eval_config(TYPE, ...)")
        kind = section.get("type")
        if kind not in EVALUATORS:
            raise UsageError(
                f"config key '{prefix}type'={kind!r}: expected one of {', '.join(EVALUATORS)}"
            )
        require_keys(section, allowed_keys(ml_collections.ConfigDict(_defaults(kind))), prefix)
        check(
            section,
            "every_steps",
            lambda v: isinstance(v, int) and v >= 0,
            "a non-negative integer (0: only at the end)",
            prefix,
        )
        EVALUATORS[kind].validate(section, prefix)


@dataclasses.dataclass(frozen=True)
class Context:
    """What an evaluator knows of the run: `name` (evals.<name>, for messages), the device
    `mesh`, the model's input `image_size` and normalisation `mean`/`std` (as in training),
    its `num_classes`, and the run's `workdir`."""

    name: str
    mesh: object
    image_size: int
    mean: tuple
    std: tuple
    num_classes: int
    workdir: str


@dataclasses.dataclass
class Scheduled:
    """One configured evaluator and when it runs."""

    name: str
    every_steps: int
    evaluator: object

    def due(self, step: int, total_steps: int) -> bool:
        return step == total_steps or (self.every_steps > 0 and step % self.every_steps == 0)


def build(evals, **context) -> list[Scheduled]:
    """Opens every configured evaluator; `context`: the Context fields other than name."""
    return [
        Scheduled(
            name,
            int(section.every_steps),
            EVALUATORS[section.type].Evaluator(section, Context(name=f"evals.{name}", **context)),
        )
        for name, section in evals.items()
    ]


def close(scheduled: list[Scheduled]) -> None:
    for s in scheduled:
        if hasattr(s.evaluator, "close"):
            s.evaluator.close()
