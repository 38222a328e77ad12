"""Linear probe: a frozen backbone's features, computed once, and an L2-regularised multinomial
logistic regression on them.

The backbone is never updated: `extract_features` runs `model.features(images, train=False)`
over a host source once and caches the result (`features_<split>.npz` in the workdir), so trying
several regularisation strengths costs one pass over the images. The regression is solved with
full-batch L-BFGS in one jitted function (`fit_logistic_regression`), checked in the tests against
scikit-learn's solver of the same objective.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from synth_jax import files


def logistic_loss(params, features, labels, l2: float):
    """mean_i CE(softmax(x_i W + b), y_i) + l2/2 * ||W||^2 (the bias is not regularised).

    Equals scikit-learn's LogisticRegression(C) objective divided by C * N for l2 = 1 / (C * N).
    """
    w, b = params
    logits = features @ w + b
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return ce + 0.5 * l2 * jnp.sum(w * w)


def fit_logistic_regression(
    features: jax.Array, labels: jax.Array, num_classes: int, l2: float, steps: int = 500
):
    """Minimises `logistic_loss` by L-BFGS from zero: returns (W float32[D, C], b float32[C]).

    features: float32[N, D]; labels: int32[N]. Runs `steps` iterations in one jitted loop.
    """
    features = jnp.asarray(features, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    return _fit(features, labels, num_classes, float(l2), int(steps))


@jax.jit(static_argnames=("num_classes", "steps"))
def _fit(features, labels, num_classes, l2, steps):
    params = (
        jnp.zeros((features.shape[1], num_classes), jnp.float32),
        jnp.zeros((num_classes,), jnp.float32),
    )
    loss = lambda p: logistic_loss(p, features, labels, l2)
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), None, length=steps)
    return params


def extract_features(features_fn, source, cache_path: str | None = None):
    """One pass of `features_fn(images uint8[B, H, W, C]) -> float[B, D]` over a finite source.

    Returns (features float32[N, D], labels int32[N]); with `cache_path`, loads them from there
    if present, else writes them there (atomically) for the next probe on the same backbone.
    """
    if cache_path and os.path.exists(cache_path):
        with np.load(cache_path) as cached:
            return cached["features"], cached["labels"]
    source.reset()
    feats, labels = [], []
    for batch in source:
        mask = batch["mask"]
        feats.append(np.asarray(features_fn(batch["image"]), np.float32)[mask])
        labels.append(batch["label"][mask].astype(np.int32))
    feats, labels = np.concatenate(feats), np.concatenate(labels)
    if cache_path:
        with files.atomic_path(cache_path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, features=feats, labels=labels)
    return feats, labels
