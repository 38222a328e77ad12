"""Validation of the bootstrap intervals: on curves simulated from known parameters, do 95%
intervals cover the truth about 95% of the time?

Every interval comes from `scaling.fit` itself, as a user gets it: the law's default start grid
(every start to convergence for the curve, the screened grid for each refit), the default 200
replicates, the method `auto` chooses for the design (asserted), or `wild` when asked:
- one point per size, every law: `auto` resamples residuals; `wild` on mikami, with noise that
  shrinks 4-fold over the sizes (what wild resampling is for);
- repeats (6 sizes x 5 runs, no seeds): `auto` resamples runs within each size;
- seeds (5 seeds x 6 sizes, each seed's runs sharing an offset): `auto` resamples whole seeds,
  every one of the 126 distinct resamples.

The acceptance band is three binomial standard errors either side of 95% at CURVES curves
(`band`). The check must be able to fail: the same refits' plain percentile interval for 5
seeds (not widened) covers about 80%, and `test_the_check_fails_an_interval_that_is_too_narrow`
keeps it failing. On this simulation it fails from 90 curves on (and so does the residual
bootstrap's unexpanded interval, about 88%); at 100 an interval that covers 80% fails with
about 98% probability whatever the simulation's seed, so CURVES is 100.

Refitting from the whole start grid makes mikami2, m4, chinchilla and bnsl minutes to an hour
each (m4: about 20 s a curve): they run only with SYNTH_JAX_LONG_TESTS=1.
"""

import math
import os

import numpy as np
import pytest

from synth_jax import scaling
from synth_jax.scaling import stats

CURVES = 100
LEVEL = 0.95
NOISE = 0.005  # additive, on errors of 0.1 .. 1

N10 = np.geomspace(1e3, 1e6, 10)
LAWS = {
    "mikami": ({"D": 2.0, "alpha": 0.3, "C": 0.25}, N10),
    "mikami2": (
        {"delta": 0.5, "gamma": 0.1, "alpha": 0.3, "beta": 0.2},
        np.array(np.meshgrid(np.geomspace(1e3, 1e6, 5), [0.1, 0.3, 1.0])).reshape(2, -1).T,
    ),
    "m1": ({"b": 5.0, "c": -0.2}, N10),
    "m2": ({"e_inf": 0.2, "b": 2.0, "c": -0.3}, N10),
    "m3": ({"b": 10.0, "g": 1e-4, "c": 0.4}, N10),
    "m4": ({"e_inf": 0.1, "e_0": 0.9, "a": 1.0, "b": 30.0, "c": -0.5}, np.geomspace(1e1, 1e5, 12)),
    "chinchilla": (
        {"E": 0.2, "A": 3.0, "a": 0.35, "B": 5.0, "b": 0.25},
        np.array(np.meshgrid(np.geomspace(1e3, 1e6, 4), np.geomspace(1e2, 1e5, 4)))
        .reshape(2, -1)
        .T,
    ),
    "bnsl": (
        {"a": 0.1, "b": 2.0, "c0": 0.1, "c1": 0.4, "d1": 3e4, "f1": 0.5},
        np.geomspace(1e3, 1e7, 14),
    ),
}
N6 = np.geomspace(1e3, 1e6, 6)
RUNS = 5  # runs per size (repeats) and seeds (seed design)


def band(curves: int = CURVES) -> tuple[float, float]:
    """Coverage rates a 95% interval passes with: 95% +- 3 binomial standard errors."""
    half = 3 * math.sqrt(LEVEL * (1 - LEVEL) / curves)
    return LEVEL - half, min(1.0, LEVEL + half)


