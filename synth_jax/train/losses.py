"""The training objectives and their accuracy, chosen by the shape of the labels.

A data source gives either class ids int32[B] (one class per image: softmax cross-entropy on
soft targets float32[B, C], which mixup, cutmix and label smoothing make) or multi-hot labels
int32[B, C] (several classes per image, Anderson & Farrell's multi-instance fractals: the
weighted binary cross-entropy of their `multilabel.py`). The shape is static, so the choice is
made when the step is traced.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def weighted_sigmoid_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Anderson & Farrell's multi-label loss: mean over B x C of
    -w_b y log sigmoid(z) - (1 - y) log(1 - sigmoid(z)), with w_b = C / k_b and k_b the number of
    positive classes of sample b (the target mass sum_c y_bc, at least 1, once mixup or label
    smoothing has made the targets soft): each sample's positives weigh as much as its C
    negatives. logits, targets: float[B, C] -> scalar."""
    logits = logits.astype(jnp.float32)
    num_classes = logits.shape[-1]
    positives = jnp.maximum(jnp.sum(targets, axis=-1, keepdims=True), 1.0)
    weight = num_classes / positives
    # -log sigmoid(z) = softplus(-z); -log(1 - sigmoid(z)) = softplus(z)
    terms = weight * targets * jax.nn.softplus(-logits) + (1 - targets) * jax.nn.softplus(logits)
    return jnp.mean(terms)


def classification_loss(logits: jax.Array, targets: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy for class ids labels int[B]; weighted_sigmoid_cross_entropy for
    multi-hot labels int[B, C]. targets: soft targets float32[B, C] -> mean loss."""
    if labels.ndim == 2:
        return weighted_sigmoid_cross_entropy(logits, targets)
    return optax.softmax_cross_entropy(logits, targets).mean()


def correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """float32[B]: 1 where the top logit is the class (labels int[B]) or one of the image's
    classes (multi-hot labels int[B, C]: "top-1 in positives", which equals top-1 accuracy
    when each image has one class)."""
    top = jnp.argmax(logits, axis=-1)
    if labels.ndim == 2:
        hit = jnp.take_along_axis(labels, top[:, None], axis=-1)[:, 0] > 0
    else:
        hit = top == labels
    return hit.astype(jnp.float32)
