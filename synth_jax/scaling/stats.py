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
    samples: np.ndarray, level: float, tail: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap percentile interval of each column of samples float[B, k] (non-finite rows of a
    column are ignored): the `tail` and 1 - `tail` quantiles (default tail: (1 - level) / 2; an
    expanded interval passes a smaller one, see `expanded_tail`). Returns (lower[k], upper[k])."""
    tail = 100.0 * ((1.0 - level) / 2.0 if tail is None else tail)
    lower, upper = [], []
    for column in np.asarray(samples, dtype=np.float64).reshape(len(samples), -1).T:
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            lower.append(np.nan)
            upper.append(np.nan)
        else:
            lower.append(np.percentile(finite, tail))
            upper.append(np.percentile(finite, 100.0 - tail))
    return np.array(lower), np.array(upper)


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
