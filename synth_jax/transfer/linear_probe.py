"""Transfer mode `linear_probe`: a frozen backbone's features, computed once, and an
L2-regularised multinomial logistic regression on them (the one linear probe of synth_jax).

The backbone is never updated: `extract_features` runs `model.features(images, train=False)`
over a host source once and caches the result (`features_<split>.npz` in the workdir), so trying
several regularisation strengths costs one pass over the images. The regression is solved with
full-batch L-BFGS in one jitted function (`fit_logistic_regression`), checked in the tests against
scikit-learn's solver of the same objective. `shots` or `fraction` select the training examples.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from synth_jax import files
from synth_jax.config import check, config_to_dict
from synth_jax.data import pipeline
from synth_jax.evaluators import classification, inference
from synth_jax.models import check_model_config, create_model
from synth_jax.train import mesh as mesh_lib
from synth_jax.transfer import runs
from synth_jax.transfer.pretrained import load_into

DEFAULTS = {"linear_probe": dict(l2=1e-4, steps=500)}  # L2 strength, L-BFGS iterations


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
    feats, labels = inference.run_over(features_fn, source)
    feats = feats.astype(np.float32)
    if cache_path:
        with files.atomic_path(cache_path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, features=feats, labels=labels)
    return feats, labels


def validate(config) -> None:
    check(config.linear_probe, "l2", lambda v: v > 0, "a positive number", "linear_probe.")
    check_model_config(config.model, config.image_size)


def _probe_digest(config, indices) -> str:
    """Names the feature cache after everything the features depend on."""
    key = json.dumps(
        [
            config.init_from,
            config_to_dict(config.model),
            config.image_size,
            config_to_dict(config.data),
            list(config.augment.mean),
            list(config.augment.std),
        ],
        default=str,
    ).encode()
    key += b"" if indices is None else np.asarray(indices, np.int64).tobytes()
    return hashlib.sha1(key).hexdigest()[:12]


def run_probe(config, workdir, run_workdir, seed, pretrain, indices=None):
    """Frozen backbone -> cached features -> logistic regression -> test metrics and row.

    Returns the result dict; `result["backbone"]` is the model used (its non-head parameters are
    exactly the pre-trained ones).
    """
    finished = runs.done(run_workdir)
    if finished is not None:
        return finished
    if jax.process_index() == 0:
        files.write_json(os.path.join(run_workdir, "config.json"), config_to_dict(config))
    train_source = pipeline.make_source(
        config.data, config.data.train_split, config.eval_batch_size, seed, False, indices
    )
    num_classes = train_source.num_classes
    model = create_model(config.model, num_classes, config.image_size, nnx.Rngs(params=seed))
    if config.init_from:
        load_into(model, config.model, config.init_from, tuple(config.dont_load))
    mesh = mesh_lib.make_mesh(config.mesh)
    features_fn = inference.model_fn(
        model, mesh, config.image_size, config.augment.mean, config.augment.std, "features"
    )
    digest = _probe_digest(config, indices)
    train_x, train_y = extract_features(
        features_fn, train_source, os.path.join(run_workdir, f"features_train_{digest}.npz")
    )
    eval_source = pipeline.make_source(
        config.data, config.data.eval_split, config.eval_batch_size, 0, False
    )
    test_x, test_y = extract_features(
        features_fn, eval_source, os.path.join(run_workdir, f"features_test_{digest}.npz")
    )
    w, b = fit_logistic_regression(
        train_x, train_y, num_classes, config.linear_probe.l2, config.linear_probe.steps
    )
    top = np.asarray(inference.top5_predictions(test_x @ w + b))
    metrics = classification.classification_metrics(top, test_y, num_classes)
    if jax.process_index() == 0:
        with files.atomic_path(os.path.join(run_workdir, "head.npz")) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, kernel=np.asarray(w), bias=np.asarray(b))
    extra = dict(train_examples=len(train_y), l2=config.linear_probe.l2)
    mode = "linear_probe"
    result = runs.finish(config, workdir, run_workdir, seed, metrics, mode, pretrain, extra)
    return {**result, "backbone": model}


def run(config, workdir: str) -> dict:
    return runs.repeat_over_seeds(config, workdir, run_probe)
