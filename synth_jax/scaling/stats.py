"""Goodness of fit and uncertainty: pure NumPy functions of residuals, Jacobians and refits."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats


def r_squared(y: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination in linear space (1 = perfect, 0 = no better than the mean)."""
    total = float(np.sum((y - np.mean(y)) ** 2))
    residual = float(np.sum((y - predicted) ** 2))
    return 1.0 - residual / total if total > 0 else float("nan")


def rmse(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - predicted) ** 2)))


def log_rmse(y: np.ndarray, predicted: np.ndarray) -> float:
    """RMSE of log residuals: the scale-free error used to score extrapolation."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sqrt(np.mean((np.log(predicted) - np.log(y)) ** 2)))


def information_criteria(sum_squares: float, n_points: int, n_free: int) -> tuple[float, float]:
    """(AIC, BIC) of a least-squares fit under Gaussian residuals, up to a shared constant.

    AIC = n ln(SS/n) + 2k, BIC = n ln(SS/n) + k ln n with k free parameters. Only differences
    between laws fitted to the same points (and in the same residual space) mean anything.
    """
    if n_points <= 0 or sum_squares <= 0:
        return float("nan"), float("nan")
    base = n_points * math.log(sum_squares / n_points)
    return base + 2 * n_free, base + n_free * math.log(n_points)


def jacobian_stderr(jacobian: np.ndarray, sum_squares: float, n_points: int) -> np.ndarray:
    """Asymptotic standard errors sqrt(diag(s^2 (J^T J)^-1)), s^2 = SS / (n - k).

    jacobian: float[N, k] of the residuals wrt the free parameters at the optimum. NaN when the
    fit has no residual degrees of freedom or J^T J is singular (parameters not identifiable).
    """
    k = jacobian.shape[1]
    dof = n_points - k
    if dof <= 0 or not np.all(np.isfinite(jacobian)):
        return np.full(k, np.nan)
    jtj = jacobian.T @ jacobian
    try:
        cov = np.linalg.inv(jtj) * (sum_squares / dof)
    except np.linalg.LinAlgError:
        return np.full(k, np.nan)
    diag = np.diag(cov)
    # a (numerically) singular J^T J gives huge or negative variances: not identifiable
    if np.linalg.cond(jtj) > 1e14:
        return np.full(k, np.nan)
    return np.where(diag >= 0, np.sqrt(np.abs(diag)), np.nan)


def percentile_interval(
    samples: np.ndarray,
    level: float,
    tail: float | None = None,
    probabilities: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap percentile interval of each column of samples float[B, k]: the `tail` and
    1 - `tail` quantiles (default tail: (1 - level) / 2; an expanded interval passes a smaller
    one, see `expanded_tail`). Returns (lower[k], upper[k]); see `quantile_bounds`."""
    tail = (1.0 - level) / 2.0 if tail is None else tail
    columns = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1).T
    bounds = [quantile_bounds(column, tail, probabilities) for column in columns]
    return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


def quantile_bounds(
    values: np.ndarray, tail: float, probabilities: np.ndarray | None = None
) -> tuple[float, float]:
    """(lower, upper): the smallest value with at least `tail` of the probability at or below
    it, and the largest with at least `tail` at or above it (order statistics, never
    interpolated, so that +-inf values stay exact). values: float[B]; probabilities: float[B]
    (default: equal). A NaN value is unknown (a refit that did not converge) and is counted
    beyond both bounds, so the interval holds whatever it would have been: a bound that this
    moves past every known value is -inf or +inf. Both NaN when there are no values."""
    values = np.asarray(values, np.float64)
    p = np.full(len(values), 1.0 / max(len(values), 1)) if probabilities is None else probabilities
    p = np.asarray(p, np.float64) / np.sum(p)
    if not len(values):
        return float("nan"), float("nan")
    known = ~np.isnan(values)
    unknown = float(p[~known].sum())
    order = np.argsort(values[known], kind="stable")
    v, w = values[known][order], p[known][order]
    slack = 1e-9  # probabilities summed in floating point
    below = unknown + np.cumsum(w)  # mass at or below v[i], unknown mass counted below
    above = unknown + np.cumsum(w[::-1])[::-1]  # mass at or above v[i], unknown counted above
    lower_ok, upper_ok = below >= tail - slack, above >= tail - slack
    if unknown >= tail - slack:
        return float("-inf"), float("inf")
    lower = v[np.argmax(lower_ok)]
    upper = v[len(v) - 1 - np.argmax(upper_ok[::-1])]
    return float(lower), float(upper)


def widened(
    lower: np.ndarray, upper: np.ndarray, best: np.ndarray, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """An interval moved `factor` times as far from `best` on each side (factor 1: unchanged;
    an infinite bound, or a best value that is not finite, stays as it is)."""
    if factor == 1.0:
        return lower, upper
    best = np.asarray(best, np.float64)
    with np.errstate(invalid="ignore"):
        move = lambda b: np.where(np.isfinite(best), best + factor * (b - best), b)
        return move(np.asarray(lower, np.float64)), move(np.asarray(upper, np.float64))


def t_quantile(p: float, dof: float) -> float:
    return float(scipy_stats.t.ppf(p, dof))


def normal_quantile(p: float) -> float:
    return float(scipy_stats.norm.ppf(p))


def expanded_tail(level: float, dof: float, variance_factor: float = 1.0) -> float:
    """The tail probability of an expanded percentile interval (Hesterberg 2015).

    A percentile interval acts like mean +- z * sd with the normal quantile z: on few residual
    degrees of freedom it is too narrow, and a resampling scheme whose spread is biased low by
    a known factor (case resampling of m points: (m - 1) / m in variance) narrows it further.
    The expanded interval takes the quantiles at Phi(-z'), z' = sqrt(variance_factor) *
    t_{dof, 1 - (1 - level) / 2}, so that on near-linear problems it covers at about `level`.
    dof: residual degrees of freedom (points minus free parameters, or seeds minus 1)."""
    if dof < 1:
        return 0.0  # no degrees of freedom: the widest interval the replicates give
    z = math.sqrt(variance_factor) * scipy_stats.t.ppf(1.0 - (1.0 - level) / 2.0, dof)
    return float(scipy_stats.norm.cdf(-z))