def simulate(design: str, law: str = "mikami"):
    """(x float[N] or float[N, K], ys float[CURVES, N], clusters int[N] or None, truth)."""
    truth, x = LAWS[law]
    clusters = None
    if design in ("repeats", "seeds"):
        x = np.tile(N6, RUNS)
        clusters = np.repeat(np.arange(RUNS), len(N6)) if design == "seeds" else None
    exact = scaling.prepare(law, x, np.ones(len(x))).predict(truth)
    # curve k from its own generator: the first curves are the same whatever CURVES is
    rngs = [np.random.default_rng(k) for k in range(CURVES)]
    noise = NOISE * np.stack([rng.standard_normal(len(x)) for rng in rngs])
    if design == "seeds":  # what a seed shares across sizes (data order, head), plus noise
        offsets = NOISE * np.stack([rng.standard_normal(RUNS) for rng in rngs])
        noise = offsets[:, clusters] + 0.5 * noise
    if design == "heteroscedastic":
        noise = noise * np.geomspace(2.0, 0.5, len(x))
    return x, exact + noise, clusters, truth


def fits(design: str, law: str = "mikami", resample: str = "auto"):
    """scaling.fit on each simulated curve (bootstrap seed k for curve k)."""
    x, ys, clusters, truth = simulate(design, law)
    results = [
        scaling.fit(law, x, y, bootstrap=200, resample=resample, clusters=clusters, seed=k)
        for k, y in enumerate(ys)
    ]
    return results, truth


def coverage(intervals: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Share of curves whose interval holds the truth, per parameter: intervals
    float[CURVES, F, 2], truth float[F]."""
    return np.mean((intervals[:, :, 0] <= truth) & (truth <= intervals[:, :, 1]), axis=0)


def check(results, truth: dict, method: str, intervals=None) -> dict:
    """Coverage rates per free parameter; asserts the method and that they lie in the band."""
    free = results[0].problem.free
    if intervals is None:
        intervals = np.array([[r.ci[name] for name in free] for r in results])
    rates = dict(zip(free, coverage(intervals, np.array([truth[n] for n in free]))))
    print(f"coverage {results[0].law.name} {method}: {rates}")
    assert {r.bootstrap.method for r in results} == {method}
    low, high = band(len(results))
    assert all(low <= rate <= high for rate in rates.values()), f"{method}: coverage {rates}"
    return rates


@pytest.fixture(scope="module")
def seed_fits():
    return fits("seeds")


long = pytest.mark.skipif(
    not os.environ.get("SYNTH_JAX_LONG_TESTS"), reason="a long run: SYNTH_JAX_LONG_TESTS=1"
)
LONG_LAWS = ("mikami2", "m4", "chinchilla", "bnsl")


@pytest.mark.slow
@pytest.mark.parametrize(
    "law", [pytest.param(law, marks=long) if law in LONG_LAWS else law for law in LAWS]
)
def test_residual_intervals_of_every_law_cover_the_truth(law):
    results, truth = fits("one per size", law)
    check(results, truth, "residual")


@pytest.mark.slow
def test_wild_intervals_cover_the_truth_when_the_noise_differs_by_size():
    results, truth = fits("heteroscedastic", resample="wild")
    check(results, truth, "wild")


@pytest.mark.slow
def test_case_intervals_within_sizes_cover_the_truth():
    results, truth = fits("repeats")
    check(results, truth, "case")
    assert all("per size" in r.bootstrap.note for r in results)


@pytest.mark.slow
def test_seed_intervals_cover_the_truth(seed_fits):
    results, truth = seed_fits
    check(results, truth, "seed")
    assert all(r.bootstrap.exact and r.bootstrap.refits == 126 for r in results)


@pytest.mark.slow
def test_the_check_fails_an_interval_that_is_too_narrow(seed_fits):
    # the plain percentile interval of the same refits (no expansion for 5 seeds)
    results, truth = seed_fits
    free = results[0].problem.free
    plain = np.array(
        [
            np.stack(
                stats.percentile_interval(
                    r.bootstrap_params, LEVEL, probabilities=r.bootstrap_probabilities
                ),
                axis=1,
            )[[r.law.param_names.index(n) for n in free]]
            for r in results
        ]
    )
    with pytest.raises(AssertionError, match="coverage"):
        check(results, truth, "seed", plain)
