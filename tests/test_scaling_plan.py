"""Extrapolation checks, leave-one-out and the planner, against closed-form answers."""

import numpy as np
import pytest

from synth_jax import scaling
from synth_jax.errors import UsageError

N10 = np.geomspace(1e3, 1e6, 10)
D, ALPHA, C = 2.0, 0.3, 0.25


def curve(n):
    return D * n**-ALPHA + C


@pytest.fixture(scope="module")
def exact_fit():
    return scaling.fit("mikami", N10, curve(N10), bootstrap=50)


def test_extrapolation_check_predicts_held_out_sizes_of_an_exact_curve():
    check = scaling.extrapolation_check("mikami", N10, curve(N10), holdout=3)
    assert check["heldout_sizes"] == pytest.approx(N10[-3:].tolist())
    assert check["heldout_predicted"] == pytest.approx(curve(N10[-3:]).tolist(), rel=1e-7)
    assert check["heldout_log_rmse"] < 1e-7


def test_extrapolation_check_exposes_a_wrong_law():
    # a pure power law (m1) cannot follow a curve flattening onto a floor: it overshoots downward
    y = curve(N10)
    right = scaling.extrapolation_check("mikami", N10, y, holdout=3)
    wrong = scaling.extrapolation_check("m1", N10, y, holdout=3)
    assert wrong["heldout_log_rmse"] > 100 * right["heldout_log_rmse"]
    assert np.all(np.array(wrong["heldout_predicted"]) < y[-3:])


def test_leave_one_out_scores_every_size():
    y = curve(N10) * (1 + 0.01 * np.random.default_rng(0).standard_normal(10))
    loo = scaling.leave_one_out("mikami", N10, y)
    assert [s["size"] for s in loo["per_size"]] == pytest.approx(N10.tolist())
    assert 0 < loo["log_rmse"] < 0.05


def test_holdout_must_leave_enough_points():
    with pytest.raises(UsageError, match="holdout"):
        scaling.extrapolation_check("mikami", N10[:4], curve(N10[:4]), holdout=2)


def test_planner_inverts_the_law(exact_fit):
    target = 0.3
    answer = scaling.plan(exact_fit, target)
    expected = ((target - C) / D) ** (-1 / ALPHA)  # n where D n^-alpha + C = target
    assert answer["reachable"] is True
    assert answer["size_needed"]["value"] == pytest.approx(expected, rel=1e-6)
    assert answer["floor"]["value"] == pytest.approx(C, abs=1e-9)
    gain = curve(1e6) - curve(2e6)
    assert answer["doubling"]["gain"]["value"] == pytest.approx(gain, rel=1e-6)
    lo, hi = answer["size_needed"]["ci"]
    assert lo <= answer["size_needed"]["value"] * (1 + 1e-6) and hi >= lo


def test_planner_says_plainly_when_a_target_is_below_the_transfer_gap(exact_fit):
    answer = scaling.plan(exact_fit, 0.2, x_name="pretrain_images", y_name="top1_error")
    assert answer["reachable"] is False
    assert answer["size_needed"]["value"] is None
    assert answer["unreachable_fraction"] == 1.0
    assert "UNREACHABLE" in answer["message"] and "floor" in answer["message"]


def test_planner_rejects_two_input_laws():
    x = np.array(np.meshgrid(np.geomspace(1e3, 1e6, 3), [0.1, 0.5, 1.0])).reshape(2, -1).T
    y = 0.5 * (0.1 + x[:, 0] ** -0.3) * x[:, 1] ** -0.2
    result = scaling.fit("mikami2", x, y)
    assert result.params["beta"] == pytest.approx(0.2, rel=1e-4)
    with pytest.raises(UsageError, match="one-input"):
        scaling.plan(result, 0.1)


def test_planner_interval_keeps_the_refits_that_never_reach_the_target():
    # 10 points, 3% noise, a target just above the fitted floor: many refits' floors lie above
    # it. Their answer is "unreachable", and it stays in the interval.
    rng = np.random.default_rng(0)
    y = curve(N10) * (1 + 0.03 * rng.standard_normal(10))
    result = scaling.fit("mikami", N10, y, bootstrap=300, seed=0)
    target = result.params["C"] + 0.01
    answer = scaling.plan(result, target)
    assert answer["reachable"] is True
    # a mikami refit reaches the target exactly when its floor C is below it
    floors = result.bootstrap_params[:, result.law.param_names.index("C")]
    assert answer["reach_fraction"] == pytest.approx(np.mean(floors < target), abs=0.01)
    assert 0.3 < answer["reach_fraction"] < 0.95
    low, high = answer["size_needed"]["ci"]
    assert high == "unreachable" and low < answer["size_needed"]["value"]
    assert "upper bound is unreachable" in answer["message"]
    assert f"[{low:.3g}, unreachable]" in answer["message"]
    assert answer["ci_method"] == result.bootstrap.describe()


BNSL_RISING = {"a": 0.1, "b": 2.0, "c0": 0.3, "c1": -0.6, "d1": 3e4, "f1": 0.3}


def test_planner_refuses_a_law_that_rises_on_the_range_it_inverts():
    # a broken law whose second segment rises (c0 + c1 < 0): "the size that reaches a target"
    # has no single answer, and the floor a is not where it goes
    n = np.geomspace(1e3, 1e7, 14)
    exact = scaling.prepare("bnsl", n, np.ones(14)).predict(BNSL_RISING)
    assert np.argmin(exact) not in (0, 13)  # it falls, then rises
    result = scaling.fit("bnsl", n, exact)
    with pytest.raises(UsageError, match="decrease in n; the fitted bnsl rises from n = "):
        scaling.plan(result, 0.2)
