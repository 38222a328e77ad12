"""`synth-jax demo --quick` end to end: the recipe check, the transfer protocol with its positive
control, the baselines, a report with intervals; and the verdict's logic on given numbers."""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest

from synth_jax.errors import UsageError
from synth_jax.experiments import demo, protocol


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("demo"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = demo.main(["--workdir", workdir, "--quick"])
    return workdir, code, out.getvalue()


def test_digits_split_is_fixed_and_disjoint():
    a, b = protocol.digits_arrays(), protocol.digits_arrays()
    assert a["train_images"].shape == (1300, 8, 8) and a["test_images"].shape == (497, 8, 8)
    assert a["train_images"].dtype == np.uint8 and a["train_images"].max() == 255
    np.testing.assert_array_equal(a["test_labels"], b["test_labels"])
    assert set(np.unique(a["train_labels"])) == set(range(10))


def test_quick_demo_writes_the_report_with_baselines_control_and_intervals(finished):
    workdir, code, printed = finished
    assert code == 0
    numbers = json.load(open(os.path.join(workdir, "report.json")))
    # the numbers on this split: logistic regression ~0.04, 1-NN 5 of 497
    base = numbers["baselines"]
    assert 0.03 < base["logistic_regression"] < 0.05
    assert base["nearest_neighbour"] == pytest.approx(5 / 497)
    check = numbers["recipe_check"]
    assert check["scratch"]["runs"] == 2 and check["scratch"]["ci"] is not None
    assert numbers["recipe_problem"] == (check["scratch"]["mean"] > base["logistic_regression"])
    # pre-trained minus scratch, paired over the 2 seeds, for the control and each source
    control = numbers["positive_control"]
    assert control["source"] == "digits_5_9"
    assert numbers["other_classes"]["source"] == "digits_0_4"
    lo, hi = control["interval"]
    assert lo <= control["difference"] <= hi
    assert [s["source"] for s in numbers["sources"]] == ["fractaldb"]
    assert numbers["sources"][0]["interval"] is not None
    assert numbers["detects_transfer"] == (control["verdict"] == "lower")
    assert set(numbers["downstream_baselines"]) == {"logistic_regression", "nearest_neighbour"}
    for name in ("samples.png", "differences.png"):
        assert os.path.getsize(os.path.join(workdir, "figures", name)) > 1000
    text = open(os.path.join(workdir, "report.md")).read()
    assert "docs/protocol_search.md" in text and "](figures/differences.png)" in text
    assert "positive control" in text and "logistic regression" in text
    # it says where the report is and the verdict, each number with its interval
    assert os.path.join(workdir, "report.md") in printed
    assert "recipe check: from scratch" in printed
    assert f"[{lo:+.3f}, {hi:+.3f}]" in printed


def test_rerunning_the_demo_resumes_and_runs_nothing_again(finished, capsys):
    workdir, _, _ = finished
    tables = [os.path.join(workdir, name) for name in ("results.csv", "recipe.csv")]
    before = [open(p).read() for p in tables]
    assert demo.main(["--workdir", workdir, "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "0 runs to do" in printed and "demo: recipe check," not in printed
    assert [open(p).read() for p in tables] == before


def test_quick_with_an_explicit_config_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--quick"):
        demo.main(
            ["--config", "configs/experiments/demo.py", "--quick", "--workdir", str(tmp_path)]
        )


def test_a_config_without_the_recipe_check_or_with_a_grid_is_refused(tmp_path):
    with pytest.raises(UsageError, match="'recipe_check' is missing"):
        demo.load(["--config", "configs/experiments/protocol_search.py:quick", "--workdir", "w"])
    grid = tmp_path / "grid.py"
    grid.write_text(
        "from synth_jax.config import load_config_file\n"
        "def get_config():\n"
        "    c = load_config_file('configs/experiments/demo.py:quick')\n"
        "    c.shots = [1, 5]\n"
        "    return c\n"
    )
    with pytest.raises(UsageError, match="'shots': the demo runs one protocol"):
        demo.load(["--config", str(grid), "--workdir", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists()


def _cell(source, diff, ci):
    entry = {"source": source, "test": {"mean": 0.2, "ci": [0.1, 0.3]}, "cpu_s": 1.0}
    if source != "scratch":
        entry["vs_scratch_test"] = {
            "difference": diff,
            "ci": ci,
            "verdict": "lower" if ci[1] < 0 else "higher" if ci[0] > 0 else demo.NO_DIFFERENCE,
        }
    return entry


@pytest.mark.parametrize("control_ci, detects", [([-0.2, -0.05], True), ([-0.1, 0.02], False)])
def test_the_verdict_reads_the_sources_only_when_the_control_passes(control_ci, detects):
    from synth_jax.config import load_config_file

    config = load_config_file("configs/experiments/demo.py:quick")
    cells = [
        _cell("scratch", None, None),
        _cell("digits_5_9", float(np.mean(control_ci)), control_ci),
        _cell("digits_0_4", 0.05, [0.01, 0.09]),
        _cell("fractaldb", 0.01, [-0.02, 0.04]),
    ]
    check = {
        "recipe": {"model": "ConvNet-16", "steps": 20},
        "scratch": {"mean": 0.06, "ci": [0.05, 0.07], "runs": 2},
        "baselines": {"logistic_regression": 0.038, "nearest_neighbour": 0.010},
        "recipe_problem": True,
    }
    down = {"logistic_regression": 0.3, "nearest_neighbour": 0.25}
    numbers = demo.summarise(config, cells, check, down)
    assert numbers["detects_transfer"] is detects
    assert numbers["positive_control"]["interval"] == control_ci
    text = "\n".join(numbers["verdict"])
    assert ("cannot detect transfer" in text) is (not detects)
    assert "fractaldb: pre-trained minus scratch +0.010 [-0.020, +0.040]" in text
    assert (
        "other classes): pre-trained minus scratch +0.050 [+0.010, +0.090]: pre-training "
        "RAISES" in text
    )
    md = demo.markdown(numbers, samples=False)
    assert "**Recipe problem:**" in md and "| digits_5_9 (positive control) |" in md
    assert "| digits_0_4 (other classes) |" in md
