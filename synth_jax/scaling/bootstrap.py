"""Bootstrap resampling schemes for a fitted law: which data each replicate refits.

- case: each replicate draws points with replacement (within strata, e.g. per size, when
  given), as draw counts (weights) on the same points, so every replicate keeps one shape for
  the batched solver. It needs repeats: with one point per stratum it resamples nothing.
- seed: each replicate draws whole seeds (clusters of points: one seed's runs at every size)
  with replacement, keeping what a seed shares across sizes (its data order, its head).
- residual: each replicate is the fitted curve plus residuals drawn with replacement from the
  fit's residuals, leverage-adjusted (r_i / sqrt(1 - h_ii), centred; Davison & Hinkley 1997,
  alg. 6.3), in the loss's space. Works with one point per size; assumes equal noise.
- wild: the fitted curve plus each point's own adjusted residual times a random sign
  (Rademacher; Liu 1988), for noise that differs between sizes.

`auto` picks: seed when at least MIN_CLUSTERS seeds are given; case (within the strata, or
within each distinct size) when every one has at least MIN_REPEATS points; residual otherwise.
Below those counts case and seed resampling shrink the spread by (m - 1) / m in variance and
undercover; the coverage tests (tests/test_scaling_coverage.py) measure what each method gives.

Intervals are expanded percentile intervals (stats.expanded_tail, Hesterberg 2015): the
quantiles are taken further out on few degrees of freedom and for schemes whose spread is
biased low, so that 95% intervals cover about 95% of the time (`interval_tail`).

Replicates that cannot identify the law (fewer distinct inputs carrying weight than free
parameters) are redrawn, up to REDRAWS times, then dropped; both are counted. Redrawing keeps
the replicates to those that could have come from a design that identifies the law, the
conditional bootstrap; letting them vote would put their fits on the parameters' bounds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from synth_jax.errors import UsageError
from synth_jax.scaling import stats
from synth_jax.scaling.problem import Problem

METHODS = ("auto", "case", "seed", "residual", "wild")
MIN_CLUSTERS = 5
MIN_REPEATS = 5
REDRAWS = 20
# points with leverage above this are fitted exactly by construction: their residual is not a
# draw of the noise and is left out of the pool
_MAX_LEVERAGE = 1 - 1e-6


@dataclasses.dataclass
class Replicates:
    """What each replicate refits: weights float64[R, N] (draw counts, or ones) and data
    float64[R, N] (or None: the problem's y). redrawn: replicates drawn again because they
    could not identify the law; dropped: replicates still unidentifiable after REDRAWS tries
    (their rows are removed here). note: why this method, in words."""

    method: str
    weights: np.ndarray
    y: np.ndarray | None
    redrawn: int
    dropped: int
    note: str


def choose(
    method: str, problem: Problem, strata: np.ndarray | None, clusters: np.ndarray | None
) -> tuple[str, np.ndarray | None, str]:
    """(method, strata for case resampling, note): resolves `auto` and checks that the chosen
    method can work on these points (UsageError naming what is missing otherwise)."""
    if method not in METHODS:
        raise UsageError(f"unknown bootstrap method {method!r}; one of: {', '.join(METHODS)}")
    n, free = len(problem.y), len(problem.free)
    sizes = _labels(problem.x)
    n_clusters = 0 if clusters is None else len(np.unique(clusters))
    if method == "auto":
        if n_clusters >= MIN_CLUSTERS:
            method = "seed"
            note = f"{n_clusters} seeds: whole seeds resampled"
        else:
            within = strata if strata is not None else sizes
            smallest = int(np.min(np.bincount(_labels(within))))
            kind = "stratum" if strata is not None else "size"
            if smallest >= MIN_REPEATS:
                method, strata = "case", within
                note = f"at least {smallest} points per {kind}: points resampled within each"
            else:
                method = "residual"
                seeds = (
                    ""
                    if clusters is None
                    else f", seed resampling {MIN_CLUSTERS} seeds (got {n_clusters})"
                )
                note = (
                    f"{smallest} point(s) at some {kind} (case resampling needs {MIN_REPEATS} "
                    f"per {kind}{seeds}): residuals resampled"
                )
    else:
        note = f"{method} resampling as asked"
    if method == "seed":
        if clusters is None or n_clusters < 2:
            raise UsageError(
                "seed resampling needs a seed label per point and at least 2 seeds "
                f"(got {n_clusters}); name the seed column or use case or residual resampling"
            )
    elif method == "case" and strata is not None:
        smallest = int(np.min(np.bincount(_labels(strata))))
        if smallest < 2:
            raise UsageError(
                "case resampling within strata that hold a single point keeps that point in "
                "every replicate and gives zero-width intervals; use residual or wild "
                "resampling (or the default, auto)"
            )
    elif method in ("residual", "wild") and n <= free:
        raise UsageError(
            f"{method} resampling needs more points ({n}) than free parameters ({free}): "
            "there are no residuals to resample"
        )
    return method, strata, note


def draw(
    method: str,
    problem: Problem,
    fitted: np.ndarray,
    replicates: int,
    seed: int,
    strata: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    jacobian: np.ndarray | None = None,
) -> Replicates:
    """The replicates of a resolved method (see `choose`). fitted: float64[N], the best fit's
    predictions; jacobian: float64[N, F] of the residuals at the best fit (residual, wild)."""
    rng = np.random.default_rng(seed)
    n = len(problem.y)
    if method in ("case", "seed"):
        sample = (
            (lambda k: case_weights(n, k, rng, strata))
            if method == "case"
            else (lambda k: seed_weights(clusters, k, rng))
        )
        weights, redrawn, dropped = _identifiable(problem, sample, replicates)
        return Replicates(method, weights, None, redrawn, dropped, "")
    adjusted = adjusted_residuals(problem.residuals(fitted), jacobian)
    pool = adjusted[np.isfinite(adjusted)]
    if method == "residual":
        pool = pool - pool.mean()
        noise = rng.choice(pool, size=(replicates, n), replace=True)
    else:
        signs = rng.choice(np.array([-1.0, 1.0]), size=(replicates, n))
        noise = np.where(np.isfinite(adjusted), adjusted, 0.0) * signs
    y = problem.data_from_residuals(fitted[None, :], noise)
    return Replicates(method, np.ones((replicates, n)), y, 0, 0, "")


def interval_tail(
    method: str,
    problem: Problem,
    level: float,
    strata: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
) -> float:
    """The tail probability of the expanded percentile interval for a resolved method.

    residual, wild: the adjusted residuals have the noise's variance; only the t quantile on
    N - F degrees of freedom widens the interval. case within strata (repeats at each size):
    resampling a stratum of m points shrinks its spread by (m - 1) / m in variance (m: the
    smallest stratum). case without strata: resampling the points also resamples the design,
    which on a nonlinear law spreads the refits more than the noise does; measured coverage is
    at or above nominal unexpanded (tests/test_scaling_coverage.py), so it is not expanded.
    seed: k seeds, t on k - 1 degrees of freedom and the factor k / (k - 1).
    """
    n, free = len(problem.y), len(problem.free)
    if method in ("residual", "wild"):
        return stats.expanded_tail(level, n - free)
    if method == "case":
        if strata is None:
            return (1.0 - level) / 2.0
        m = int(np.min(np.bincount(_labels(strata))))
        return stats.expanded_tail(level, n - free, m / max(m - 1, 1))
    k = len(np.unique(clusters))
    return stats.expanded_tail(level, k - 1, k / max(k - 1, 1))


def case_weights(
    n_points: int, replicates: int, rng: np.random.Generator, strata: np.ndarray | None = None
) -> np.ndarray:
    """Draw counts float64[replicates, N]: N points drawn with replacement from all points, or,
    with strata (int[N] labels), each stratum resampled on its own keeping its size."""
    counts = np.zeros((replicates, n_points), dtype=np.float64)
    labels = np.zeros(n_points, dtype=np.int64) if strata is None else np.asarray(strata)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        pvals = np.full(len(members), 1.0 / len(members))
        counts[:, members] = rng.multinomial(len(members), pvals, size=replicates)
    return counts


def seed_weights(clusters: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Draw counts float64[replicates, N]: as many seeds as there are, drawn with replacement;
    every point of a drawn seed gets that seed's count."""
    labels = _labels(clusters)
    k = labels.max() + 1
    drawn = rng.multinomial(k, np.full(k, 1.0 / k), size=replicates)  # [R, k]
    return drawn[:, labels].astype(np.float64)


def adjusted_residuals(residuals: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
    """r_i / sqrt(1 - h_ii) with h the diagonal of the hat matrix J (J^T J)^+ J^T at the fit.
    float64[N]; NaN where h_ii is (numerically) 1, a point the fit passes through by
    construction."""
    q, _ = np.linalg.qr(jacobian)
    leverage = np.sum(q**2, axis=1)
    out = np.full(residuals.shape, np.nan)
    ok = leverage < _MAX_LEVERAGE
    out[ok] = residuals[ok] / np.sqrt(1.0 - leverage[ok])
    return out


def _identifiable(problem: Problem, sample, replicates: int) -> tuple[np.ndarray, int, int]:
    """Draws `replicates` weight rows with sample(k) and redraws those with fewer distinct
    inputs than free parameters. Returns (weights of the identifiable rows, redrawn, dropped)."""
    need = len(problem.free)
    weights = sample(replicates)
    bad = problem.distinct_points(weights) < need
    redrawn = bad.copy()
    for _ in range(REDRAWS):
        if not bad.any():
            break
        weights[bad] = sample(int(bad.sum()))
        bad = problem.distinct_points(weights) < need
    return weights[~bad], int(redrawn.sum()), int(bad.sum())


def _labels(values) -> np.ndarray:
    """int labels 0..k-1 of the distinct values (or distinct rows) of values."""
    values = np.asarray(values)
    axis = 0 if values.ndim > 1 else None
    _, inverse = np.unique(values, axis=axis, return_inverse=True)
    return inverse.reshape(-1)
