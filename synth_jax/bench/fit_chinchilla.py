"""`synth-jax bench fit --law chinchilla`: the Huber fit of Chinchilla's approach 3, bootstrapped,
beside a SciPy loop doing the same work.

The data: `points` (default 245, the number of runs in the public replication of approach 3)
(params N, tokens D, loss) triples synthesised from the published fit (Hoffmann et al.,
"Training Compute-Optimal Large Language Models", 2022: E = 1.69, A = 406.4, B = 410.7,
alpha = 0.34, beta = 0.28): N log-uniform in [7e7, 1.6e10], tokens per parameter log-uniform in
[2, 200], the loss times exp(0.02 z), z standard normal, seeded. The law E + A/N^a + B/D^b is
fitted with the Huber loss (delta 1e-3) on log residuals, i.e. the log-sum-exp form of the
paper, from the law's default 3^5 = 243-start grid (`--starts K`: an evenly spaced K of them,
for quick runs).

Timed, in one run: the main fit (every start to convergence, as `fit` runs it), and a case
bootstrap of `--replicates` refits as `fit(..., bootstrap=...)` runs them (every start screened
for 8 float32 Levenberg-Marquardt iterations, the best 4 polished to convergence in float64);
beside `scipy_best`, scipy.optimize.minimize (L-BFGS-B, analytic gradient, ftol 1e-15, gtol
1e-12, the same bounds, the same objective, the same starts) on the main fit and on
`--scipy-replicates` of the refits, projected linearly to all of them. `--pieces` also times
where the time goes: compilation, the former L-BFGS (optax, zoom line search) path on the main
fit, the screening in float64 and float32, and the polishing.
"""

from __future__ import annotations

import os
import platform
import time

import jax
import numpy as np
from scipy.optimize import minimize

from synth_jax.bench import timed
from synth_jax.scaling.bootstrap import case_weights
from synth_jax.scaling.problem import Problem, prepare
from synth_jax.scaling.solver import _solve_call, problems_per_call, solve
from synth_jax.scaling.transforms import transform_bounds

# Hoffmann et al. (2022), approach 3
PUBLISHED = {"E": 1.69, "A": 406.4, "a": 0.34, "B": 410.7, "b": 0.28}
POLISH = 4  # the refits' default (fitting.fit)


def chinchilla_points(points: int = 245, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x float64[points, 2] = (params, tokens), loss float64[points]), synthesised from the
    published approach-3 fit with 2% log-normal noise."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), points))
    d = n * np.exp(rng.uniform(np.log(2.0), np.log(200.0), points))
    p = PUBLISHED
    loss = p["E"] + p["A"] * n ** -p["a"] + p["B"] * d ** -p["b"]
    return np.stack([n, d], axis=1), loss * np.exp(0.02 * rng.standard_normal(points))


def chinchilla_problem(points: int = 245, seed: int = 0, starts: int | None = None) -> Problem:
    """The bench's problem: Huber (delta 1e-3) on log residuals, all five parameters free, the
    default grid or an evenly spaced `starts` of it."""
    x, y = chinchilla_points(points, seed)
    problem = prepare("chinchilla", x, y, loss="huber", huber_delta=1e-3)
    if starts is None or starts >= len(problem.starts):
        return problem
    keep = np.linspace(0, len(problem.starts) - 1, starts).round().astype(int)
    return prepare("chinchilla", x, y, loss="huber", huber_delta=1e-3, starts=problem.starts[keep])


