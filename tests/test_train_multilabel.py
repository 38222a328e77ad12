"""Multi-label training (Anderson & Farrell's weighted binary cross-entropy), and CPU-sized
pre-trainings on the multi_instance, ofdb and mixture families whose loss falls; a fine-tune
from a multi-label pre-training."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_train_sources import BlobImages, tiny_config

from synth_jax.config import load_config_file
from synth_jax.fractals import family
from synth_jax.models import model_config
from synth_jax.train import augment, checkpoint, losses, pretrain, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs", "pretrain")


def test_weighted_sigmoid_cross_entropy_matches_the_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 7)) * 3
    labels = (rng.uniform(size=(5, 7)) < 0.3).astype(np.int32)
    labels[0] = 0
    labels[0, 2] = 1  # every sample has a positive
    targets = np.asarray(augment.one_hot_targets(jnp.asarray(labels), 7, 0.0))
    want = 0.0
    for b in range(5):
        w = 7 / labels[b].sum()
        for c in range(7):
            p = 1 / (1 + np.exp(-logits[b, c]))
            want += -w * labels[b, c] * np.log(p) - (1 - labels[b, c]) * np.log(1 - p)
    want /= 5 * 7
    got = losses.classification_loss(jnp.asarray(logits), jnp.asarray(targets), labels)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    # Class ids: the softmax cross-entropy, as before.
    ids = jnp.array([0, 3, 6, 1, 2])
    soft = augment.one_hot_targets(ids, 7, 0.0)
    np.testing.assert_allclose(
        float(losses.classification_loss(jnp.asarray(logits), soft, ids)),
        np.mean([-jax.nn.log_softmax(logits[b])[int(ids[b])] for b in range(5)]),
        rtol=1e-5,
    )


def test_accuracy_of_multi_hot_labels_is_top1_in_positives():
    logits = jnp.array([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    labels = jnp.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(losses.correct(logits, labels), [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(losses.correct(logits, jnp.array([1, 1, 2])), [1.0, 0.0, 1.0])
    t = np.asarray(augment.one_hot_targets(labels, 3, 0.3))
    np.testing.assert_allclose(t[0], [0.8, 0.8, 0.1], rtol=1e-6)


def pretrain_tiny(workdir: str, config: str, *overrides) -> list:
    """Runs a `:tiny` pre-training config; returns its metrics rows."""
    argv = ["--config", os.path.join(CONFIGS, config), "--workdir", workdir, *overrides]
    assert pretrain.main(argv) == 0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def falls(rows, margin):
    first = np.mean([r["loss"] for r in rows[:5]])
    last = np.mean([r["loss"] for r in rows[-10:]])  # per-batch losses are noisy
    assert last < first - margin, (first, last)
    return first, last


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("multi"))
    return workdir, pretrain_tiny(workdir, "multi_instance_resnet50.py:tiny")


def test_multi_instance_pretraining_loss_falls(multi_run):
    workdir, rows = multi_run
    # Zero head: every logit 0, loss = ln 2 (1 + (C - k) / C) with k positives of C = 4 classes.
    first, _ = falls(rows, 0.1)
    assert 0.7 < first < 1.4
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["pretrain_family"] == "multi_instance" and summary["pretrain_classes"] == 4
    assert 0.0 <= summary["final_accuracy"] <= 1.0


def test_fine_tune_from_a_multi_label_pretraining(multi_run, tmp_path):
    """The single-label trainer starts from the multi-label run's backbone (head re-initialised)."""
    workdir, _ = multi_run
    params, _ = checkpoint.load_params(workdir)
    config = tiny_config(2, image_size=32, model=model_config("mu/4"))
    config.optim.update(dict(lr=1e-7, warmup_steps=0))  # the backbone stays where it was
    summary, model = trainer.train(
        config,
        str(tmp_path),
        BlobImages(4, 64, 32),
        num_classes=4,
        init_params=params,
        dont_load=("head/.*",),
    )
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
    tuned = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    np.testing.assert_allclose(
        tuned["embedding"]["kernel"], params["embedding"]["kernel"], atol=1e-4
    )


def test_ofdb_pretraining_loss_falls(tmp_path):
    rows = pretrain_tiny(str(tmp_path), "ofdb_vit_tiny.py:tiny")
    falls(rows, 0.1)


def test_mixture_pretraining_loss_falls(tmp_path):
    rows = pretrain_tiny(str(tmp_path), "mixture_vit_tiny.py:tiny")
    falls(rows, 0.1)
    with open(os.path.join(str(tmp_path), "summary.json")) as f:
        summary = json.load(f)
    assert summary["pretrain_family"] == "mixture" and summary["pretrain_classes"] == 5


@pytest.mark.parametrize(
    "spec",
    (
        "data/multi_instance_1k.py data/ofdb_1k.py data/ofdb_1k.py:public_row data/ofdb_21k.py "
        "data/mixture.py data/mixture.py:multi data/sigma_random.py:af "
        "pretrain/multi_instance_resnet50.py pretrain/multi_instance_resnet50.py:short "
        "pretrain/ofdb_vit_tiny.py "
        "pretrain/ofdb_vit_tiny.py:21k pretrain/mixture_vit_tiny.py "
        "pretrain/mixture_vit_tiny.py:multi pretrain/mixture_vit_tiny.py:tiny_multi"
    ).split(),
)
def test_configs_pass_their_checks(spec):
    config = load_config_file(os.path.join(ROOT, "configs", spec))
    if spec.startswith("data/"):
        family.validate(config)
    else:
        pretrain.check_config(config)
