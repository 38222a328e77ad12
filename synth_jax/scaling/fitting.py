"""`fit`: the user-facing fit of a law to points, with bootstrap intervals that say how they
were obtained (problem.py validates, solver.py fits, bootstrap.py resamples, result.py holds)."""

from __future__ import annotations

import numpy as np

from synth_jax.errors import UsageError
from synth_jax.scaling import bootstrap as resampling
from synth_jax.scaling import stats
from synth_jax.scaling.laws import Law
from synth_jax.scaling.problem import prepare
from synth_jax.scaling.result import BootstrapRecord, FitResult
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
    seed of each point). Replicates that cannot identify the law are redrawn, refits that do not
    converge are left out; `result.bootstrap` counts both and names the method. The main fit
    runs every start to convergence; each refit screens the whole grid and polishes its `polish`
    best starts (None: all), see `solve`.
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
    if not 0 < ci < 1:
        raise UsageError(f"ci must be in (0, 1), got {ci}")
    if bootstrap < 0:
        raise UsageError(f"bootstrap must be >= 0, got {bootstrap}")
    n = len(problem.y)
    for name, labels in (("strata", strata), ("clusters", clusters)):
        if labels is not None and len(labels) != n:
            raise UsageError(f"{name} has {len(labels)} labels for {n} points")
    method = method or default_method(problem)
    options = dict(method=method, tol=tol, max_iter=max_iter)
    batch = solve(problem, **options)
    best = batch.params[0]
    params = problem.full_params(best)
    predicted = problem.predict(params)
    jac = residual_jacobian(problem, best)
    residual = problem.residuals(predicted)
    sum_squares = float(np.sum(residual**2))
    stderr = stats.jacobian_stderr(jac, sum_squares, n)
    aic, bic = stats.information_criteria(sum_squares, n, len(problem.free))
    names = problem.law.param_names
    boot = np.zeros((0, len(names)))
    record, intervals = None, {}
    if bootstrap:
        chosen, strata, note = resampling.choose(resample, problem, strata, clusters)
        drawn = resampling.draw(chosen, problem, predicted, bootstrap, seed, strata, clusters, jac)
        refits = solve(problem, drawn.weights, y=drawn.y, polish=polish, **options)
        used = refits.converged & np.isfinite(refits.objective)
        boot = np.array(
            [list(problem.full_params(p).values()) for p in refits.params[used]], np.float64
        ).reshape(-1, len(names))
        tail = resampling.interval_tail(chosen, problem, ci, strata, clusters)
        lower, upper = stats.percentile_interval(boot, ci, tail)
        intervals = {
            name: (float(lower[i]), float(upper[i]))
            for i, name in enumerate(names)
            if name in problem.free
        }
        at_bound = refits.at_bound[used]
        record = BootstrapRecord(
            method=chosen,
            requested=int(bootstrap),
            used=int(used.sum()),
            redrawn=drawn.redrawn,
            dropped_unidentifiable=drawn.dropped,
            dropped_not_converged=int((~used).sum()),
            level=float(ci),
            tail=tail,
            note=note,
            at_bound={
                name: float(at_bound[:, j].mean()) if len(at_bound) else float("nan")
                for j, name in enumerate(problem.free)
            },
        )
    return FitResult(
        problem=problem,
        params=params,
        stderr={name: float(s) for name, s in zip(problem.free, stderr)},
        ci=intervals,
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
        bootstrap_params=boot,
        bootstrap=record,
        method=method,
    )
