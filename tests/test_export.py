"""`synth-jax export`: PNG tree and TFDS ArrayRecord round trips, resuming, refusing to mix."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from synth_jax import cli
from synth_jax.config import load_config
from synth_jax.fractals import FractalDataset

OVERRIDES = {
    "num_classes": "3",
    "image_size": "32",
    "points": "2048",
    "chains": "128",
    "burn_in": "16",
    "pad": "2",
    "search_points": "8192",
    "search_size": "64",
}
CONFIG = ["--config", "configs/data/onepfrac.py"] + [
    f"--config.{k}={v}" for k, v in OVERRIDES.items()
]


@pytest.fixture(scope="module")
def expected():
    dataset = FractalDataset(load_config("configs/data/onepfrac.py", OVERRIDES))
    images, labels = jax.jit(dataset.render)(0, np.arange(3, dtype=np.int32))
    return np.asarray(images), np.asarray(labels)


def test_png_export_round_trip_and_resume(tmp_path, expected, capsys):
    out = str(tmp_path / "png")
    assert cli.main(["export", *CONFIG, "--out", out, "--format", "png"]) == 0
    files = sorted(
        os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs
    )
    assert files == [
        "00000/00000000.png",
        "00001/00000001.png",
        "00002/00000002.png",
        "export.json",
    ]
    images, labels = expected
    for i in range(3):
        with Image.open(os.path.join(out, f"{labels[i]:05d}", f"{i:08d}.png")) as im:
            np.testing.assert_array_equal(np.asarray(im), images[i])
    # An interrupted export resumes: only the missing file is rendered again.
    os.remove(os.path.join(out, "00001", "00000001.png"))
    capsys.readouterr()
    assert cli.main(["export", *CONFIG, "--out", out, "--format", "png"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["written_now"] == 1
    with Image.open(os.path.join(out, "00001", "00000001.png")) as im:
        np.testing.assert_array_equal(np.asarray(im), images[1])
    # Another config into the same directory is refused, one line, exit 2.
    assert cli.main(["export", *CONFIG, "--config.seed=9", "--out", out]) == 2
    assert "export.json" in capsys.readouterr().err
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]


def test_tfds_export_reads_back_exactly_without_tensorflow(tmp_path, expected):
    import tensorflow_datasets as tfds

    out = str(tmp_path / "tfds")
    argv = ["export", *CONFIG, "--out", out, "--format", "tfds", "--num", "3", "--batch", "2"]
    assert cli.main(argv) == 0
    source = tfds.data_source("fractals_onepfrac", data_dir=out, split="train")
    assert len(source) == 3
    images, labels = expected
    for i in range(3):
        record = source[i]
        assert int(record["index"]) == i and int(record["label"]) == labels[i]
        np.testing.assert_array_equal(record["image"], images[i])
    assert sorted(os.listdir(out)) == ["export.json", "fractals_onepfrac"]  # staging removed


def test_bad_export_arguments(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert cli.main(["export", *CONFIG, "--out", out, "--format", "zip"]) == 2
    assert "--format" in capsys.readouterr().err
    assert cli.main(["export", *CONFIG, "--out", out, "--num", "4"]) == 2
    assert "--num" in capsys.readouterr().err
