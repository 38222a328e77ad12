"""The batched solver: float64, jitted, batched over start points and problems.

One compiled function fits a batch of problems (bootstrap replicates, extrapolation masks,
leave-one-out masks: weights float64[R, N] on the same points, each with its own data
float64[R, N]) from a grid of starts [S, F], and keeps the best start per problem. Every loss
uses Levenberg-Marquardt (levenberg_marquardt.py), written for R*S lanes at once: squared
losses (linear or log residuals) with the Gauss-Newton model, the Huber loss on log residuals
with Huber's IRLS weights; L-BFGS (lbfgs.py, vmapped over lanes) is the alternative. Many
problems are fitted in calls of one shape (`problems_per_call`), so one compiled program
serves them and a progress line can follow them.
Losses are summed, not averaged: an average makes the objective small and stops the optimiser
early. Bounds hold through the transform of transforms.py. x64 is switched on only inside the
solver (`jax.enable_x64(True)` as a context manager), so the rest of the program keeps float32.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.errors import UsageError
from synth_jax.progress import Progress
from synth_jax.scaling import lbfgs, levenberg_marquardt
from synth_jax.scaling.problem import Problem
from synth_jax.scaling.transforms import (
    position_in_bounds,
    saturated,
    to_params,
    to_z,
    transform_bounds,
)

# a fit whose cost is below this share of the data's size (in the loss's space) is exact to
# rounding: (64 machine epsilons)^2
_ROUNDING = (64 * np.finfo(np.float64).eps) ** 2


def _residuals(law, free_index, kinds, loss, z, x, y, fixed, lo, hi):
    """Unweighted residuals in the loss's space (linear, or log for log/Huber).

    z: float[F] with y: float[N] -> float[N]; or z: float[F, B] (B lanes) with y: float[N, B]
    -> float[N, B], with the lanes as the minor axis so that each elementwise op runs over long
    contiguous rows.
    """
    params = _param_dict(law, free_index, to_params(z, kinds, lo, hi), fixed)
    columns = [x[:, k] if z.ndim == 1 else x[:, k, None] for k in range(x.shape[1])]
    predicted = law(params, *columns)
    if loss == "squared":
        return predicted - y
    return jnp.log(jnp.maximum(predicted, jnp.finfo(predicted.dtype).tiny)) - jnp.log(y)


def _param_dict(law, free_index, free_values, fixed):
    """{name: scalar} from the free values float[F] and the fixed vector float[P]. Built by
    static indexing: a scatter would be a slow serial loop once batched over lanes."""
    params = {name: fixed[i] for i, name in enumerate(law.param_names)}
    for j, i in enumerate(free_index):
        params[law.param_names[i]] = free_values[j]
    return params


def _huber(r, delta):
    return jnp.where(jnp.abs(r) <= delta, 0.5 * r**2, delta * (jnp.abs(r) - 0.5 * delta))


_STATIC = ("law", "free_index", "kinds", "loss", "method", "max_iter", "screen_iter", "polish")


@functools.partial(jax.jit, static_argnames=(*_STATIC, "screen_dtype"))
def _solve_batch(
    law,
    free_index,
    kinds,
    loss,
    method,
    max_iter,
    screen_iter,
    polish,
    screen_dtype,
    x,
    y,
    weights,
    starts_z,
    fixed,
    lo,
    hi,
    delta,
    tol,
):
    """Fits problems (weights float64[R, N], data y float64[R, N]) from every start
    float64[S, F]; keeps the best start of each.

    With 0 < polish < S (LM only), every start first takes `screen_iter` iterations (in
    `screen_dtype`: "float32" halves their cost on a CPU) and only the `polish` lowest-cost
    starts of each problem go on to convergence in float64: most starts of a grid fall into the
    same few basins within a few steps, so this spends the iterations where they count.

    Returns params float64[R, F], objective float64[R], converged bool[R], stalled bool[R],
    iterations int32[R] (of the best start), agreeing int32[R]: how many (polished) starts
    reached the best objective (within 1e-6 relative), a sign that the optimum is global rather
    than one start's luck, and capped int32[R]: how many (polished) starts stopped at max_iter.
    """
    data = (law, free_index, kinds, loss, x, fixed, lo, hi)
    if method == "lm":
        lanes = functools.partial(_lm_lanes, data, weights, y, delta, tol)
        z, objective, converged, stalled, iterations = _lm_solve(
            lanes, starts_z, weights.shape[0], max_iter, screen_iter, polish, screen_dtype
        )
        if loss == "huber":
            objective = 0.5 * objective  # the lanes minimise twice the Huber loss
    else:

        def lane(z0, w, yy):
            residual = lambda zz: _residuals(*data[:4], zz, x, yy, fixed, lo, hi)
            if loss == "huber":
                objective = lambda zz: jnp.sum(w * _huber(residual(zz), delta))
            else:
                objective = lambda zz: jnp.sum(w * residual(zz) ** 2)
            return lbfgs.minimize(objective, z0, tol, max_iter)

        per_start = jax.vmap(lane, in_axes=(0, None, None))
        z, objective, converged, stalled, iterations = jax.vmap(per_start, in_axes=(None, 0, 0))(
            starts_z, weights, y
        )
    capped = jnp.sum(~converged & ~stalled, axis=1, dtype=jnp.int32)
    objective = jnp.where(jnp.isfinite(objective), objective, jnp.inf)
    best = jnp.argmin(objective, axis=1)
    take = lambda a: jnp.take_along_axis(a, best[:, None], axis=1)[:, 0]
    best_objective = take(objective)
    agreeing = jnp.sum(
        objective <= best_objective[:, None] * (1 + 1e-6) + 1e-300, axis=1, dtype=jnp.int32
    )
    z_best = jnp.take_along_axis(z, best[:, None, None], axis=1)[:, 0]
    params = jax.vmap(lambda zz: to_params(zz, kinds, lo, hi))(z_best)
    out = (params, best_objective, take(converged), take(stalled), take(iterations))
    return (*out, agreeing, capped)


def _lm_lanes(data, weights, y, delta, tol, z0, k, max_iter):
    """Levenberg-Marquardt on k starts of each problem: z0 float[F, R*k] (replicate-major
    lanes), computed in z0's precision. Returns (z, cost, converged, stalled, iterations)."""
    law, free_index, kinds, loss, x, fixed, lo, hi = data
    dtype = z0.dtype
    cast = lambda a: a.astype(dtype)
    x, fixed, lo, hi = map(cast, (x, fixed, lo, hi))

    def residual(z, yy):
        return _residuals(law, free_index, kinds, loss, z, x, yy, fixed, lo, hi)

    target = y if loss == "squared" else jnp.log(y)
    rounding_cost = _ROUNDING * jnp.sum(weights * (1.0 + target**2), axis=1)  # [R]
    return levenberg_marquardt.in_chunks(
        residual,
        lambda z: saturated(z, kinds),
        z0,
        cast(jnp.repeat(jnp.sqrt(weights).T, k, axis=1)),
        cast(jnp.repeat(y.T, k, axis=1)),
        cast(jnp.repeat(rounding_cost, k)),
        cast(tol),
        max_iter,
        cast(delta) if loss == "huber" else None,
    )


