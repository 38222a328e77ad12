"""`fit`: the user-facing fit of a law to points, with bootstrap intervals that say how they
were obtained (problem.py validates, solver.py fits, bootstrap.py resamples, result.py holds)."""

from __future__ import annotations

import dataclasses

import numpy as np

from synth_jax.errors import UsageError
from synth_jax.scaling import bootstrap as resampling
from synth_jax.scaling import stats
from synth_jax.scaling.laws import Law
from synth_jax.scaling.problem import prepare
from synth_jax.scaling.result import BootstrapRecord, FitResult, not_converged_warning
from synth_jax.scaling.solver import default_method, residual_jacobian, solve


def fit(
    law: Law | str,
    x,
    y,
    *,
    fix: dict[str, float] | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
    init: dict[str, tuple[float, ...]] | None = None,
    starts=None,
    loss: str = "squared",
    huber_delta: float = 1e-3,
    method: str | None = None,
    bootstrap: int = 0,
    resample: str = "auto",
    strata=None,
    clusters=None,
    seed: int = 0,
    ci: float = 0.95,
    tol: float = 1e-12,
    max_iter: int | None = None,
    polish: int | None = 4,
) -> FitResult:
    """Fits `law` to points (x float[N] or float[N, K], y float[N]); see `prepare` and `solve`.

    bootstrap: number of resampled refits (each from the whole start grid) for percentile
    intervals at level `ci`. resample: auto, case, seed, residual or wild (see bootstrap.py);
    strata int[N] (case: resample within each label, e.g. per size); clusters int[N] (seed: the
    seed of each point). Replicates that cannot identify the law are redrawn; refits that do not
    converge count beyond both bounds of every interval (a warning above 1%); `result.bootstrap`
    counts both and names the method. The main fit runs every start to convergence; each refit
    screens the whole grid and polishes its `polish` best starts (None: all), see `solve`.
    """
    problem = prepare(
        law,
        x,
        y,
        fix=fix,
        bounds=bounds,
        init=init,
        starts=starts,
        loss=loss,
        huber_delta=huber_delta,
    )
    _check_options(problem, bootstrap, ci, strata, clusters)
    options = dict(method=method or default_method(problem), tol=tol, max_iter=max_iter)
    batch = solve(problem, **options)
    best = batch.params[0]
    params = problem.full_params(best)
    predicted = problem.predict(params)
    jac = residual_jacobian(problem, best)
    sum_squares = float(np.sum(problem.residuals(predicted) ** 2))
    n = len(problem.y)
    aic, bic = stats.information_criteria(sum_squares, n, len(problem.free))
    boot = _Bootstrap(np.zeros((0, len(problem.law.param_names))), None, None, {})
    if bootstrap:
        scheme = (bootstrap, resample, strata, clusters, seed, polish)
        boot = _bootstrap(problem, params, jac, scheme, ci, options)
    return FitResult(
        problem=problem,
        params=params,
        stderr=dict(zip(problem.free, map(float, stats.jacobian_stderr(jac, sum_squares, n)))),
        ci=boot.intervals,
        ci_level=ci,
        objective=float(batch.objective[0]),
        r2=stats.r_squared(problem.y, predicted),
        rmse=stats.rmse(problem.y, predicted),
        log_rmse=stats.log_rmse(problem.y, predicted),
        aic=aic,
        bic=bic,
        status=batch.status(0),
        hit_bounds=[name for name, hit in zip(problem.free, batch.at_bound[0]) if hit],
        starts=len(problem.starts),
        starts_agreeing=int(batch.agreeing[0]),
        iterations=int(batch.iterations[0]),
        bootstrap_params=boot.params,
        bootstrap=boot.record,
        method=options["method"],
        bootstrap_probabilities=boot.probabilities,
    )


def _check_options(problem, bootstrap: int, ci: float, strata, clusters) -> None:
    if not 0 < ci < 1:
        raise UsageError(f"ci must be in (0, 1), got {ci}")
    if bootstrap < 0:
        raise UsageError(f"bootstrap must be >= 0, got {bootstrap}")
    n = len(problem.y)
    for name, labels in (("strata", strata), ("clusters", clusters)):
        if labels is not None and len(labels) != n:
            raise UsageError(f"{name} has {len(labels)} labels for {n} points")
    if bootstrap:
        resampling.check_memory(problem, bootstrap)


@dataclasses.dataclass
class _Bootstrap:
    """The refits' parameters float64[B, P] (NaN rows: not converged), their probabilities
    float64[B] (or None: equal), the record, and the free parameters' intervals."""

    params: np.ndarray
    probabilities: np.ndarray | None
    record: BootstrapRecord | None
    intervals: dict[str, tuple[float, float]]


def _bootstrap(problem, params: dict, jac, scheme: tuple, ci: float, options: dict) -> _Bootstrap:
    """Resamples (scheme: replicates, resample, strata, clusters, seed, polish), refits and takes
    the expanded percentile intervals."""
    replicates, resample, strata, clusters, seed, polish = scheme
    chosen, strata, note = resampling.choose(resample, problem, strata, clusters)
    predicted = problem.predict(params)
    reps = resampling.draw(chosen, problem, predicted, replicates, seed, strata, clusters, jac)
    refits = solve(
        problem, reps.weights, y=reps.y, polish=polish, progress="bootstrap refits", **options
    )
    used = refits.converged & np.isfinite(refits.objective)
    names = problem.law.param_names
    boot = np.array([list(problem.full_params(p).values()) for p in refits.params], np.float64)
    boot = boot.reshape(-1, len(names))
    boot[~used] = np.nan
    tail, widen = resampling.interval_rule(chosen, problem, ci, strata, clusters)
    lower, upper = stats.percentile_interval(boot, ci, tail, reps.probabilities)
    lower, upper = stats.widened(lower, upper, np.array(list(params.values())), widen)
    # a widened bound stays within the parameter's own bounds
    lower, upper = np.maximum(lower, problem.lower), np.minimum(upper, problem.upper)
    p = (
        np.full(len(used), 1.0 / max(len(used), 1))
        if reps.probabilities is None
        else reps.probabilities
    )
    at_bound = refits.at_bound[used]
    record = BootstrapRecord(
        method=chosen,
        requested=int(replicates),
        refits=len(used),
        used=int(used.sum()),
        not_converged=int((~used).sum()),
        redrawn=reps.redrawn,
        dropped_unidentifiable=reps.dropped,
        exact=reps.exact,
        distinct=reps.distinct,
        level=float(ci),
        tail=tail,
        widen=widen,
        note=note,
        at_bound={
            name: float(at_bound[:, j].mean()) if len(at_bound) else float("nan")
            for j, name in enumerate(problem.free)
        },
        warning=not_converged_warning(float(p[~used].sum()), len(used)),
        starts_at_iteration_cap=int(refits.capped.sum()),
    )
    intervals = {
        name: (float(lower[i]), float(upper[i]))
        for i, name in enumerate(names)
        if name in problem.free
    }
    return _Bootstrap(boot, reps.probabilities, record, intervals)
