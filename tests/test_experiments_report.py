"""The sweep report, written from synthetic results tables with a known law (or no effect)
behind them."""

from __future__ import annotations

import csv
import json
import os

import ml_collections
import numpy as np
import pytest

from synth_jax.errors import UsageError
from synth_jax.experiments import grid, report
from synth_jax.transfer import results

SIZES = (16, 64, 256, 1024, 4096)
SEEDS = (0, 1)
TRUE = {"D": 2.0, "alpha": 0.5, "C": 0.1}  # error = D n^-alpha + C
SCRATCH_ERROR = 0.45


def sweep_config(sizes=SIZES, seeds=SEEDS):
    config = ml_collections.ConfigDict()
    config.name = "synthetic"
    config.pretrain = ml_collections.ConfigDict(
        {"data": {"family": "onepfrac", "num_classes": 16}, "total_steps": 10}
    )
    config.finetune = ml_collections.ConfigDict(
        {"seed": 0, "init_from": "", "results_csv": "", "dataset": "digits"}
    )
    config.axes = [{"pretrain.data.num_classes": list(sizes)}, {"finetune.seed": list(seeds)}]
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


def write_rows(workdir, cells, error_of, unfinished=()):
    """Appends one results row per cell, error_of(cell) its error; cells whose pre-training id
    is in `unfinished` get an empty pretrain_images, as a fine-tune of an unfinished one does."""
    for cell in cells:
        _, run_dir = grid.cell_dirs(workdir, cell)
        n = None if cell.scratch else cell.pretrain.data.num_classes
        if cell.pretrain_id in unfinished:
            n = None
        error = error_of(cell)
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


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A sweep workdir whose results.csv follows the law exactly, up to 1% noise."""
    workdir = str(tmp_path_factory.mktemp("sweep"))
    config = sweep_config()
    cells = grid.expand(config)
    rng = np.random.default_rng(0)

    def error_of(cell):
        if cell.scratch:
            return SCRATCH_ERROR + 0.01 * rng.standard_normal()
        n = cell.pretrain.data.num_classes
        return (TRUE["D"] * n ** -TRUE["alpha"] + TRUE["C"]) * (1 + 0.01 * rng.standard_normal())

    write_rows(workdir, cells, error_of)
    for cell in cells:
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
    workdir, path, numbers = written
    (group,) = numbers["groups"]
    assert group["scratch"]["mean"] == pytest.approx(SCRATCH_ERROR, abs=0.02)
    best = TRUE["D"] * SIZES[-1] ** -TRUE["alpha"] + TRUE["C"]
    assert group["best"]["x"] == SIZES[-1]
    # the best size against scratch, paired over the two seeds, its interval adjusted for
    # having been picked from five sizes
    vs = group["vs_scratch"]["best"]
    assert vs["size"] == SIZES[-1] and vs["pairs"] == len(SEEDS) and vs["comparisons"] == 5
    assert vs["difference"] == pytest.approx(best - SCRATCH_ERROR, abs=0.02)
    assert vs["ci"][0] < vs["difference"] < vs["ci"][1] < 0
    assert vs["adjusted_level"] == pytest.approx(1 - 0.05 / 5) and vs["verdict"] == "lower"
    assert len(group["vs_scratch"]["per_size"]) == len(SIZES)
    # error 0.15 needs D n^-alpha = 0.05: n = (2 / 0.05)^2 = 1600
    plan = group["plan"]
    assert plan["reachable"]
    assert plan["n"] == pytest.approx(1600, rel=0.25)
    extrapolation = group["extrapolation"]
    assert extrapolation["heldout_log_rmse"] < 0.05  # an exact law extrapolates
    text = open(path).read()
    assert "lower error, beyond the interval" in text and "Bonferroni" in text
    assert "Planner" in text and "Extrapolation check" in text
    # every interval says how it was obtained
    assert group["fit"]["ci_method"].startswith("95% expanded percentile intervals")
    assert "residual bootstrap" in group["fit"]["ci_method"]
    assert "residual bootstrap" in text and "replicates" in group["band"]["method"]
    with open(os.path.join(workdir, "summary.csv")) as f:
        rows = list(csv.DictReader(f))
    kinds = [r["comparison"] for r in rows]
    assert kinds == ["scratch", *["size"] * len(SIZES), "best", "pooled"]
    for row in rows[1:]:
        assert float(row["minus_scratch_ci_low"]) < float(row["minus_scratch"])
        assert float(row["minus_scratch"]) < float(row["minus_scratch_ci_high"])


def test_the_learning_curve_shows_each_size_mean_with_its_seed_interval(written):
    _, _, numbers = written
    (group,) = numbers["groups"]
    for summary in group["per_size"]:
        runs = np.array(group["y"])[np.array(group["x"]) == summary["size"]]
        assert summary["runs"] == len(SEEDS) and summary["mean"] == pytest.approx(runs.mean())
        # a t-interval on 2 runs: mean +- 12.7 standard errors
        half = 12.706 * runs.std(ddof=1) / np.sqrt(2)
        assert summary["ci"] == pytest.approx([runs.mean() - half, runs.mean() + half], rel=1e-3)


@pytest.fixture(scope="module")
def no_effect(tmp_path_factory):
    """Pre-training that does nothing: every run's error is 0.13 +- 0.02 noise, 3 seeds."""
    workdir = str(tmp_path_factory.mktemp("null"))
    config = sweep_config(sizes=(4, 16, 64, 256), seeds=(0, 1, 2))
    cells = grid.expand(config)
    rng = np.random.default_rng(3)
    write_rows(workdir, cells, lambda cell: 0.13 + 0.02 * rng.standard_normal())
    return config, cells, workdir


def test_no_effect_is_reported_as_no_detectable_difference_with_its_interval(no_effect):
    config, cells, workdir = no_effect
    numbers = report.analyse(config, cells, workdir)
    (line,) = report.headline(numbers)
    (group,) = numbers["groups"]
    best = group["vs_scratch"]["best"]
    assert best["ci"][0] < 0 < best["ci"][1] and best["verdict"] == "no detectable difference"
    assert best["comparisons"] == 4 and best["pairs"] == 3
    # no "X better" without its interval: the headline states the interval and the verdict
    assert "better" not in line
    assert best["text"] in line and "no detectable difference at this budget" in line
    assert "Bonferroni-adjusted for the best of 4" in line
    assert group["vs_scratch"]["pooled"]["verdict"] == "no detectable difference"


def test_a_row_whose_pretraining_did_not_finish_is_an_error_naming_the_run(tmp_path):
    config = sweep_config(sizes=(4, 16, 64), seeds=(0,))
    cells = grid.expand(config)
    unfinished = next(c for c in cells if not c.scratch)
    write_rows(str(tmp_path), cells, lambda cell: 0.2, unfinished=(unfinished.pretrain_id,))
    with pytest.raises(UsageError, match=f"run {unfinished.cell_id} .*before it finished"):
        report.analyse(config, cells, str(tmp_path))
