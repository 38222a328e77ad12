"""The sweep report, written from a synthetic results table with a known law behind it."""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np
import pytest

from synth_jax.experiments import grid, report
from synth_jax.transfer import results

SIZES = (16, 64, 256, 1024, 4096)
SEEDS = (0, 1)
TRUE = {"D": 2.0, "alpha": 0.5, "C": 0.1}  # error = D n^-alpha + C
SCRATCH_ERROR = 0.45


def sweep_config():
    config = ml_collections.ConfigDict()
    config.name = "synthetic"
    config.pretrain = ml_collections.ConfigDict(
        {"data": {"family": "onepfrac", "num_classes": 16}, "total_steps": 10}
    )
    config.finetune = ml_collections.ConfigDict(
        {"seed": 0, "init_from": "", "results_csv": "", "dataset": "digits"}
    )
    config.axes = [{"pretrain.data.num_classes": list(SIZES)}, {"finetune.seed": list(SEEDS)}]
    config.scratch = True
    config.law = ml_collections.ConfigDict(
        {
            "name": "mikami",
            "x": "pretrain_images",
            "y": "top1_error",
            "group": ["model", "dataset", "mode"],
            "fix": {},
            "bootstrap": 100,
            "holdout": 1,
            "target": 0.15,
            "seed": 0,
        }
    )
    config.report = ml_collections.ConfigDict(
        {"families": ["onepfrac"], "samples": 4, "image_size": 32}
    )
    return config


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A sweep workdir whose results.csv follows the law exactly, up to 1% noise."""
    workdir = str(tmp_path_factory.mktemp("sweep"))
    config = sweep_config()
    cells = grid.expand(config)
    rng = np.random.default_rng(0)
    for cell in cells:
        _, run_dir = grid.cell_dirs(workdir, cell)
        if cell.scratch:
            n, error = None, SCRATCH_ERROR + 0.01 * rng.standard_normal()
        else:
            n = cell.pretrain.data.num_classes
            error = TRUE["D"] * n ** -TRUE["alpha"] + TRUE["C"]
            error *= 1 + 0.01 * rng.standard_normal()
        results.append_row(
            os.path.join(workdir, "results.csv"),
            {
                "run_id": cell.cell_id,
                "pretrain_family": "scratch" if cell.scratch else "onepfrac",
                "pretrain_images": n,
                "model": "Ti/4",
                "dataset": "digits",
                "mode": "full",
                "seed": cell.finetune.seed,
                "top1": 1 - error,
                "top1_error": error,
                "workdir": run_dir,
            },
        )
        if not cell.scratch:  # a pre-training curve for the report to draw
            metrics = os.path.join(workdir, "pretrain", cell.pretrain_id, "metrics.jsonl")
            os.makedirs(os.path.dirname(metrics), exist_ok=True)
            with open(metrics, "w") as f:
                for step in range(1, 11):
                    f.write(json.dumps({"step": step, "loss": 3.0 / step, "accuracy": step / 10}))
                    f.write("\n")
    # a row of another sweep in the same table must be ignored
    results.append_row(
        os.path.join(workdir, "results.csv"),
        {"run_id": "other", "pretrain_images": 10, "top1_error": 0.9, "workdir": "/x/finetune/zz"},
    )
    path = report.write(config, cells, workdir, out=open(os.devnull, "w"))
    numbers = json.load(open(os.path.join(workdir, "report.json")))
    return workdir, path, numbers


def test_report_files_exist(written):
    workdir, path, _ = written
    assert path == os.path.join(workdir, "report.md")
    figures = sorted(os.listdir(os.path.join(workdir, "figures")))
    assert figures == ["learning_curve_0.png", "pretrain_curves.png", "samples.png"]
    for name in figures:
        with open(os.path.join(workdir, "figures", name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    text = open(path).read()
    for name in figures:
        assert f"](figures/{name})" in text


def test_report_recovers_the_law_and_its_interval(written):
    _, _, numbers = written
    (group,) = numbers["groups"]
    assert group["group"] == {"model": "Ti/4", "dataset": "digits", "mode": "full"}
    assert len(group["x"]) == len(SIZES) * len(SEEDS)  # the foreign row is not in it
    fit = group["fit"]
    assert fit["converged"]
    assert fit["params"]["alpha"] == pytest.approx(TRUE["alpha"], abs=0.05)
    assert fit["params"]["C"] == pytest.approx(TRUE["C"], abs=0.01)
    lo, hi = fit["ci"]["alpha"]
    assert lo <= TRUE["alpha"] <= hi
    band = group["band"]
    assert all(a <= m <= b for a, m, b in zip(band["lower"], band["mean"], band["upper"]))


def test_report_compares_with_scratch_and_plans(written):
    _, path, numbers = written
    (group,) = numbers["groups"]
    assert group["scratch"]["mean"] == pytest.approx(SCRATCH_ERROR, abs=0.02)
    best = TRUE["D"] * SIZES[-1] ** -TRUE["alpha"] + TRUE["C"]
    assert group["best"]["x"] == SIZES[-1]
    assert group["gain_over_scratch"] == pytest.approx(SCRATCH_ERROR - best, abs=0.02)
    # error 0.15 needs D n^-alpha = 0.05: n = (2 / 0.05)^2 = 1600
    plan = group["plan"]
    assert plan["reachable"]
    assert plan["n"] == pytest.approx(1600, rel=0.25)
    extrapolation = group["extrapolation"]
    assert extrapolation["heldout_log_rmse"] < 0.05  # an exact law extrapolates
    text = open(path).read()
    assert "better" in text and "Planner" in text and "Extrapolation check" in text
