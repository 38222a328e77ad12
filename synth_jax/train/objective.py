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

Today there is one objective, `SUPERVISED`: the views are the batch itself, the loss the
classification loss of synth_jax.train.losses (softmax cross-entropy, or the weighted sigmoid
loss for multi-hot labels), the sums the correct top-1 predictions (logged as `accuracy`).

Pre-training objectives to come (SimCLR, MAE) plug in here, chosen by name from a registry
(config.objective.type) where `step.build_step` now takes SUPERVISED. SimCLR's views are two
augmentations of each image (made per device where the batch is made, synth_jax.train.
local_batch, so no image crosses devices) and its loss NT-Xent on a projection head's outputs;
MAE's views are random patch masks and its loss the decoder's reconstruction error on the
masked patches. Their own parameters (the projection head, the decoder) are the third thing an
objective supplies: an `init(key) -> params` whose arrays train and are saved beside the model's
under a state key of their own, which supervised runs do not have, so their checkpoints keep
today's tree ({params, model_state, opt_state, step}).
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


def _batch_as_views(images, targets, labels, key) -> dict:
    del key  # supervised views draw nothing
    return dict(images=images, targets=targets, labels=labels)


def _classification_loss(forward, params, model_state, views, key):
    logits, model_state = forward(params, model_state, views["images"], key)
    loss = losses.classification_loss(logits, views["targets"], views["labels"])
    correct = losses.correct(logits, views["labels"]).sum()
    return loss, (model_state, {"accuracy": correct})


SUPERVISED = Objective(views=_batch_as_views, loss=_classification_loss)
