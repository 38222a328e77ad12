"""Classification on a labelled split: top-1, top-5 and per-class accuracy (the evaluator
`type="classification"`, which fine-tuning runs on the test split at the end of training).

`class_counts` / `metrics_from_counts` are the plain numpy definitions the numbers come from
(counts, so that batches and hosts add up exactly); `evaluate` runs a predict function over a
finite host source (padded batches carry a `mask`).

    config.evals.test = eval_config("classification", data=tfds_config(name="cifar10"),
                                    split="test", every_steps=1000)
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from synth_jax.config import check
from synth_jax.data import pipeline
from synth_jax.errors import UsageError
from synth_jax.evaluators import inference

DEFAULTS = dict(
    data=pipeline.tfds_config(),  # the TFDS dataset (name, data_dir, ...)
    split="test",
    batch_size=256,  # global; a multiple of the data-parallel size and of the process count
)


def class_counts(top_predictions: np.ndarray, labels: np.ndarray, num_classes: int):
    """float64[3, C]: per class, the number of examples, top-1 hits and top-5 hits.

    top_predictions: int[N, k] classes by decreasing score (k >= 1; top-5 uses the first
    min(5, k) columns); labels: int[N]. Counts add up across batches and hosts.
    """
    preds, labels = np.asarray(top_predictions), np.asarray(labels)
    hit1 = preds[:, 0] == labels
    hit5 = (preds[:, :5] == labels[:, None]).any(axis=1)
    return np.stack(
        [
            np.bincount(labels, minlength=num_classes).astype(np.float64),
            np.bincount(labels, weights=hit1, minlength=num_classes),
            np.bincount(labels, weights=hit5, minlength=num_classes),
        ]
    )


def metrics_from_counts(counts: np.ndarray) -> dict:
    """top1, top5 (fractions), top1_error, top5_error, per_class (float[C] top-1 accuracy; NaN
    for a class without test examples) and num_examples, from `class_counts`."""
    total, hit1, hit5 = counts
    n = total.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(total > 0, hit1 / total, np.nan)
    top1, top5 = float(hit1.sum() / n), float(hit5.sum() / n)
    return {
        "top1": top1,
        "top5": top5,
        "top1_error": 1.0 - top1,
        "top5_error": 1.0 - top5,
        "per_class": per_class,
        "num_examples": int(n),
    }


def classification_metrics(top_predictions: np.ndarray, labels: np.ndarray, num_classes: int):
    """Accuracy metrics of ranked predictions int[N, k] against labels int[N] (see above)."""
    return metrics_from_counts(class_counts(top_predictions, labels, num_classes))


def evaluate(predict_fn, source, num_classes: int) -> dict:
    """Runs `predict_fn(images uint8[B, H, W, C]) -> int32[B, k]` (this host's rows) over one
    pass of `source` (a finite HostSource whose batches carry `mask`); every host gets the
    metrics of the whole split (counts are summed across hosts)."""
    source.reset()
    counts = np.zeros((3, num_classes))
    for batch in source:
        mask = batch["mask"]
        out = np.asarray(predict_fn(batch["image"]))
        counts += class_counts(out[mask], batch["label"][mask], num_classes)
    if jax.process_count() > 1:
        counts = np.asarray(multihost_utils.process_allgather(counts)).sum(axis=0)
    return metrics_from_counts(counts)


def validate(config, prefix: str) -> None:
    check(config, "split", lambda v: isinstance(v, str) and v, "a split name", prefix)
    check(
        config, "batch_size", lambda v: isinstance(v, int) and v >= 1, "a positive integer", prefix
    )


class Evaluator:
    """The model's top-1/top-5/per-class accuracy on `split` of `data` (one pass, no shuffle)."""

    def __init__(self, config, context):
        self.context = context
        self.source = pipeline.make_source(config.data, config.split, config.batch_size, 0, False)
        if self.source.num_classes != context.num_classes:
            raise UsageError(
                f"{context.name}: {config.data.name}:{config.split} has "
                f"{self.source.num_classes} classes, the model {context.num_classes}"
            )

    def run(self, model) -> dict:
        c = self.context
        predict = inference.model_fn(model, c.mesh, c.image_size, c.mean, c.std, "top5")
        return evaluate(predict, self.source, c.num_classes)

    def close(self) -> None:
        self.source.close()
