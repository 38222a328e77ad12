"""k-nearest-neighbour classification on a frozen model's pre-logit features (the evaluator
`type="knn"`): how well a representation transfers, measured while a pre-training runs.

The monitor of InstDisc (Wu et al. 2018) and DINO (Caron et al. 2021): features of a reference
split and of query images, L2-normalised; each query takes its k most cosine-similar references
and scores class c by sum over those of label c of exp(similarity / T). Defaults are DINO's
(k = 20, T = 0.07) on a cheap subset: 5,000 reference and 1,000 query images.

    config.evals.knn = eval_config("knn", every_steps=100,
                                   data=tfds_config(name="fashion_mnist", data_dir=DIR))
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.config import check
from synth_jax.data import pipeline
from synth_jax.errors import UsageError
from synth_jax.evaluators import classification, inference

DEFAULTS = dict(
    data=pipeline.tfds_config(),  # the TFDS dataset (name, data_dir, ...)
    train_split="train[:5000]",  # the references
    test_split="test[:1000]",  # the queries
    k=20,
    temperature=0.07,
    batch_size=256,  # global; a multiple of the data-parallel size and of the process count
)
QUERY_CHUNK = 256  # queries scored per device call: memory Q x N stays bounded


def normalise(features: jax.Array) -> jax.Array:
    """Rows scaled to unit L2 norm (a zero row stays zero). float[N, D]."""
    norm = jnp.linalg.norm(features, axis=-1, keepdims=True)
    return features / jnp.maximum(norm, 1e-12)


@functools.partial(jax.jit, static_argnames=("num_classes", "k"))
def knn_scores(queries, references, reference_labels, num_classes: int, k: int, temperature):
    """Class scores float32[Q, C] of queries float[Q, D] against references float[N, D] with
    labels int[N]: score_c = sum over the k nearest references (cosine) of label c of
    exp(similarity / temperature)."""
    similarity = normalise(queries) @ normalise(references).T
    nearest, index = jax.lax.top_k(similarity, k)
    votes = jax.nn.one_hot(reference_labels[index], num_classes, dtype=jnp.float32)
    return jnp.sum(votes * jnp.exp(nearest / temperature)[..., None], axis=1)


def knn_top5(queries, references, reference_labels, num_classes, k, temperature) -> np.ndarray:
    """Classes by decreasing k-NN score, int32[Q, min(5, C)], in fixed-size chunks of queries."""
    queries = np.asarray(queries, np.float32)
    references = jnp.asarray(references, jnp.float32)
    reference_labels = jnp.asarray(reference_labels, jnp.int32)
    out = []
    for start in range(0, len(queries), QUERY_CHUNK):
        chunk = queries[start : start + QUERY_CHUNK]
        n = len(chunk)
        chunk = np.concatenate([chunk, np.zeros((QUERY_CHUNK - n, chunk.shape[1]), np.float32)])
        scores = knn_scores(chunk, references, reference_labels, num_classes, k, temperature)
        out.append(np.asarray(inference.top5_predictions(scores))[:n])
    return np.concatenate(out)


def validate(config, prefix: str) -> None:
    positive = lambda v: isinstance(v, int) and v >= 1
    check(config, "k", positive, "a positive integer", prefix)
    check(config, "temperature", lambda v: v > 0, "a positive number", prefix)
    check(config, "batch_size", positive, "a positive integer", prefix)
    for key in ("train_split", "test_split"):
        check(config, key, lambda v: isinstance(v, str) and v, "a split name", prefix)


class Evaluator:
    """k-NN top-1/top-5 of `test_split` against `train_split`, on the model's features."""

    def __init__(self, config, context):
        self.context = context
        self.k, self.temperature = int(config.k), float(config.temperature)
        make = lambda split: pipeline.make_source(config.data, split, config.batch_size, 0, False)
        self.references, self.queries = make(config.train_split), make(config.test_split)
        self.num_classes = self.references.num_classes
        if self.k > self.references.num_examples:
            raise UsageError(
                f"config key '{context.name}.k'={self.k}: more than the "
                f"{self.references.num_examples} reference images of {config.train_split!r}"
            )

    def run(self, model) -> dict:
        c = self.context
        features = inference.model_fn(model, c.mesh, c.image_size, c.mean, c.std, "features")
        ref, ref_labels = map(inference.gather_hosts, inference.run_over(features, self.references))
        query, labels = map(inference.gather_hosts, inference.run_over(features, self.queries))
        top = knn_top5(query, ref, ref_labels, self.num_classes, self.k, self.temperature)
        return classification.classification_metrics(top, labels, self.num_classes)

    def close(self) -> None:
        self.references.close()
        self.queries.close()
