"""`synth-jax demo --quick` end to end: real pre-trainings, fine-tunings, a fitted law, a report."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from synth_jax.errors import UsageError
from synth_jax.experiments import demo


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    import contextlib
    import io

    workdir = str(tmp_path_factory.mktemp("demo"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = demo.main(["--workdir", workdir, "--quick"])
    return workdir, code, out.getvalue()


def test_digits_split_is_fixed_and_disjoint():
    a, b = demo.digits_arrays(), demo.digits_arrays()
    assert a["train_images"].shape == (1300, 8, 8) and a["test_images"].shape == (497, 8, 8)
    assert a["train_images"].dtype == np.uint8 and a["train_images"].max() == 255
    np.testing.assert_array_equal(a["test_labels"], b["test_labels"])
    assert set(np.unique(a["train_labels"])) == set(range(10))


def test_demo_writes_a_report_with_a_fitted_law(finished):
    workdir, code, printed = finished
    assert code == 0
    with open(os.path.join(workdir, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    # every setting (3 sizes and scratch) fine-tuned with the same 2 seeds: paired comparisons
    families = sorted(r["pretrain_family"] for r in rows)
    assert families == ["onepfrac"] * 6 + ["scratch"] * 2
    sizes = sorted(int(r["pretrain_images"]) for r in rows if r["pretrain_images"])
    assert sizes == [16, 16, 64, 64, 256, 256]
    assert sorted(r["seed"] for r in rows) == ["0"] * 4 + ["1"] * 4
    assert all(r["dataset"] == "sklearn_digits" and 0.1 < float(r["top1"]) <= 1 for r in rows)
    numbers = json.load(open(os.path.join(workdir, "report.json")))
    (group,) = numbers["groups"]
    fit = group["fit"]
    assert set(fit["params"]) == {"D", "alpha", "C"}
    assert all(np.isfinite(v) for v in fit["params"].values())
    assert group["scratch"]["mean"] is not None and group["scratch"]["runs"] == 2
    assert "plan" in group
    # the verdict is a paired difference over the seeds with its interval, never a bare gain
    best = group["vs_scratch"]["best"]
    assert best["pairs"] == 2 and best["ci"][0] <= best["difference"] <= best["ci"][1]
    assert best["verdict"] in ("lower", "higher", "no detectable difference")
    for name in ("samples.png", "pretrain_curves.png", "learning_curve_0.png"):
        assert os.path.getsize(os.path.join(workdir, "figures", name)) > 1000
    text = open(os.path.join(workdir, "report.md")).read()
    assert "](figures/learning_curve_0.png)" in text
    # it says where the report is and the headline numbers
    assert os.path.join(workdir, "report.md") in printed
    assert "from scratch:" in printed and "law D * n^-alpha + C" in printed
    assert "verdict" in printed and best["text"] in printed and "bootstrap" in printed


def test_rerunning_the_demo_resumes_and_runs_nothing_again(finished, capsys):
    workdir, _, _ = finished
    before = open(os.path.join(workdir, "results.csv")).read()
    assert demo.main(["--workdir", workdir, "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "digits already imported" in printed and "4 finished, 0 to run" in printed
    assert open(os.path.join(workdir, "results.csv")).read() == before


def test_quick_with_an_explicit_config_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--quick"):
        demo.main(["--config", "configs/sweep/demo.py", "--quick", "--workdir", str(tmp_path)])


@pytest.mark.parametrize("scratch, problem", [(0.2565, True), (0.005, False)])
def test_baselines_join_the_report_and_a_losing_recipe_is_flagged(tmp_path, scratch, problem):
    workdir = str(tmp_path)
    with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump({"groups": [{"scratch": {"mean": scratch}}]}, f)
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("# report\n")
    for _ in range(2):  # a re-run replaces the section, never appends a second one
        numbers = demo.add_baselines(workdir)
    base = json.load(open(os.path.join(workdir, "report.json")))["baselines"]
    assert base == numbers["baselines"]
    # the numbers on this split: logistic regression ~0.04, 1-NN 0.010
    assert 0.03 < base["logistic_regression"] < 0.05
    assert base["nearest_neighbour"] == pytest.approx(5 / 497)
    text = open(os.path.join(workdir, "report.md")).read()
    assert text.count("## Baselines on raw pixels") == 1
    assert ("Recipe problem" in text) == problem and numbers["recipe_problem"] == problem
