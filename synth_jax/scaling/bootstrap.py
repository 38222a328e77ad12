"""Bootstrap resampling schemes for a fitted law: which data each replicate refits.

- case: each replicate draws points with replacement (within strata, e.g. per size, when
  given), as draw counts (weights) on the same points, so every replicate keeps one shape for
  the batched solver. It needs repeats: with one point per stratum it resamples nothing.
- seed: each replicate draws whole seeds (clusters of points: one seed's runs at every size)
  with replacement, keeping what a seed shares across sizes (its data order, its head). k seeds
  have only C(2k - 1, k) distinct resamples (126 at k = 5): up to EXACT_SEED_RESAMPLES of them
  every one is refitted and weighted by its multinomial probability (the exact bootstrap
  distribution: bounds that do not depend on the bootstrap's seed); beyond, replicates are drawn
  and the record says how many distinct resamples they hold.
- residual: each replicate is the fitted curve plus residuals drawn with replacement from the
  fit's residuals, leverage-adjusted (r_i / sqrt(1 - h_ii), centred; Davison & Hinkley 1997,
  alg. 6.3), in the loss's space. Works with one point per size; assumes equal noise.
- wild: the fitted curve plus each point's own residual, adjusted as r_i / (1 - h_ii), times a
  random sign (Rademacher; Liu 1988; the adjustment of Davidson & Flachaire 2008), for noise
  that differs between sizes. With the milder r_i / sqrt(1 - h_ii) of the residual bootstrap,
  95% intervals on 10 points covered 84-92% (tests/test_scaling_coverage.py's design).

`auto` picks: seed when at least MIN_CLUSTERS seeds each hold runs at two or more sizes (seeds
are clusters only then: a seed with one run is just a point); case (within the strata, or within
each distinct size) when every one has at least MIN_REPEATS points; residual otherwise.
Below those counts case and seed resampling shrink the spread by (m - 1) / m in variance and
undercover; the coverage tests (tests/test_scaling_coverage.py) measure what each method gives.

Intervals are expanded percentile intervals (stats.expanded_tail, Hesterberg 2015): the
quantiles are taken further out on few degrees of freedom and for schemes whose spread is
biased low, so that 95% intervals cover about 95% of the time; for seeds, too few to reach such
quantiles, the percentile interval is widened about the fit instead (`interval_rule`).

Replicates that cannot identify the law (fewer distinct inputs carrying weight than free
parameters) are redrawn, up to REDRAWS times, then dropped; both are counted. Redrawing keeps
the replicates to those that could have come from a design that identifies the law, the
conditional bootstrap; letting them vote would put their fits on the parameters' bounds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os

import numpy as np

from synth_jax.errors import UsageError
from synth_jax.scaling import stats
from synth_jax.scaling.problem import Problem

METHODS = ("auto", "case", "seed", "residual", "wild")
MIN_CLUSTERS = 5
MIN_REPEATS = 5
REDRAWS = 20
# k seeds have C(2k - 1, k) distinct resamples: 126 at k = 5, 1,716 at k = 7, 6,435 at k = 8
EXACT_SEED_RESAMPLES = 2000
# points with leverage above this are fitted exactly by construction: their residual is not a
# draw of the noise and is left out of the pool
_MAX_LEVERAGE = 1 - 1e-6


@dataclasses.dataclass
class Replicates:
    """What each replicate refits: weights float64[R, N] (draw counts, or ones) and data
    float64[R, N] (or None: the problem's y). probabilities: float64[R] summing to 1 (the exact
    seed distribution) or None (every replicate equally likely). redrawn: replicates drawn again
    because they could not identify the law; dropped: replicates still unidentifiable after
    REDRAWS tries (their rows are removed here). exact: every distinct resample, weighted."""

    method: str
    weights: np.ndarray
    y: np.ndarray | None
    redrawn: int
    dropped: int
    probabilities: np.ndarray | None = None
    exact: bool = False

    @property
    def distinct(self) -> int:
        """How many different resamples the replicates hold."""
        rows = self.weights if self.y is None else np.concatenate([self.weights, self.y], 1)
        return len(np.unique(rows, axis=0))


def choose(
    method: str, problem: Problem, strata: np.ndarray | None, clusters: np.ndarray | None
) -> tuple[str, np.ndarray | None, str]:
    """(method, strata for case resampling, note): resolves `auto` and checks that the chosen
    method can work on these points (UsageError naming what is missing otherwise)."""
    if method not in METHODS:
        raise UsageError(f"unknown bootstrap method {method!r}; one of: {', '.join(METHODS)}")
    spanning = _spanning_seeds(problem, clusters)
    if method == "auto":
        method, strata, note = _auto(problem, strata, clusters, spanning)
    else:
        note = f"{method} resampling as asked"
    _check(method, problem, strata, clusters, spanning)
    return method, strata, note


def _spanning_seeds(problem: Problem, clusters: np.ndarray | None) -> int:
    """How many seeds hold runs at two or more distinct inputs: the seeds that are clusters."""
    if clusters is None:
        return 0
    labels, sizes = _labels(clusters), _labels(problem.x)
    return sum(len(np.unique(sizes[labels == k])) >= 2 for k in range(labels.max() + 1))


def _auto(problem: Problem, strata, clusters, spanning: int) -> tuple[str, np.ndarray | None, str]:
    if spanning >= MIN_CLUSTERS:
        return "seed", strata, f"{spanning} seeds with runs at several sizes: whole seeds resampled"
    within = strata if strata is not None else _labels(problem.x)
    smallest = int(np.min(np.bincount(_labels(within))))
    kind = "stratum" if strata is not None else "size"
    if smallest >= MIN_REPEATS:
        note = f"at least {smallest} points per {kind}: points resampled within each"
        return "case", within, note
    seeds = ""
    if clusters is not None:
        seeds = (
            f", seed resampling {MIN_CLUSTERS} seeds with runs at several sizes (got {spanning})"
        )
    note = (
        f"{smallest} point(s) at some {kind} (case resampling needs {MIN_REPEATS} per "
        f"{kind}{seeds}): residuals resampled"
    )
    return "residual", strata, note


def _check(method: str, problem: Problem, strata, clusters, spanning: int) -> None:
    n, free = len(problem.y), len(problem.free)
    if method == "seed":
        n_clusters = 0 if clusters is None else len(np.unique(clusters))
        if n_clusters < 2:
            raise UsageError(
                "seed resampling needs a seed label per point and at least 2 seeds "
                f"(got {n_clusters}); name the seed column or use case or residual resampling"
            )
        if spanning < 2:
            raise UsageError(
                f"seed resampling needs seeds that each ran several sizes (clusters); here "
                f"{n_clusters - spanning} of {n_clusters} seeds hold runs at a single size, "
                "which makes it case resampling of the points: use residual or wild resampling "
                "(or the default, auto)"
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
    if method == "seed" and seed_resamples(clusters) <= EXACT_SEED_RESAMPLES:
        return _exact_seed(problem, clusters)
    if method in ("case", "seed"):
        sample = (
            (lambda k: case_weights(n, k, rng, strata))
            if method == "case"
            else (lambda k: seed_weights(clusters, k, rng))
        )
        weights, redrawn, dropped = _identifiable(problem, sample, replicates)
        return Replicates(method, weights, None, redrawn, dropped)
    power = 0.5 if method == "residual" else 1.0
    adjusted = adjusted_residuals(problem.residuals(fitted), jacobian, power)
    pool = adjusted[np.isfinite(adjusted)]
    if method == "residual":
        pool = pool - pool.mean()
        noise = rng.choice(pool, size=(replicates, n), replace=True)
    else:
        signs = rng.choice(np.array([-1.0, 1.0]), size=(replicates, n))
        noise = np.where(np.isfinite(adjusted), adjusted, 0.0) * signs
    y = problem.data_from_residuals(fitted[None, :], noise)
    return Replicates(method, np.ones((replicates, n)), y, 0, 0)


def seed_resamples(clusters: np.ndarray) -> int:
    """How many distinct seed resamples k seeds have: C(2k - 1, k)."""
    k = len(np.unique(clusters))
    return math.comb(2 * k - 1, k)


def _exact_seed(problem: Problem, clusters: np.ndarray) -> Replicates:
    """Every distinct seed resample once, with its multinomial probability k! / prod(c!) / k^k;
    those that cannot identify the law are dropped and the rest renormalised (conditional)."""
    labels = _labels(clusters)
    k = labels.max() + 1
    draws = np.array(list(itertools.combinations_with_replacement(range(k), k)))
    counts = np.stack([np.bincount(d, minlength=k) for d in draws]).astype(np.float64)
    log_p = math.lgamma(k + 1) - k * math.log(k) - np.sum(_lgamma(counts + 1), axis=1)
    weights = counts[:, labels]
    ok = problem.distinct_points(weights) >= len(problem.free)
    p = np.exp(log_p[ok])
    return Replicates("seed", weights[ok], None, 0, int((~ok).sum()), p / p.sum(), exact=True)


def _lgamma(values: np.ndarray) -> np.ndarray:
    return np.vectorize(math.lgamma, otypes=[np.float64])(values)


def interval_rule(
    method: str,
    problem: Problem,
    level: float,
    strata: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
) -> tuple[float, float]:
    """(tail, widen): an interval at `level` for a resolved method is the `tail` and 1 - `tail`
    quantiles of the refits, moved `widen` times as far from the best fit.

    residual, wild: the adjusted residuals have (at least) the noise's variance; only the t
    quantile on N - F degrees of freedom widens the interval (an expanded percentile interval:
    the tail taken further out). case within strata (repeats at each size): resampling a
    stratum of m points shrinks its spread by (m - 1) / m in variance (m: the smallest
    stratum). case without strata: resampling the points also resamples the design, which on
    a nonlinear law spreads the refits more than the noise does, so it is not expanded. seed:
    k seeds have so few distinct resamples that the far quantiles an expanded interval needs
    lie beyond what any resample reaches (no resample of 5 seeds goes past the most extreme
    seed); the 95% percentile interval is widened instead by t_{k-1} sqrt(k / (k - 1)) / z,
    which on a mean is
    exactly the t-interval. Measured coverage: tests/test_scaling_coverage.py.
    """
    n, free = len(problem.y), len(problem.free)
    if method in ("residual", "wild"):
        return stats.expanded_tail(level, n - free), 1.0
    if method == "case":
        if strata is None:
            return (1.0 - level) / 2.0, 1.0
        m = int(np.min(np.bincount(_labels(strata))))
        return stats.expanded_tail(level, n - free, m / max(m - 1, 1)), 1.0
    k = len(np.unique(clusters))
    tail = (1.0 - level) / 2.0
    z = stats.normal_quantile(1.0 - tail)
    return tail, stats.t_quantile(1.0 - tail, k - 1) * math.sqrt(k / (k - 1)) / z


def memory_needed(problem: Problem, replicates: int) -> int:
    """Bytes a bootstrap of `replicates` refits holds at its peak, an upper estimate: the
    solver keeps every start of every replicate as a lane with its own copy of the weights and
    the data (measured for 64 starts of 10 points: about 18 KB per replicate; this gives 25)."""
    n, starts, free = len(problem.y), len(problem.starts), len(problem.free)
    lanes = replicates * starts
    return 8 * (lanes * (3 * n + 4 * free + 6) + replicates * 6 * n)


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_memory(problem: Problem, replicates: int) -> None:
    """Refuses, before anything is drawn, a bootstrap that would not fit in memory."""
    need, have = memory_needed(problem, replicates), available_memory()
    if have is not None and need > have:
        raise UsageError(
            f"bootstrap {replicates:,} refits x {len(problem.starts)} starts of "
            f"{len(problem.y)} points needs about {_gib(need)} of memory; this machine has "
            f"{_gib(have)} available: ask for fewer refits"
        )


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


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


def adjusted_residuals(
    residuals: np.ndarray, jacobian: np.ndarray, power: float = 0.5
) -> np.ndarray:
    """r_i / (1 - h_ii)^power with h the diagonal of the hat matrix J (J^T J)^+ J^T at the fit
    (power 0.5: the residual's variance made the noise's; 1: the jackknife-like adjustment of
    the wild bootstrap). float64[N]; NaN where h_ii is (numerically) 1, a point the fit passes
    through by construction."""
    q, _ = np.linalg.qr(jacobian)
    leverage = np.sum(q**2, axis=1)
    out = np.full(residuals.shape, np.nan)
    ok = leverage < _MAX_LEVERAGE
    out[ok] = residuals[ok] / (1.0 - leverage[ok]) ** power
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
