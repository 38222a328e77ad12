"""Supervised pre-training on a real TFDS dataset (the baseline), through `synth-jax pretrain`."""

import json
import os

import numpy as np
import pytest

from synth_jax import cli
from synth_jax.data import importer, readers

FASHION = "/usr/share/datasets/fashion-mnist"
pytestmark = pytest.mark.skipif(
    not os.path.isdir(FASHION), reason="Debian package dataset-fashion-mnist is not installed"
)
CONFIG = "configs/pretrain/real_supervised.py:cpu"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    local = readers.read_local(FASHION)
    train, test = local.splits["train"], local.splits["test"]
    np.savez(
        root / "fashion_tiny.npz",
        train_images=train.images[:640],
        train_labels=train.labels[:640],
        test_images=test.images[:64],
        test_labels=test.labels[:64],
    )
    importer.import_dataset("fashion_tiny", str(root / "fashion_tiny.npz"), str(root / "tfds"))
    return str(root / "tfds")


def _pretrain(workdir, data_dir, *extra):
    return cli.main(
        [
            "pretrain",
            "--config",
            CONFIG,
            "--workdir",
            str(workdir),
            "--config.data.name=fashion_tiny",
            f"--config.data.data_dir={data_dir}",
            "--config.model.name=mu/4",
            "--config.batch_size=32",
            "--config.total_steps=40",
            "--config.log_every_steps=5",
            "--config.optim.lr=0.01",
            "--config.optim.warmup_steps=5",
            *extra,
        ]
    )


def test_real_data_pretraining_learns_and_records_its_source(tmp_path, data_dir):
    assert _pretrain(tmp_path / "run", data_dir) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "done" and summary["steps"] == 40
    assert summary["pretrain_family"] == "fashion_tiny"
    assert summary["pretrain_classes"] == 10 and summary["pretrain_images"] == 640
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0] - 0.2, losses  # learning, starting from ln(10) = 2.30


def test_missing_real_dataset_says_how_to_import_it(tmp_path, data_dir, capsys):
    code = _pretrain(tmp_path / "run", data_dir, "--config.data.name=cifar10")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "synth-jax data import cifar10" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
