"""Test-split evaluation: top-1, top-5 and per-class accuracy.

`top5_predictions` runs on the device (one int32[B, 5] per batch comes back, not the logits);
`classification_metrics` is the plain numpy definition the numbers come from; `evaluate` runs a
jitted predict function over a finite host source (padded batches carry a `mask`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def top5_predictions(logits: jax.Array) -> jax.Array:
    """int32[B, k] class indices by decreasing logit, k = min(5, num_classes)."""
    k = min(5, logits.shape[-1])
    return jax.lax.top_k(logits, k)[1].astype(jnp.int32)


def classification_metrics(top_predictions: np.ndarray, labels: np.ndarray, num_classes: int):
    """Accuracy metrics from ranked predictions.

    top_predictions: int[N, k] classes by decreasing score (k >= 1); labels: int[N].
    Returns top1, top5 (fractions in [0, 1]; top5 uses the first min(5, k) columns),
    top1_error, top5_error, per_class (float[num_classes] top-1 accuracy; NaN for a class with no
    test examples) and num_examples.
    """
    preds = np.asarray(top_predictions)
    labels = np.asarray(labels)
    hit1 = preds[:, 0] == labels
    hit5 = (preds[:, :5] == labels[:, None]).any(axis=1)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    correct = np.bincount(labels, weights=hit1, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, correct / counts, np.nan)
    top1, top5 = float(hit1.mean()), float(hit5.mean())
    return {
        "top1": top1,
        "top5": top5,
        "top1_error": 1.0 - top1,
        "top5_error": 1.0 - top5,
        "per_class": per_class,
        "num_examples": int(len(labels)),
    }


def evaluate(predict_fn, source, num_classes: int) -> dict:
    """Runs `predict_fn(images uint8[B, H, W, C]) -> int32[B, k]` over one pass of `source`
    (a finite HostSource whose batches carry `mask`) and returns `classification_metrics`."""
    source.reset()
    preds, labels = [], []
    for batch in source:
        mask = batch["mask"]
        out = np.asarray(predict_fn(batch["image"]))
        preds.append(out[mask])
        labels.append(batch["label"][mask])
    return classification_metrics(np.concatenate(preds), np.concatenate(labels), num_classes)
