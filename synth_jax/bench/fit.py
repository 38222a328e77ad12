"""`synth-jax bench fit`: bootstrap refits per second, beside a SciPy loop doing the same work.

Two rows (`--law`): mikami, a least-squares law on few points, and chinchilla, the Huber fit of
Hoffmann et al.'s approach 3 on 245 points (chinchilla.py).

mikami: a 3-parameter law (mikami, all free) on a 10-point noisy curve, 1,000 bootstrap
replicates, each fitted from the same 64-point start grid (4 values per parameter), keeping the
best start per replicate. Three ways, timed in one run:

- jax: the batched fitter as `fit(..., bootstrap=...)` runs it: every start screened for a few
  Levenberg-Marquardt iterations, the best 4 per replicate polished to convergence;
- jax_full: every start of every replicate run to convergence (the exact counterpart of the loop);
- scipy: `scipy.optimize.least_squares` (trf, same bounds and tolerance) from every start of
  every replicate, in a Python loop. A loop of 64,000 fits takes minutes, so by default it runs
  on `--scipy-replicates` of them and the full time is projected linearly (both are reported).

Also reported: how often each JAX variant found a best loss no worse than SciPy's (relative
1e-9), and the machine load, since the benchmark shares the CPU with whatever else runs.
"""

from __future__ import annotations

import json
import os
import platform
import time

import jax
import numpy as np
from scipy.optimize import least_squares

from synth_jax.bench import fit_chinchilla, timed
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.scaling.bootstrap import case_weights
from synth_jax.scaling.problem import prepare
from synth_jax.scaling.solver import solve


def scipy_best_losses(problem, weights: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Best sum of squared residuals per replicate, by least_squares from every start."""
    index = list(problem.free_index)
    lower, upper = problem.lower[index], problem.upper[index]
    x = problem.x[:, 0]

    def model(p):
        return p[0] * np.exp(-p[1] * np.log(x)) + p[2]

    def jacobian(p, sqrt_w):
        power = np.exp(-p[1] * np.log(x))
        return sqrt_w[:, None] * np.stack(
            [power, -p[0] * np.log(x) * power, np.ones_like(x)], axis=1
        )

    best = np.full(len(weights), np.inf)
    for r, w in enumerate(weights):
        sqrt_w = np.sqrt(w)
        for start in problem.starts:
            out = least_squares(
                lambda p, sw: sw * (model(p) - problem.y),
                start,
                jac=jacobian,
                args=(sqrt_w,),
                bounds=(lower, upper),
                method="trf",
                ftol=tol,
                xtol=tol,
                gtol=tol,
                max_nfev=2000,
            )
            best[r] = min(best[r], 2.0 * out.cost)  # scipy's cost is half the sum of squares
    return best


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="synth-jax bench fit", description=__doc__.split("\n")[0])
    p.add_argument("--law", choices=("mikami", "chinchilla"), default="mikami")
    p.add_argument("--replicates", type=int, default=None, help="default 1000; chinchilla 200")
    p.add_argument("--points", type=int, default=None, help="default 10; chinchilla 245")
    p.add_argument(
        "--scipy-replicates",
        type=int,
        default=None,
        help="replicates the SciPy loop really runs (projected to --replicates; default 50, "
        "chinchilla 2)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 5; chinchilla 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--starts", type=int, default=None, help="chinchilla: K of the 243 starts")
    p.add_argument("--pieces", action="store_true", help="chinchilla: time each piece too")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    chinchilla = args.law == "chinchilla"
    defaults = (200, 245, 2, 3) if chinchilla else (1000, 10, 50, 5)
    for name, value in zip(("replicates", "points", "scipy_replicates", "repeats"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.replicates < 1 or args.points < 6 or args.scipy_replicates < 1 or args.repeats < 1:
        raise UsageError(
            "need --replicates >= 1, --points >= 6, --scipy-replicates >= 1, --repeats >= 1"
        )
    if args.starts is not None and not (chinchilla and args.starts >= 1):
        raise UsageError("--starts is for --law chinchilla and must be >= 1")
    if args.pieces and not chinchilla:
        raise UsageError("--pieces is for --law chinchilla")
    if chinchilla:
        print(json.dumps(fit_chinchilla.run(args), indent=2))
        return 0
    scipy_replicates = min(args.scipy_replicates, args.replicates)

    rng = np.random.default_rng(args.seed)
    n = np.geomspace(1e3, 1e6, args.points)
    y = (2.0 * n**-0.3 + 0.25) * (1 + 0.01 * rng.standard_normal(args.points))
    problem = prepare("mikami", n, y)
    assert problem.starts.shape == (64, 3)
    weights = case_weights(args.points, args.replicates, np.random.default_rng(args.seed + 1))
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    jax.block_until_ready(solve(problem, weights, polish=4).objective)
    compile_s = time.perf_counter() - t0
    jax_s, jax_cpu_s, screened = timed(lambda: solve(problem, weights, polish=4), args.repeats)
    solve(problem, weights)  # compile the every-start variant
    full_s, full_cpu_s, full = timed(lambda: solve(problem, weights), max(1, args.repeats // 2))

    scipy_measured_s, scipy_cpu_s, scipy_best = timed(
        lambda: scipy_best_losses(problem, weights[:scipy_replicates]), 1
    )
    scale = args.replicates / scipy_replicates
    scipy_s, scipy_cpu_s = scipy_measured_s * scale, scipy_cpu_s * scale

    def agreement(objective):
        ours = objective[:scipy_replicates]
        return {
            "no_worse_than_scipy": float(np.mean(ours <= scipy_best * (1 + 1e-9) + 1e-300)),
            "max_rel_diff": float(np.max(np.abs(ours - scipy_best) / scipy_best)),
        }

    report = {
        "bench": "fit",
        "work": f"mikami (3 free) on {args.points} points, {args.replicates} bootstrap "
        f"replicates x {len(problem.starts)} starts",
        "device": f"{jax.devices('cpu')[0].device_kind}, {os.cpu_count()} cores",
        "machine": platform.processor() or platform.machine(),
        "jax_version": jax.__version__,
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        "jax_compile_and_first_run_s": round(compile_s, 3),
        "jax_s": round(jax_s, 4),
        "jax_cpu_s": round(jax_cpu_s, 4),
        "jax_fits_per_s": round(args.replicates / jax_s, 1),
        "jax_full_s": round(full_s, 4),
        "jax_full_cpu_s": round(full_cpu_s, 4),
        "scipy_replicates_run": scipy_replicates,
        "scipy_measured_s": round(scipy_measured_s, 3),
        "scipy_s": round(scipy_s, 3),
        "scipy_cpu_s": round(scipy_cpu_s, 3),
        "scipy_projected": scipy_replicates < args.replicates,
        "speedup_vs_scipy": round(scipy_s / jax_s, 1),
        "speedup_full_vs_scipy": round(scipy_s / full_s, 1),
        "speedup_vs_scipy_cpu_time": round(scipy_cpu_s / jax_cpu_s, 1),
        "jax_vs_scipy": agreement(screened.objective),
        "jax_full_vs_scipy": agreement(full.objective),
        "jax_converged": float(np.mean(screened.converged)),
    }
    print(json.dumps(report, indent=2))
    return 0
