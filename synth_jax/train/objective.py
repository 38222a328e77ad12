"""The loss seam: what a training objective gives the step program (synth_jax.train.step).

An objective is two pure functions, traced into the jitted step:

    views(images, targets, labels, key) -> views
        images float32[B, S, S, 3] (rendered or fed, then augmented, each device its rows),
        targets float32[B, C] (soft: mixup, label smoothing), labels int32[B] or multi-hot
        int32[B, C]; key: the step's own key for the views. Returns the loss's inputs (crops,
        masks, ...): a pytree of arrays with the batch first. With optim.accum_steps = A the step
        program splits every leaf row-wise into A micro-batches (row j goes to micro-batch j % A).
    loss(forward, params, model_state, views, key) -> (loss, (model_state, sums))
        forward(params, model_state, images, key) -> (outputs, model_state) runs the model (in
        train mode, or as at evaluation with `inference_mode`); the loss float32[] is the mean
        over the views' rows and is differentiated with respect to `params`; sums
        {name: float32[]} are totals over the rows (e.g. correct predictions), added over the
        micro-batches and logged per image (divided by the global batch size).

The step program calls them in this order: make the batch, `views`, then `loss` (under
`jax.value_and_grad`, once per micro-batch), then the optimiser and the finite guard. The loop
and its hooks see only the metrics, so a new objective changes nothing there.

The supervised objective is `SUPERVISED`: the views are the batch itself, the loss the
classification loss of synth_jax.train.losses (softmax cross-entropy, or the weighted sigmoid
loss for multi-hot labels), the sums the correct top-1 predictions (logged as `accuracy`).

The others (synth_jax.train.simclr, synth_jax.train.mae) are picked by config.objective.type
through the registry of synth_jax.train.objectives. Three things more an objective may supply:
    views(..., key, rows)   rows int32[B]: each image's row in the global batch. The step calls
                            `views` per device, inside a shard_map over the batch axes, so every
                            image's randomness comes from (key, its row) and a device makes the
                            views of its own rows only: no image crosses devices.
    init(key) -> params     the objective's own parameters (a projection head, a decoder) as a
                            nested dict of arrays. They train with the model's and are saved
                            under the train state's key `objective`; the loss then gets
                            params = {"model": the model's, "objective": its own}. Supervised
                            runs have none, so their checkpoints keep the tree
                            {params, model_state, opt_state, step}; the model's arrays stay under
                            `params` in every objective's, which is all that fine-tuning, the
                            evaluators and export-model read.
    forward_images          images the model sees per row of the batch (SimCLR 2: two views),
                            for the formula FLOPs.
`forward(params, model_state, inputs, key, call=None)` runs `call(model, inputs, train, rng)`
when given (e.g. the pre-head features, or a ViT's encoder on visible patches), the model's
`__call__` otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from synth_jax.train import losses


@dataclasses.dataclass(frozen=True)
class Objective:
    """A training objective: `views` and `loss` as the module docstring describes."""

    views: Callable
    loss: Callable
    init: Callable | None = None  # key -> the objective's own parameters (nested dict)
    name: str = "supervised"
    forward_images: float = 1.0


def _batch_as_views(images, targets, labels, key, rows=None) -> dict:
    del key, rows  # supervised views draw nothing
    return dict(images=images, targets=targets, labels=labels)


def _classification_loss(forward, params, model_state, views, key):
    logits, model_state = forward(params, model_state, views["images"], key)
    loss = losses.classification_loss(logits, views["targets"], views["labels"])
    correct = losses.correct(logits, views["labels"]).sum()
    return loss, (model_state, {"accuracy": correct})


SUPERVISED = Objective(views=_batch_as_views, loss=_classification_loss)
