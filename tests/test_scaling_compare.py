"""Comparisons between settings say what they did: the adjustment only where one was made,
pairwise comparisons between sources adjusted for their number, and a pooled comparison that
does not take per-size means for runs."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from synth_jax.experiments.report.fit import _between_sources
from synth_jax.scaling import compare


def test_an_answer_without_an_interval_claims_no_adjustment():
    answer = compare.paired_difference({0: 0.30}, {0: 0.40, 1: 0.41}, comparisons=4)
    assert answer["ci"] is None and answer["verdict"] == "no interval"
    assert "Bonferroni" not in answer["method"] and "Bonferroni" not in answer["text"]
    adjusted = compare.paired_difference({0: 0.30, 1: 0.31}, {0: 0.40, 1: 0.42}, comparisons=4)
    assert "Bonferroni-adjusted for the best of 4" in adjusted["method"]


def test_pooled_comparison_without_shared_seeds_uses_the_runs_not_the_size_means():
    # each size ran its own two seeds: no seed ran every size
    by_size = {100: {"a": 0.50, "b": 0.52}, 1000: {"c": 0.40, "d": 0.42}}
    baseline = {"e": 0.60, "f": 0.63, "g": 0.61}
    pooled = compare.against_baseline(by_size, baseline)["pooled"]
    assert pooled["runs_a"] == 4 and pooled["runs_b"] == 3
    # the mean of the two sizes' means, its variance from the runs within each size
    var_a = (np.var([0.50, 0.52], ddof=1) / 2 + np.var([0.40, 0.42], ddof=1) / 2) / 4
    var_b = np.var([0.60, 0.63, 0.61], ddof=1) / 3
    dof = (var_a + var_b) ** 2 / (
        ((np.var([0.50, 0.52], ddof=1) / 8) ** 2 + (np.var([0.40, 0.42], ddof=1) / 8) ** 2) / 1
        + var_b**2 / 2
    )
    half = scipy_stats.t.ppf(0.975, dof) * math.sqrt(var_a + var_b)
    difference = 0.46 - np.mean([0.60, 0.63, 0.61])
    assert pooled["difference"] == pytest.approx(difference)
    assert pooled["ci"] == pytest.approx([difference - half, difference + half])
    assert "mean over 2 sizes' means" in pooled["method"] and pooled["verdict"] == "lower"


def test_pairwise_comparisons_between_sources_are_adjusted_for_their_number():
    def group(source, errors):
        by_size = {float(n): {s: e + 0.01 * s for s in range(3)} for n, e in errors.items()}
        return {"group": {"dataset": "digits", "pretrain_family": source}, "_by_size": by_size}

    groups = [
        group("fractaldb", {16: 0.30, 64: 0.25}),
        group("onepfrac", {16: 0.28, 64: 0.26}),
        group("ofdb", {16: 0.35, 64: 0.31}),
    ]
    pairs = _between_sources(groups, ["dataset", "pretrain_family"], 0.95)
    assert len(pairs) == 3
    for pair in pairs:
        assert pair["comparisons"] == 3 and pair["adjusted_level"] == pytest.approx(1 - 0.05 / 3)
        assert "Bonferroni-adjusted for 3 pairwise comparisons between sources" in pair["method"]
