"""Extrapolation checks: how well a law fitted on small sizes predicts larger ones.

This is how laws are compared in the literature (Alabdulmohsin et al. 2022; Caballero et al.
2023): fit on the smallest sizes, score the log-space RMSE on the held-out largest sizes. Leave-
one-out does the same for every size in turn. Both are weight masks on the same points, so each
runs as one batched call of the fitter.
"""

from __future__ import annotations

import numpy as np

from synth_jax.errors import UsageError
from synth_jax.scaling import stats
from synth_jax.scaling.problem import Problem, prepare
from synth_jax.scaling.solver import solve

_SOLVE_OPTIONS = ("method", "tol", "max_iter")


def _problem_and_options(law, x, y, options: dict) -> tuple[Problem, dict]:
    solve_options = {k: options.pop(k) for k in _SOLVE_OPTIONS if k in options}
    problem = law if isinstance(law, Problem) else prepare(law, x, y, **options)
    return problem, solve_options


def _sizes(problem: Problem) -> np.ndarray:
    """Distinct values of the first input (the data size), ascending."""
    return np.unique(problem.x[:, 0])


def extrapolation_check(law, x=None, y=None, *, holdout: int = 2, **options) -> dict:
    """Fits on all but the `holdout` largest sizes and predicts the held-out points.

    law: a law (name or Law) with x, y and `prepare` options (fix, bounds, loss, ...), or a
    prepared Problem. Sizes are the distinct values of the first input; all points at a held-out
    size are held out. Returns the fitted parameters, predictions at the held-out points and their
    log-space and linear RMSE.
    """
    problem, solve_options = _problem_and_options(law, x, y, dict(options))
    sizes = _sizes(problem)
    if not 1 <= holdout < len(sizes):
        raise UsageError(
            f"holdout {holdout}: need 1 <= holdout < number of distinct sizes ({len(sizes)})"
        )
    threshold = sizes[len(sizes) - holdout]
    held = problem.x[:, 0] >= threshold
    if np.sum(~held) < len(problem.free):
        raise UsageError(
            f"holdout {holdout} leaves {int(np.sum(~held))} point(s) to fit "
            f"{len(problem.free)} free parameters: hold out fewer sizes or fix parameters"
        )
    batch = solve(problem, (~held).astype(np.float64)[None], **solve_options)
    params = problem.full_params(batch.params[0])
    predicted = problem.predict(params, problem.x[held])
    return {
        "holdout": int(holdout),
        "fit_sizes": sizes[: len(sizes) - holdout].tolist(),
        "heldout_sizes": sizes[len(sizes) - holdout :].tolist(),
        "params": params,
        "converged": bool(batch.converged[0]),
        "heldout_x": problem.x[held].tolist(),
        "heldout_y": problem.y[held].tolist(),
        "heldout_predicted": predicted.tolist(),
        "heldout_log_rmse": stats.log_rmse(problem.y[held], predicted),
        "heldout_rmse": stats.rmse(problem.y[held], predicted),
    }


def leave_one_out(law, x=None, y=None, **options) -> dict:
    """Leaves out each size in turn (all its points), refits, and predicts it.

    Returns per-size predictions and the log-space RMSE over all left-out points (each point is
    predicted by the fit that did not see it).
    """
    problem, solve_options = _problem_and_options(law, x, y, dict(options))
    sizes = _sizes(problem)
    masks = np.stack([(problem.x[:, 0] != s).astype(np.float64) for s in sizes])
    if np.min(masks.sum(axis=1)) < len(problem.free):
        raise UsageError(
            f"leave-one-out needs at least {len(problem.free)} points without each size: "
            "add sizes or fix parameters"
        )
    batch = solve(problem, masks, **solve_options)
    predicted = np.empty_like(problem.y)
    per_size = []
    for i, size in enumerate(sizes):
        out = problem.x[:, 0] == size
        params = problem.full_params(batch.params[i])
        predicted[out] = problem.predict(params, problem.x[out])
        per_size.append(
            {
                "size": float(size),
                "y": problem.y[out].tolist(),
                "predicted": predicted[out].tolist(),
                "converged": bool(batch.converged[i]),
            }
        )
    return {
        "log_rmse": stats.log_rmse(problem.y, predicted),
        "rmse": stats.rmse(problem.y, predicted),
        "per_size": per_size,
    }