def _lm_solve(lanes, starts_z, r, max_iter, screen_iter, polish, screen_dtype):
    """Every start of each of r problems by LM, or (0 < polish < S) every start screened for
    screen_iter iterations in screen_dtype and the polish best of each polished in float64.
    Returns (z float64[R, K, F], cost, converged, stalled, iterations: [R, K]), K the starts
    that ran last."""
    s, f = starts_z.shape
    if not 0 < polish < s:
        out = lanes(jnp.tile(starts_z.T, (1, r)), s, max_iter)
        return out[0].T.reshape(r, s, f), *(a.reshape(r, s) for a in out[1:])
    screen = lanes(jnp.tile(starts_z.T, (1, r)).astype(screen_dtype), s, screen_iter)
    z = screen[0].T.reshape(r, s, f).astype(starts_z.dtype)
    objective, iterations = screen[1].reshape(r, s), screen[4].reshape(r, s)
    # carry on from the `polish` most promising starts of each problem only
    _, keep = jax.lax.top_k(-jnp.where(jnp.isfinite(objective), objective, jnp.inf), polish)
    before = jnp.take_along_axis(iterations, keep, axis=1)
    z = jnp.take_along_axis(z, keep[:, :, None], axis=1)  # [R, k, F]
    out = lanes(z.reshape(r * polish, f).T, polish, max_iter)
    z = out[0].T.reshape(r, polish, f)
    objective, converged, stalled, iterations = (a.reshape(r, polish) for a in out[1:])
    return z, objective, converged, stalled, iterations + before


