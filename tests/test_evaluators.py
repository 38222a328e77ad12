"""Evaluators: the k-NN classifier against a plain NumPy reference, config errors that name the
key, and a k-NN evaluator running during cpu_tiny on Fashion-MNIST, logged beside the loss."""

import json
import os

import ml_collections
import numpy as np
import pytest

from synth_jax import cli
from synth_jax.errors import UsageError
from synth_jax.evaluators import eval_config, knn, validate_evals
from synth_jax.train import pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_TINY = os.path.join(ROOT, "configs", "pretrain", "cpu_tiny.py")
FASHION = "/usr/share/datasets/fashion-mnist"


def reference_knn(queries, references, labels, num_classes, k, temperature):
    """DINO's k-NN classifier written out one query at a time (float64)."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    queries, references = unit(queries), unit(references)
    scores = np.zeros((len(queries), num_classes))
    for i, query in enumerate(queries):
        similarity = references @ query
        for j in np.argsort(-similarity)[:k]:
            scores[i, labels[j]] += np.exp(similarity[j] / temperature)
    return scores


def test_knn_matches_the_reference():
    rng = np.random.default_rng(0)
    queries, references = rng.normal(size=(300, 16)), rng.normal(size=(500, 16))
    labels = rng.integers(0, 7, 500)
    expected = reference_knn(queries, references, labels, 7, 20, 0.07)
    scores = knn.knn_scores(queries, references, labels, 7, 20, 0.07)
    np.testing.assert_allclose(np.asarray(scores), expected, rtol=1e-4)
    # Chunked (256 queries per call, the last one padded): the same ranking.
    top = knn.knn_top5(queries, references, labels, 7, 20, 0.07)
    assert top.shape == (300, 5)
    np.testing.assert_array_equal(top[:, 0], np.argmax(expected, axis=1))


@pytest.mark.parametrize(
    "section, needle",
    [
        (dict(type="nope"), "evals.x.type"),
        (dict(type="knn", k=0), "evals.x.k"),
        (dict(type="knn", every_steps=-1), "evals.x.every_steps"),
        (dict(type="knn", neighbours=5), "evals.x.neighbours"),
        (dict(type="classification", split=""), "evals.x.split"),
    ],
)
def test_bad_evaluator_configs_name_the_key(section, needle):
    kind = section.pop("type")
    config = eval_config(kind) if kind != "nope" else ml_collections.ConfigDict({"type": kind})
    with config.ignore_type():
        config.update(section)
    with pytest.raises(UsageError, match=needle.replace(".", r"\.")):
        validate_evals(ml_collections.ConfigDict({"x": config}))


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    if not os.path.isdir(FASHION):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    argv = ["data", "import", "fashion_mnist", "--from", FASHION, "--data_dir", data_dir]
    assert cli.main(argv) == 0
    return data_dir


def test_cpu_tiny_logs_knn_accuracy_beside_the_loss(fashion_dir, tmp_path, capsys):
    workdir = str(tmp_path / "tiny")
    argv = [
        "--config",
        f"{CPU_TINY}:mu,knn",
        "--workdir",
        workdir,
        f"--config.evals.knn.data.data_dir={fashion_dir}",
        "--config.evals.knn.every_steps=10",
        "--config.data.num_classes=4",
        "--config.data.search_points=5000",
        "--config.total_steps=20",
        "--config.batch_size=32",
        "--config.log_every_steps=5",
        "--config.checkpoint.every_steps=20",
    ]
    assert pretrain.main(argv) == 0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = {row["step"]: row for row in map(json.loads, f)}
    assert sorted(rows) == [5, 10, 15, 20]
    for step in (10, 20):  # every 10 steps, in the same row as the loss
        assert "loss" in rows[step] and 0.3 < rows[step]["knn/top1"] <= rows[step]["knn/top5"]
    assert "knn/top1" not in rows[5] and "knn/top1" not in rows[15]
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["evals"]["knn"]["top1"] == rows[20]["knn/top1"]
    assert summary["evals"]["knn"]["num_examples"] == 1000  # test[:1000]


def test_a_missing_evaluation_dataset_stops_before_training(tmp_path):
    workdir = tmp_path / "w"
    argv = [
        "--config",
        f"{CPU_TINY}:mu,knn",
        "--workdir",
        str(workdir),
        f"--config.evals.knn.data.data_dir={tmp_path}",
        "--config.data.num_classes=2",
        "--config.data.search_points=2000",
    ]
    with pytest.raises(UsageError, match="synth-jax data import fashion_mnist"):
        pretrain.main(argv)
    assert not (workdir / "config.json").exists()
