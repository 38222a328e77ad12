"""Each extension point takes a new entry without an edit of the package: a toy data family (a
disc per category), a one-layer model, a parameter-norm evaluator and a nearest-centroid
transfer mode (tests/toys/), registered by the config files that use them and run end to end
through the CLI."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from synth_jax import cli
from synth_jax.config import load_config
from synth_jax.errors import UsageError
from synth_jax.evaluators import EVALUATORS
from synth_jax.fractals import FAMILIES, FractalDataset
from synth_jax.models import MODELS
from synth_jax.train import checkpoint
from synth_jax.transfer import results
from synth_jax.transfer.finetune import MODES

TOYS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toys")
DISC = os.path.join(TOYS, "disc_config.py")
PRETRAIN = os.path.join(TOYS, "pretrain_config.py")
FINETUNE = os.path.join(TOYS, "finetune_config.py")


@pytest.fixture(scope="module", autouse=True)
def restore_registries():
    """The toys' registrations end with this module (other tests list the built-ins)."""
    saved = [(table, dict(table._entries)) for table in (FAMILIES, MODELS, MODES, EVALUATORS)]
    yield
    for table, entries in saved:
        table._entries = entries


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """`synth-jax pretrain` on the disc family with the one-layer model and the evaluator."""
    workdir = str(tmp_path_factory.mktemp("toys") / "pretrain")
    assert cli.main(["pretrain", "--config", PRETRAIN, "--workdir", workdir]) == 0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = {row["step"]: row for row in map(json.loads, f)}
    with open(os.path.join(workdir, "summary.json")) as f:
        return workdir, rows, json.load(f)


def test_a_new_family(pretrained, tmp_path, capsys):
    out = str(tmp_path / "discs.png")
    assert cli.main(["render", "--config", DISC, "--num", "8", "--out", out]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["family"] == "disc" and summary["classes_shown"] == 4
    with Image.open(out) as grid:
        assert grid.size == (3 * 34, 3 * (32 + 12 + 2))
    dataset = FractalDataset(load_config(DISC))
    images, labels = dataset.render(0, np.arange(16, dtype=np.int32))
    fill = np.asarray(images)[..., 0].mean(axis=(1, 2)) / 255
    assert np.asarray(labels).tolist() == [c for c in range(4) for _ in range(4)]
    # Larger categories draw larger discs: area pi r^2 / 4 of the [-1, 1]^2 square.
    means = fill.reshape(4, 4).mean(1)
    assert np.all(np.diff(means) > 0.05)
    np.testing.assert_allclose(means, np.pi * np.linspace(0.15, 0.85, 4) ** 2 / 4, atol=0.05)
    assert pretrained[2]["pretrain_family"] == "disc"


def test_a_new_model(pretrained):
    workdir, rows, summary = pretrained
    params, config = checkpoint.load_params(workdir)
    assert config["model"] == {"name": "OneLayer", "dtype": "float32", "head_zero_init": True}
    assert {k: v.shape for k, v in params["head"].items()} == {
        "kernel": (32 * 32 * 3, 4),
        "bias": (4,),
    }
    assert rows[30]["accuracy"] > 0.9  # four disc sizes: linearly separable pixels


def test_a_new_evaluator(pretrained):
    _, rows, summary = pretrained
    norms = [rows[step]["params/norm"] for step in (10, 20, 30)]
    assert all("params/norm" not in rows[step] for step in (5, 15, 25))
    assert "loss" in rows[10] and len(set(norms)) == 3  # logged beside the loss, as it trains
    assert summary["evals"]["params"]["norm"] == norms[-1]


def test_a_new_transfer_mode(pretrained, tmp_path, capsys):
    rng = np.random.default_rng(0)
    grid = np.linspace(-1, 1, 16)
    r2 = grid[:, None] ** 2 + grid[None, :] ** 2

    def discs(count):
        labels = np.repeat(np.arange(4), count)
        radius = np.linspace(0.2, 0.9, 4)[labels] + rng.uniform(-0.05, 0.05, len(labels))
        images = (r2[None] <= radius[:, None, None] ** 2) * 200 + rng.integers(0, 40, (1, 16, 16))
        return images.astype(np.uint8), labels

    (train_x, train_y), (test_x, test_y) = discs(20), discs(8)
    npz = str(tmp_path / "discs.npz")
    np.savez(
        npz, train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y
    )
    data_dir = str(tmp_path / "tfds")
    assert cli.main(["data", "import", "toy_discs", "--from", npz, "--data_dir", data_dir]) == 0
    csv = str(tmp_path / "results.csv")
    argv = [
        "finetune",
        "--config",
        FINETUNE,
        "--workdir",
        str(tmp_path / "centroid"),
        f"--config.init_from={pretrained[0]}",
        f"--config.data.data_dir={data_dir}",
        f"--config.results_csv={csv}",
    ]
    assert cli.main(argv) == 0
    assert "centroid top-1" in capsys.readouterr().out
    (row,) = results.read_rows(csv)
    assert row["mode"] == "centroid" and row["pretrain_family"] == "disc"
    assert float(row["top1"]) > 0.9


def test_a_table_refuses_what_would_break_it():
    from toys import disc, one_layer

    with pytest.raises(ValueError, match="built in"):
        FAMILIES.register("fractaldb", disc)  # a built-in name stays the built-in
    with pytest.raises(TypeError, match="renderer"):
        FAMILIES.register("half_family", one_layer)  # lacks the family attributes
    with pytest.raises(ValueError, match="lower_case"):
        FAMILIES.register("Disc", disc)
    assert FAMILIES.register("disc", disc) is disc and FAMILIES.register("disc", disc) is disc
    with pytest.raises(UsageError, match="'family'='discs': expected one of .*disc"):
        FAMILIES.lookup("discs")