def scipy_best(problem: Problem, weights: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Best Huber loss float64[R] of each row of weights float[R, N] on the Chinchilla law, by
    L-BFGS-B from every start of the problem's grid, in the fitter's parameter units (log A and
    log B: they are fitted on a log scale) within the same bounds."""
    assert problem.law.name == "chinchilla" and len(problem.free) == 5
    lo, hi = transform_bounds(problem)
    log_scale = np.array([kind == "log_interval" for kind in problem.kinds])
    log_n, log_d = np.log(problem.x[:, 0]), np.log(problem.x[:, 1])
    log_y, delta = np.log(problem.y), problem.huber_delta

    def objective(t, w):
        e, log_a, a, log_b, b = t
        term_n, term_d = np.exp(log_a - a * log_n), np.exp(log_b - b * log_d)
        predicted = e + term_n + term_d
        r = np.log(predicted) - log_y
        size = np.abs(r)
        value = np.sum(w * np.where(size <= delta, 0.5 * r * r, delta * (size - 0.5 * delta)))
        psi = w * np.clip(r, -delta, delta) / predicted
        dn, dd = psi * term_n, psi * term_d
        grad = [psi.sum(), dn.sum(), -(dn * log_n).sum(), dd.sum(), -(dd * log_d).sum()]
        return value, np.array(grad)

    starts = np.where(log_scale, np.log(problem.starts), problem.starts)
    options = dict(ftol=1e-15, gtol=tol, maxiter=10_000, maxfun=100_000)
    best = np.full(len(weights), np.inf)
    for row, w in enumerate(np.asarray(weights, np.float64)):
        for start in starts:
            out = minimize(
                objective,
                start,
                args=(w,),
                jac=True,
                method="L-BFGS-B",
                bounds=list(zip(lo, hi)),
                options=options,
            )
            best[row] = min(best[row], float(out.fun))
    return best


def _agreement(ours: np.ndarray, theirs: np.ndarray) -> dict:
    return {
        "no_worse_than_scipy": float(np.mean(ours <= theirs * (1 + 1e-6))),
        "max_rel_diff": float(np.max(np.abs(ours - theirs) / theirs)),
    }


def run(args) -> dict:
    """The chinchilla row (args: replicates, points, starts, scipy_replicates, repeats, seed,
    pieces) as a JSON-ready dict."""
    problem = chinchilla_problem(args.points, args.seed, args.starts)
    weights = case_weights(args.points, args.replicates, np.random.default_rng(args.seed + 1))
    refit = lambda: solve(problem, weights, polish=POLISH)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    solve(problem), refit()
    compile_s = time.perf_counter() - t0
    fit_s, fit_cpu_s, main = timed(lambda: solve(problem), args.repeats)
    boot_s, boot_cpu_s, boot = timed(refit, args.repeats)
    k = min(args.scipy_replicates, args.replicates)
    scipy_fit_s, scipy_fit_cpu_s, scipy_main = timed(
        lambda: scipy_best(problem, np.ones((1, args.points))), 1
    )
    scipy_refits_s, scipy_refits_cpu_s, scipy_refits = timed(
        lambda: scipy_best(problem, weights[:k]), 1
    )
    per_100 = 100.0 / args.replicates
    scipy_boot_s = scipy_refits_s * args.replicates / k
    report = {
        "bench": "fit",
        "law": "chinchilla",
        "work": f"chinchilla (5 free, Huber delta 1e-3 on log loss) on {args.points} points, "
        f"{args.replicates} case-bootstrap refits x {len(problem.starts)} starts",
        "device": f"{jax.devices('cpu')[0].device_kind}, {os.cpu_count()} cores",
        "machine": platform.processor() or platform.machine(),
        "jax_version": jax.__version__,
        "load_avg_before": [round(v, 2) for v in load_before],
        "jax_compile_and_first_run_s": round(compile_s, 3),
        "jax_fit_s": round(fit_s, 4),
        "jax_fit_cpu_s": round(fit_cpu_s, 4),
        "jax_bootstrap_s": round(boot_s, 3),
        "jax_bootstrap_cpu_s": round(boot_cpu_s, 3),
        "jax_per_100_refits_s": round(boot_s * per_100, 3),
        "problems_per_call": problems_per_call(problem),
        "scipy_fit_s": round(scipy_fit_s, 3),
        "scipy_replicates_run": k,
        "scipy_refits_measured_s": round(scipy_refits_s, 3),
        "scipy_bootstrap_s": round(scipy_boot_s, 2),
        "scipy_per_100_refits_s": round(scipy_boot_s * per_100, 2),
        "scipy_projected": k < args.replicates,
        "speedup_fit": round(scipy_fit_s / fit_s, 1),
        "speedup_bootstrap": round(scipy_boot_s / boot_s, 1),
        "speedup_bootstrap_cpu_time": round(
            scipy_refits_cpu_s * args.replicates / k / boot_cpu_s, 1
        ),
        "fit_vs_scipy": _agreement(main.objective, scipy_main),
        "refits_vs_scipy": _agreement(boot.objective[:k], scipy_refits),
        "refits_converged": float(np.mean(boot.converged)),
        "refit_lanes_at_iteration_cap": int(boot.capped.sum()),
        "refit_iterations_max": int(boot.iterations.max()),
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
    }
    if args.pieces:
        report["pieces"] = pieces(problem, weights[: problems_per_call(problem)], args.repeats)
    return report


def pieces(problem: Problem, weights: np.ndarray, repeats: int) -> dict:
    """Where the time goes, seconds per solver call on one call's worth of refits (weights
    float[R, N]), and the former L-BFGS path on the main fit."""
    y = np.broadcast_to(problem.y, weights.shape)
    base = dict(method="lm", max_iter=1000, screen_iter=8, polish=POLISH, tol=1e-12)
    variants = {
        "screen_float64_8_iterations": base | dict(polish=0, max_iter=8, screen_dtype="float64"),
        "screen_float64_then_polish": base | dict(screen_dtype="float64"),
        "screen_float32_then_polish": base | dict(screen_dtype="float32"),
        "every_start_to_convergence_one_refit": base | dict(polish=0, screen_dtype="float64"),
    }
    out = {"refits_per_call": len(weights)}
    for name, options in variants.items():
        if name.endswith("one_refit"):
            # every lane of a call runs until the slowest stops: one refit's 243 lanes suffice
            weights, y = weights[:1], y[:1]
        t0 = time.perf_counter()
        _solve_call(problem, weights, y, options)
        out[f"{name}_compile_s"] = round(time.perf_counter() - t0, 3)
        call = lambda o=options, w=weights, yy=y: _solve_call(problem, w, yy, o)
        seconds, _, _ = timed(call, repeats)
        out[f"{name}_s"] = round(seconds, 3)
    polish_s = out["screen_float64_then_polish_s"] - out["screen_float64_8_iterations_s"]
    out["polish_s (derived)"] = round(polish_s, 3)
    out["screen_float32_s (derived)"] = round(out["screen_float32_then_polish_s"] - polish_s, 3)
    t0 = time.perf_counter()
    solve(problem, method="lbfgs")
    out["lbfgs_main_fit_compile_and_run_s"] = round(time.perf_counter() - t0, 3)
    seconds, _, lbfgs = timed(lambda: solve(problem, method="lbfgs"), 1)
    out["lbfgs_main_fit_s"] = round(seconds, 3)
    out["lbfgs_iterations_of_best_start"] = int(lbfgs.iterations[0])
    out["lbfgs_starts_at_iteration_cap"] = int(lbfgs.capped[0])
    out["lbfgs_main_fit_objective"] = float(lbfgs.objective[0])
    return out
