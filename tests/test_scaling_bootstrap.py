"""The bootstrap's schemes say what they do: which method `auto` picks, the residuals' sign, the
exact seed distribution, refits that do not converge, and the quantiles they all end in."""

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth_jax import scaling
from synth_jax.errors import UsageError
from synth_jax.scaling import bootstrap, stats

N6 = np.geomspace(1e3, 1e6, 6)
TRUTH = {"D": 2.0, "alpha": 0.3, "C": 0.25}


def curve(n):
    return TRUTH["D"] * n ** -TRUTH["alpha"] + TRUTH["C"]


def seed_table(seeds: int = 5, rng_seed: int = 0):
    """seeds x 6 sizes, each seed's runs sharing an offset: x, y, clusters."""
    rng = np.random.default_rng(rng_seed)
    x = np.tile(N6, seeds)
    clusters = np.repeat(np.arange(seeds), len(N6))
    y = (
        curve(x)
        + 0.005 * rng.standard_normal(seeds)[clusters]
        + 0.002 * rng.standard_normal(len(x))
    )
    return x, y, clusters


@pytest.mark.parametrize("loss", ["squared", "log"])
def test_data_from_residuals_inverts_residuals(loss):
    y = curve(N6) * (1 + 0.05 * np.random.default_rng(0).standard_normal(6))
    problem = scaling.prepare("mikami", N6, y, loss=loss)
    predicted = curve(N6)
    back = problem.data_from_residuals(predicted, problem.residuals(predicted))
    np.testing.assert_allclose(back, y, rtol=1e-12)


def test_residual_resampling_keeps_the_skew_of_the_noise():
    # errors that now and then come out far above the curve, never far below: the replicates'
    # deviations from the curve must lean the same way as the data's
    n = np.geomspace(1e3, 1e6, 30)
    noise = np.random.default_rng(1).exponential(0.01, 30)
    y = curve(n) + noise - noise.mean()
    problem = scaling.prepare("mikami", n, y)
    fit = scaling.solve(problem).params[0]
    fitted = problem.predict(problem.full_params(fit))
    jac = scaling.solver.residual_jacobian(problem, fit)
    drawn = bootstrap.draw("residual", problem, fitted, 200, 0, jacobian=jac)
    skew = lambda d: np.mean((d - d.mean()) ** 3) / np.std(d) ** 3
    assert skew(y - fitted) > 1
    assert skew((drawn.y - fitted).ravel()) > 1


def test_auto_resamples_seeds_only_where_seeds_are_clusters():
    # one run per size, each with its own seed: seeds are not clusters, residuals resampled
    y = curve(N6) + 0.003 * np.random.default_rng(2).standard_normal(6)
    result = scaling.fit("mikami", N6, y, bootstrap=50, clusters=np.arange(6))
    assert result.bootstrap.method == "residual"
    assert "seed resampling 5 seeds with runs at several sizes (got 0)" in result.bootstrap.note
    with pytest.raises(UsageError, match="seeds that each ran several sizes"):
        scaling.fit("mikami", N6, y, bootstrap=50, resample="seed", clusters=np.arange(6))
    # 5 seeds that each ran every size: whole seeds resampled
    x, y, clusters = seed_table()
    assert scaling.fit("mikami", x, y, bootstrap=50, clusters=clusters).bootstrap.method == "seed"


def test_seed_intervals_come_from_the_exact_resampling_distribution():
    x, y, clusters = seed_table()
    fits = [scaling.fit("mikami", x, y, bootstrap=200, clusters=clusters, seed=s) for s in (0, 1)]
    record = fits[0].bootstrap
    assert record.exact and record.refits == math.comb(9, 5) == 126 and record.distinct == 126
    assert "exact: all 126 distinct resamples" in record.describe()
    assert fits[0].ci == fits[1].ci  # the bootstrap's seed no longer moves the bounds
    # the probabilities are those of drawing 5 seeds with replacement
    drawn = bootstrap.draw("seed", fits[0].problem, None, 0, 0, clusters=clusters)
    exact = {tuple(w[:: len(N6)]): p for w, p in zip(drawn.weights, drawn.probabilities)}
    assert sum(exact.values()) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    counts = collections.Counter(map(tuple, rng.multinomial(5, [0.2] * 5, size=200_000)))
    for key, p in exact.items():
        assert counts[tuple(float(c) for c in key)] / 200_000 == pytest.approx(p, abs=2e-3)


def test_many_seeds_are_drawn_and_the_record_says_how_many_distinct():
    x, y, clusters = seed_table(seeds=9)  # C(17, 9) = 24,310 distinct resamples
    record = scaling.fit("mikami", x, y, bootstrap=100, clusters=clusters).bootstrap
    assert not record.exact and record.refits == 100 and 90 <= record.distinct <= 100
    assert f"100 replicates ({record.distinct} distinct)" in record.describe()


def stalling_law():
    """A law whose derivative points the wrong way: no fit of it ever converges."""

    @jax.custom_jvp
    def power(x, c):
        return x**-c

    @power.defjvp
    def _(primals, tangents):
        x, c = primals
        return x**-c, jnp.log(x) * x**-c * tangents[1]  # the true derivative's sign flipped

    return scaling.Law(
        "wrong_gradient",
        "2 * x^-c",
        lambda p, x: 2.0 * power(x, p["c"]),
        (scaling.Param("c", 0.0, 3.0, (0.1,)),),
    )


def test_refits_that_do_not_converge_count_beyond_both_bounds_with_a_warning():
    n = np.geomspace(1e3, 1e6, 10)
    result = scaling.fit(stalling_law(), n, 2.0 * n**-0.5, bootstrap=20)
    record = result.bootstrap
    assert record.refits == 20 and record.not_converged == 20 and record.used == 0
    # not left out: the interval holds whatever they would have given, the whole range of c
    assert result.ci["c"] == (0.0, 3.0)
    assert "20 did not converge and count beyond both bounds" in record.describe()
    assert "100.0% of 20 bootstrap refits did not converge" in record.warning
    assert np.isnan(result.bootstrap_params).all()


def test_quantile_bounds_count_unknown_values_beyond_both_bounds():
    values = np.arange(1.0, 101.0)  # 100 known values
    assert stats.quantile_bounds(values, 0.05) == (5.0, 96.0)
    # 3 unknown of 103: as if they were below every value for the lower bound, above for the
    # upper; the bounds move out by 3 places, never in
    with_unknown = np.concatenate([values, [np.nan] * 3])
    lower, upper = stats.quantile_bounds(with_unknown, 0.05)
    k = math.ceil(0.05 * 103)
    assert (lower, upper) == (values[k - 3 - 1], values[100 - (k - 3)])
    assert stats.quantile_bounds(np.append(values, [np.nan] * 10), 0.05) == (-math.inf, math.inf)
    # weighted: the value 50 holds 10% of the probability, the 99 others 0.9% each
    p = np.full(100, 0.9 / 99)
    p[49] = 0.1
    assert stats.quantile_bounds(values, 0.45) == (45.0, 56.0)
    assert stats.quantile_bounds(values, 0.45, p) == (50.0, 51.0)