@dataclasses.dataclass
class BatchFit:
    """Best fits of a batch of problems: params float64[R, F] (free parameters), objective
    float64[R], converged bool[R], stalled bool[R] (stopped short of a first-order optimum: no
    damping or line search found a decrease), iterations int[R], agreeing int[R], at_bound
    bool[R, F] (a parameter within 1e-6 of its range from a bound), capped int[R] (starts, of
    those run to the end, that stopped at the iteration cap)."""

    params: np.ndarray
    objective: np.ndarray
    converged: np.ndarray
    stalled: np.ndarray
    iterations: np.ndarray
    agreeing: np.ndarray
    at_bound: np.ndarray
    capped: np.ndarray

    def status(self, i: int = 0) -> str:
        """converged, stalled or max_iter for problem i."""
        if self.converged[i]:
            return "converged"
        return "stalled" if self.stalled[i] else "max_iter"


def default_method(problem: Problem) -> str:
    del problem  # every loss has a Levenberg-Marquardt model now (Huber: IRLS weights)
    return "lm"


# one compiled call fits at most this many point-lanes (points x starts x problems) at once;
# more problems are fitted in calls of equal shape (one compiled program), with progress
POINT_LANES_PER_CALL = 1 << 21


def problems_per_call(problem: Problem) -> int:
    """How many problems one solver call takes: a power of two, at least 1."""
    lanes = len(problem.y) * len(problem.starts)
    return 1 << max(0, (POINT_LANES_PER_CALL // lanes).bit_length() - 1)


def solve(
    problem: Problem,
    weights: np.ndarray | None = None,
    *,
    y: np.ndarray | None = None,
    method: str | None = None,
    tol: float = 1e-12,
    max_iter: int | None = None,
    polish: int | None = None,
    screen_iter: int = 8,
    progress: str | None = None,
) -> BatchFit:
    """Fits each row of weights float[R, N] (default: one unweighted problem) from every start.

    y: float[R, N], each problem's own data (residual and wild bootstrap replicates); default:
    the problem's y for every row. method: "lm" (Levenberg-Marquardt; the default, for every
    loss: the Huber loss with Huber's IRLS curvature weights) or "lbfgs". A weight of 0 leaves
    a point out (extrapolation checks, leave-one-out); case-bootstrap replicates weight points by
    draw counts. polish: with LM, run every start for `screen_iter` iterations (float32 for the
    Huber loss), then only the `polish` best starts of each problem to convergence in float64
    (None: every start to convergence). About 4x faster on a 64-start grid, more on larger
    ones; on well-posed curves it finds the same optimum as running every start, on degenerate
    ones (a parameter running to a bound) an occasional replicate settles in a slightly worse
    local optimum, which moves percentile intervals negligibly. Main fits, the extrapolation
    check and leave-one-out run every start. Many problems are fitted in calls of
    `problems_per_call` each; progress: a label for a progress line over those calls.
    """
    method = method or default_method(problem)
    if method not in ("lm", "lbfgs"):
        raise UsageError(f"unknown method {method!r}; one of: lm, lbfgs")
    n = len(problem.y)
    if weights is None:
        weights = np.ones((1 if y is None else len(np.reshape(y, (-1, n))), n))
    weights = np.asarray(weights, np.float64).reshape(-1, n)
    count = len(weights)
    y = np.broadcast_to(problem.y if y is None else np.asarray(y, np.float64), (count, n))
    per_call = problems_per_call(problem)
    # pad the batch (to a power of two, or a multiple of 64 beyond, or of the problems per
    # call) so that nearby batch sizes share one compiled program
    padded = 1 << max(count - 1, 0).bit_length() if count <= 64 else -(-count // 64) * 64
    if padded > per_call:
        padded = -(-count // per_call) * per_call
    weights = np.concatenate([weights, np.ones((padded - count, n))])
    y = np.concatenate([y, np.broadcast_to(problem.y, (padded - count, n))])
    options = dict(
        method=method,
        max_iter=int(max_iter or (1000 if method == "lm" else 500)),
        screen_iter=int(screen_iter),
        polish=int(polish or 0) if method == "lm" else 0,
        screen_dtype="float32" if problem.loss == "huber" else "float64",
        tol=tol,
    )
    step = min(padded, per_call)
    meter = Progress(count, progress, "fits") if progress and padded > step else None
    parts = []
    for begin in range(0, padded, step):
        parts.append(
            _solve_call(problem, weights[begin : begin + step], y[begin : begin + step], options)
        )
        if meter:
            meter.update(min(begin + step, count))
    if meter:
        meter.close()
    params, objective, converged, stalled, iterations, agreeing, capped = (
        np.concatenate(a)[:count] for a in zip(*parts)
    )
    lo, hi = transform_bounds(problem)
    position = position_in_bounds(params, problem.kinds, lo, hi)
    return BatchFit(
        params=params,
        objective=objective,
        converged=converged,
        stalled=stalled,
        iterations=iterations,
        agreeing=agreeing,
        at_bound=(position < 1e-6) | (position > 1 - 1e-6),
        capped=capped,
    )


def _solve_call(problem: Problem, weights: np.ndarray, y: np.ndarray, options: dict) -> tuple:
    """One compiled call of _solve_batch on weights and y float64[R, N]: numpy outputs."""
    kinds = problem.kinds
    lo, hi = transform_bounds(problem)
    starts_z = to_z(problem.starts, kinds, lo, hi)
    with jax.enable_x64(True):
        out = _solve_batch(
            problem.law,
            problem.free_index,
            kinds,
            problem.loss,
            options["method"],
            options["max_iter"],
            options["screen_iter"],
            options["polish"],
            options["screen_dtype"],
            jnp.asarray(problem.x),
            jnp.asarray(y),
            jnp.asarray(weights),
            jnp.asarray(starts_z),
            jnp.asarray(problem.fixed_vector),
            jnp.asarray(lo),
            jnp.asarray(hi),
            jnp.float64(problem.huber_delta),
            jnp.float64(options["tol"]),
        )
        return tuple(np.asarray(a) for a in out)


def residual_jacobian(problem: Problem, free_values: np.ndarray) -> np.ndarray:
    """d(residual)/d(free parameter) float64[N, F] at free_values float[F], in parameter units
    (not the transformed z), in the loss's residual space."""
    with jax.enable_x64(True):
        return np.asarray(
            _jacobian(
                problem.law,
                problem.free_index,
                problem.loss,
                jnp.asarray(problem.x),
                jnp.asarray(problem.y),
                jnp.asarray(free_values, jnp.float64),
                jnp.asarray(problem.fixed_vector),
            )
        )


@functools.partial(jax.jit, static_argnames=("law", "free_index", "loss"))
def _jacobian(law, free_index, loss, x, y, free_values, fixed):
    def residual(values):
        predicted = law(
            _param_dict(law, free_index, values, fixed), *[x[:, k] for k in range(x.shape[1])]
        )
        return predicted - y if loss == "squared" else jnp.log(predicted) - jnp.log(y)

    return jax.jacfwd(residual)(free_values)
