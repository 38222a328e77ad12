"""The contour and noise families from the command line: every data config loads and validates,
`synth-jax render` draws a labelled grid, `synth-jax export` writes PNGs that read back as the
renderer's images, `synth-jax bench render --config` reports throughput beside the sequential
reference and the suite has a GPU row per family, and a batch sharded over four devices renders
the same images."""

import json
import os

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from PIL import Image

from synth_jax import cli
from synth_jax.bench import suite
from synth_jax.config import load_config, load_config_file
from synth_jax.errors import UsageError
from synth_jax.fractals import FractalDataset, data_config, family
from synth_jax.fractals.preview import render_images
from synth_jax.train import pretrain

CONFIGS = [
    ("visualatom1k.py", "visualatom", 1000, 1_000_000),
    ("visualatom21k.py", "visualatom", 21_000, 21_000_000),
    ("rcdb1k.py", "rcdb", 1000, 1_000_000),
    ("rcdb21k.py", "rcdb", 21_000, 21_000_000),
    ("dead_leaves.py", "dead_leaves", 105_000, 105_000),
    ("dead_leaves.py:oriented,large", "dead_leaves", 1_300_000, 1_300_000),
    ("spectrum.py", "spectrum", 105_000, 105_000),
    ("spectrum.py:large", "spectrum", 1_300_000, 1_300_000),
]


@pytest.mark.parametrize("spec, name, classes, images", CONFIGS)
def test_published_scales_load_and_validate(spec, name, classes, images):
    config = load_config(os.path.join("configs", "data", spec))
    family.validate(config)
    assert config.family == name and config.num_classes == classes
    per_category = config.get("images_per_category", 1)
    assert classes * per_category == images


@pytest.mark.parametrize("arg", ["visualatom", "rcdb", "visualatom,21k,base", "rcdb,21k"])
def test_pretraining_configs_pass_their_checks(arg):
    config = load_config_file(f"configs/pretrain/contours_vit.py:{arg}")
    pretrain.check_config(config)
    assert config.data.family == arg.split(",")[0] and config.data.image_size == 224
    assert (config.data.num_classes, config.batch_size) == (
        (21_000, 8192) if "21k" in arg else (1000, 256)
    )


def test_config_arguments_are_checked():
    with pytest.raises(UsageError, match="squares"):
        load_config("configs/data/dead_leaves.py:hexagons")
    with pytest.raises(UsageError, match="large"):
        load_config("configs/data/spectrum.py:huge")
    with pytest.raises(UsageError, match="'rcdb' and 'visualatom' are alternatives"):
        load_config_file("configs/pretrain/contours_vit.py:rcdb,visualatom")
    with pytest.raises(UsageError, match="known: none"):
        load_config_file("configs/data/rcdb21k.py:white")


def test_render_writes_a_grid_of_the_small_rcdb(tmp_path, capsys):
    out = tmp_path / "rcdb.png"
    argv = [
        "render",
        "--config",
        "configs/data/rcdb1k.py:small",
        "--config.image_size=32",
        "--num",
        "4",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["family"] == "rcdb" and summary["classes_shown"] == 4
    assert summary["degenerate"] == 0 and 0 < summary["mean_fill"] < 1
    with Image.open(out) as grid:
        assert grid.size == (2 * 34, 2 * (32 + 12 + 2))


def test_export_writes_the_renderers_images(tmp_path, capsys):
    overrides = {"image_size": "32", "num_classes": "3", "images_per_category": "2"}
    argv = [
        "export",
        "--config",
        "configs/data/spectrum.py",
        "--out",
        str(tmp_path / "png"),
        *[f"--config.{k}={v}" for k, v in overrides.items()],
        "--num",
        "6",
        "--batch",
        "6",
    ]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 6
    dataset = FractalDataset(load_config("configs/data/spectrum.py", overrides))
    images, labels, _ = render_images(dataset, np.arange(6), dataset.config.seed, batch=6)
    for i in range(6):
        path = tmp_path / "png" / f"{int(labels[i]):05d}" / f"{i:08d}.png"
        with Image.open(path) as im:
            np.testing.assert_array_equal(np.asarray(im), np.asarray(images[i]))


def test_bench_render_reports_a_family(capsys):
    argv = (
        "bench render --config configs/data/spectrum.py --config.image_size=32 "
        "--batch 2 --repeats 1 --reference_images 1"
    ).split()
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["family"] == "spectrum" and result["images_per_sec"] > 0 and result["size"] == 32
    assert result["reference_images_per_sec"] > 0 and result["speedup_vs_reference"] > 0
    assert cli.main([*argv, "--config.no_such_key=1"]) == 2
    assert cli.main([*argv, "--reference_images", "-1"]) == 2


def test_the_suite_has_a_gpu_row_per_family_and_tables_it():
    configs = {os.path.basename(args[args.index("--config") + 1]) for _, args in suite.FAMILY_FULL}
    assert {"visualatom1k.py", "rcdb1k.py", "dead_leaves.py", "spectrum.py"} <= configs
    results = {
        "date": "2026-11-30",
        "command": "synth-jax bench suite",
        "ceilings": {
            "device": "gpu:H200",
            "jax": "0.10.2",
            "matmul_n": 8192,
            "bf16_matmul_tflops": 800.0,
            "copy_bytes": 1 << 31,
            "copy_gb_per_s": 4000.0,
        },
        "render": [],
        "families": [
            (
                "VisualAtom 224px",
                {
                    "images_per_sec": 5000.0,
                    "batch": 256,
                    "size": 224,
                    "reference_images_per_sec": 16.8,
                },
            )
        ],
        "train": [],
    }
    assert "| VisualAtom 224px | 5,000.0 | 256 | 224 | 16.80 |" in suite.table(results)


@pytest.mark.parametrize(
    "name, overrides",
    [
        (
            "visualatom",
            dict(
                num_classes=4,
                image_size=32,
                canvas_size=128,
                max_vertices=200,
                max_orbits=24,
                stroke_samples=1 << 13,
            ),
        ),
        ("dead_leaves", dict(num_classes=8, image_size=32)),
    ],
)
def test_same_images_on_one_and_four_devices(name, overrides):
    """Each device renders its own slice (its own stroke pool, its own painter loop): the images
    are those of one device."""
    assert len(jax.devices()) == 4, "tests run with 4 fake CPU devices (conftest)"
    dataset = FractalDataset(data_config(name, **overrides))
    indices = dataset.indices_for_step(3, 1, 8)
    single = jax.jit(dataset.render_with_info)(3, jax.device_put(indices, jax.devices()[0]))
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    batch = NamedSharding(mesh, PartitionSpec("data"))
    fn = jax.jit(dataset.render_with_info, in_shardings=(None, batch), out_shardings=batch)
    images, labels, info = fn(3, jax.device_put(indices, batch))
    assert {s.data.shape for s in images.addressable_shards} == {(2, 32, 32, 3)}
    np.testing.assert_array_equal(np.asarray(images), np.asarray(single[0]))
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(single[1]))
    assert not np.asarray(info["degenerate"]).any()
