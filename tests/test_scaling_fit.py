"""The scaling-law fitter: parameter recovery, agreement with SciPy, intervals, flags, errors.

Most tests use 10-point curves (the short ones 5) so that they share one compiled program per
law, loss and batch shape: compiling, not fitting, is most of their run time.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares

from synth_jax import scaling
from synth_jax.errors import UsageError
from synth_jax.scaling import bootstrap

N10 = np.geomspace(1e3, 1e6, 10)


def mikami_np(p, n):
    return p[0] * n ** -p[1] + p[2]


def noisy(values, rel, seed):
    return values * (1 + rel * np.random.default_rng(seed).standard_normal(values.shape))


def test_x64_is_only_switched_on_inside_the_fitter():
    before = jax.config.jax_enable_x64
    result = scaling.fit("mikami", N10, mikami_np((2.0, 0.3, 0.25), N10))
    assert jax.config.jax_enable_x64 == before is False
    assert jnp.zeros(2).dtype == jnp.float32
    # the fit itself ran in float64: an exact curve is matched to ~1e-12, not float32's 1e-7
    assert result.rmse < 1e-10


GRID_2D = np.array(np.meshgrid(np.geomspace(1e3, 1e6, 4), np.geomspace(1e2, 1e5, 4)))


@pytest.mark.parametrize(
    "law, truth, x",
    [
        ("mikami", {"D": 2.0, "alpha": 0.3, "C": 0.25}, N10),
        ("m3", {"b": 10.0, "g": 1e-4, "c": 0.4}, N10),
        (
            "bnsl",
            {"a": 0.1, "b": 2.0, "c0": 0.1, "c1": 0.4, "d1": 3e4, "f1": 0.5},
            np.geomspace(1e3, 1e7, 14),
        ),
        (
            "chinchilla",
            {"E": 0.2, "A": 3.0, "a": 0.35, "B": 5.0, "b": 0.25},
            GRID_2D.reshape(2, -1).T,
        ),
    ],
)
def test_recovers_known_parameters_from_noisy_curves(law, truth, x):
    exact = scaling.prepare(law, x, np.ones(len(x))).predict(truth)
    result = scaling.fit(law, x, noisy(exact, 0.001, 0))
    assert result.converged
    for name, value in truth.items():
        assert result.params[name] == pytest.approx(value, rel=0.1, abs=0.02), name
    assert result.r2 > 0.999


def _scipy_best(loss, n, y, starts, lower, upper):
    def residual(p):
        f = mikami_np(p, n)
        return f - y if loss == "squared" else np.log(f) - np.log(y)

    best = np.inf
    for start in starts:
        out = least_squares(
            residual,
            start,
            bounds=(lower, upper),
            method="trf",
            ftol=1e-15,
            xtol=1e-15,
            gtol=1e-15,
            max_nfev=5000,
        )
        best = min(best, 2 * out.cost)
    return best


CURVES = {
    "clean floor": (N10, lambda n: mikami_np((2.0, 0.3, 0.25), n), 0.01),
    "steep": (N10, lambda n: mikami_np((30.0, 0.7, 0.1), n), 0.02),
    "nearly flat": (N10, lambda n: mikami_np((0.2, 0.05, 0.3), n), 0.005),
    "no floor (C at its bound)": (N10, lambda n: mikami_np((1.5, 0.2, 0.0), n), 0.01),
    "short, narrow range": (
        np.array([1000.0, 1300, 1700, 2200, 2800]),
        lambda n: mikami_np((2.0, 0.3, 0.25), n),
        0.01,
    ),
    "short, noisy": (
        np.array([1e3, 1e4, 1e5, 1e6, 3e6]),
        lambda n: mikami_np((1.0, 0.4, 0.3), n),
        0.05,
    ),
}


@pytest.mark.parametrize("loss", ["squared", "log"])
@pytest.mark.parametrize("name", list(CURVES))
def test_reaches_scipy_least_squares_optimum_from_the_same_starts(name, loss):
    n, curve, noise = CURVES[name]
    y = noisy(curve(n), noise, 1)
    problem = scaling.prepare("mikami", n, y, loss=loss)
    ours = scaling.solve(problem).objective[0]
    theirs = _scipy_best(loss, n, y, problem.starts, problem.lower, problem.upper)
    # never worse than SciPy, and the same optimum (SciPy may stop a hair short of it)
    assert ours <= theirs * (1 + 1e-9)
    assert abs(ours - theirs) <= 1e-9 * theirs + 1e-12 * np.sum(y**2) * 1e-9


def test_fixed_parameter_and_bounds_are_respected():
    y = noisy(mikami_np((0.48, 0.2, 0.3), N10), 0.002, 2)
    result = scaling.fit("mikami", N10, y, fix={"D": 0.48}, bounds={"alpha": (0.1, 1.5)})
    assert result.params["D"] == 0.48
    assert set(result.stderr) == {"alpha", "C"}
    assert 0.1 <= result.params["alpha"] <= 1.5
    assert result.params["alpha"] == pytest.approx(0.2, abs=0.02)


def test_a_fit_pinned_at_a_bound_says_so():
    # the curve falls with alpha = 0.3; allowing only alpha >= 0.5 pins alpha to its bound
    y = mikami_np((2.0, 0.3, 0.25), N10)
    result = scaling.fit("mikami", N10, y, bounds={"alpha": (0.5, 1.5)})
    assert result.hit_bounds == ["alpha"]
    assert result.params["alpha"] == pytest.approx(0.5, abs=1e-6)
    free = scaling.fit("mikami", N10, y)
    assert free.hit_bounds == []


def test_bootstrap_intervals_cover_the_truth_and_stderr_agrees():
    truth = {"D": 2.0, "alpha": 0.3, "C": 0.25}
    y = noisy(mikami_np(tuple(truth.values()), N10), 0.01, 3)
    result = scaling.fit("mikami", N10, y, bootstrap=200, seed=0)
    # one point per size: residuals are resampled, and the record says so
    assert result.bootstrap.method == "residual" and result.bootstrap.requested == 200
    assert result.bootstrap.used >= 190 and result.bootstrap.refits == 200
    assert result.bootstrap_params.shape == (200, 3)
    for name in ("alpha", "C"):
        lo, hi = result.ci[name]
        assert lo < result.params[name] < hi
        assert lo < truth[name] < hi, name
        # a 95% percentile interval spans roughly +-2 standard errors
        assert 0.3 < (hi - lo) / (4 * result.stderr[name]) < 3
    d = result.to_dict()
    for key in (
        "params",
        "stderr",
        "ci",
        "loss",
        "r2",
        "rmse",
        "aic",
        "bic",
        "n_points",
        "converged",
        "hit_bounds",
        "status",
        "ci_method",
    ):
        assert key in d
    assert d["ci_method"].startswith("95% expanded percentile intervals")
    assert "residual bootstrap" in d["ci_method"]


def test_stratified_bootstrap_keeps_every_stratum_size():
    strata = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 3])
    counts = bootstrap.case_weights(10, 500, np.random.default_rng(0), strata)
    for label in np.unique(strata):
        assert np.all(counts[:, strata == label].sum(axis=1) == np.sum(strata == label))
    plain = bootstrap.case_weights(10, 500, np.random.default_rng(0))
    assert np.all(plain.sum(axis=1) == 10)
    assert np.any(plain[:, strata == 3].sum(axis=1) == 0)  # unstratified can drop a size


def test_huber_on_log_residuals_resists_an_outlier():
    truth = {"D": 2.0, "alpha": 0.3, "C": 0.25}
    y = noisy(mikami_np(tuple(truth.values()), N10), 0.0005, 4)
    y[6] *= 1.3  # one broken run
    squared = scaling.fit("mikami", N10, y, loss="log")
    robust = scaling.fit("mikami", N10, y, loss="huber", huber_delta=1e-3)
    assert robust.method == "lm"
    error = lambda r: abs(r.params["alpha"] - truth["alpha"]) + abs(r.params["C"] - truth["C"])
    assert error(robust) < 0.3 * error(squared)
    assert robust.params["C"] == pytest.approx(0.25, abs=0.01)


def test_information_criteria_prefer_the_true_law():
    y = noisy(mikami_np((2.0, 0.3, 0.25), N10), 0.002, 5)
    with_floor = scaling.fit("mikami", N10, y)
    without = scaling.fit("m1", N10, y)
    assert with_floor.aic < without.aic and with_floor.bic < without.bic


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(law="nope"), "unknown law"),
        (dict(fix={"beta": 1.0}), "no parameter 'beta'"),
        (dict(bounds={"alpha": (1.0, 0.5)}), "must be <"),
        (dict(x=np.array([0.0, 1e3, 1e4, 1e5])), "> 0"),
        (dict(x=np.array([np.nan, 1e3, 1e4, 1e5])), "> 0"),
        (dict(x=np.array([1e3, 1e4]), y=np.array([0.5, 0.4])), "cannot determine 3 free"),
        (dict(loss="l1"), "unknown loss"),
    ],
)
def test_bad_input_is_a_usage_error(kwargs, match):
    args = dict(law="mikami", x=np.array([1e3, 1e4, 1e5, 1e6]), y=np.array([0.5, 0.4, 0.35, 0.3]))
    args.update(kwargs)
    with pytest.raises(UsageError, match=match):
        scaling.fit(args.pop("law"), args.pop("x"), args.pop("y"), **args)


def test_adding_a_law_takes_a_few_lines():
    law = scaling.Law(
        "power",
        "b * x^-c",
        lambda p, x: p["b"] * x ** -p["c"],
        (
            scaling.Param("b", 1e-8, 1e8, (0.1, 1.0, 10.0), "log"),
            scaling.Param("c", 0.0, 3.0, (0.2, 0.5)),
        ),
    )
    result = scaling.fit(law, N10, 3.0 * N10**-0.4)
    assert result.params["c"] == pytest.approx(0.4, rel=1e-8)


DEMO_CURVE = (np.array([4.0, 16, 64, 256]), np.array([0.169, 0.153, 0.095, 0.179]))


def test_case_replicates_that_cannot_identify_the_law_are_redrawn_and_counted():
    # 4 sizes, 3 free parameters: a third of case resamples hold fewer than 3 distinct sizes
    x, y = DEMO_CURVE
    problem = scaling.prepare("mikami", x, y)
    drawn = bootstrap.draw("case", problem, y, 1000, seed=0)
    assert len(drawn.weights) == 1000 - drawn.dropped
    assert np.all(problem.distinct_points(drawn.weights) >= 3)
    # P(at most 2 distinct of 4 sizes in 4 draws) = 88 / 256
    assert drawn.redrawn / 1000 == pytest.approx(88 / 256, abs=0.04)
    result = scaling.fit("mikami", x, y, bootstrap=300, resample="case", seed=0)
    record = result.bootstrap
    assert record.method == "case" and record.redrawn > 50
    assert record.refits + record.dropped_unidentifiable == 300
    assert record.used + record.not_converged == record.refits
    assert "redrawn for too few distinct sizes" in record.describe()


def test_a_stalled_fit_is_not_converged():
    # a law whose derivative (custom_jvp) points the wrong way: the optimiser cannot find a
    # decrease however it damps the step, away from any optimum
    @jax.custom_jvp
    def power(x, c):
        return x**-c

    @power.defjvp
    def _(primals, tangents):
        x, c = primals
        _, dc = tangents
        return x**-c, -(-jnp.log(x) * x**-c) * dc  # the sign of the true derivative flipped

    law = scaling.Law(
        "wrong_gradient",
        "2 * x^-c",
        lambda p, x: 2.0 * power(x, p["c"]),
        (scaling.Param("c", 0.0, 3.0, (0.1,)),),
    )
    result = scaling.fit(law, N10, 2.0 * N10**-0.5)
    assert result.status == "stalled" and not result.converged
    assert result.params["c"] == pytest.approx(0.1)  # it never moved
    assert result.to_dict()["converged"] is False


def test_one_point_per_size_is_resampled_by_residuals_not_frozen():
    # case resampling within sizes that hold one run each would keep every point in every
    # replicate: zero-width intervals
    x = np.array([1e3, 1e4, 1e5, 1e6, 1e7])
    y = noisy(mikami_np((2.0, 0.3, 0.25), x), 0.01, 6)
    result = scaling.fit("mikami", x, y, bootstrap=100, strata=np.arange(5))
    assert result.bootstrap.method == "residual" and "residuals resampled" in result.bootstrap.note
    for name in ("alpha", "C"):
        assert result.ci[name][1] - result.ci[name][0] > 1e-3
    with pytest.raises(UsageError, match="zero-width"):
        scaling.fit("mikami", x, y, bootstrap=100, resample="case", strata=np.arange(5))


def test_distinct_sizes_must_cover_the_free_parameters():
    x = np.array([1e3, 1e3, 1e3, 1e6, 1e6, 1e6])
    with pytest.raises(UsageError, match="2 distinct input value"):
        scaling.fit("mikami", x, np.array([0.5, 0.51, 0.49, 0.3, 0.31, 0.29]))
