"""The planner: invert a fitted law, with bootstrap intervals, to answer data questions.

- How many pre-training images does a target error need? (None when the target is at or below
  the law's floor, the transfer gap: more data of this kind cannot reach it.)
- What does doubling the largest size tried buy?

Each answer is computed for the best fit and for every bootstrap refit; the interval is the
percentile interval over refits, and the share of refits for which a target is unreachable is
reported too. The law is assumed to decrease in the data size (all built-in laws do, within
their default bounds); the inversion is a bisection in log size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.errors import UsageError
from synth_jax.scaling import stats
from synth_jax.scaling.fitter import FitResult

_LOG_SIZE_RANGE = (0.0, np.log(1e30))  # sizes searched: 1 .. 1e30


def _param_sets(result: FitResult) -> dict[str, np.ndarray]:
    """{name: float64[1 + B]}: the best fit first, then the bootstrap refits."""
    names = result.law.param_names
    rows = np.concatenate(
        [np.array([[result.params[n] for n in names]]), result.bootstrap_params], axis=0
    )
    return {n: rows[:, i] for i, n in enumerate(names)}


@functools.partial(jax.jit, static_argnums=0)
def _law_at(law, params, sizes):
    return law(params, sizes)


def _evaluate(result: FitResult, params: dict[str, np.ndarray], sizes: np.ndarray) -> np.ndarray:
    """The law at sizes float[M] for M parameter sets (elementwise), float64[M]."""
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        return np.asarray(_law_at(result.law, p, jnp.asarray(sizes, jnp.float64)))


@functools.partial(jax.jit, static_argnums=0)
def _bisect_log_size(law, params, target, lo, hi):
    """Smallest log size in [lo, hi] where law <= target, per parameter set (hi if none)."""

    def step(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        reached = law(params, jnp.exp(mid)) <= target
        return jnp.where(reached, lo, mid), jnp.where(reached, mid, hi)

    return jax.lax.fori_loop(0, 200, step, (lo, hi))[1]


def _size_needed(result: FitResult, params, target: float) -> np.ndarray:
    """Smallest size at which the law reaches target, per parameter set (inf: never)."""
    count = len(next(iter(params.values())))
    lo = np.full(count, _LOG_SIZE_RANGE[0])
    hi = np.full(count, _LOG_SIZE_RANGE[1])
    reached_at_hi = _evaluate(result, params, np.exp(hi)) <= target
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        log_size = np.asarray(
            _bisect_log_size(result.law, p, jnp.float64(target), jnp.asarray(lo), jnp.asarray(hi))
        )
    return np.where(reached_at_hi, np.exp(log_size), np.inf)


def _summary(best: float, samples: np.ndarray, level: float) -> dict:
    lower, upper = stats.percentile_interval(samples[:, None], level) if len(samples) else ([], [])
    return {
        "value": best,
        "ci": [float(lower[0]), float(upper[0])] if len(samples) else None,
    }


def _fmt(v: float) -> str:
    return f"{v:.3g}" if np.isfinite(v) else "n/a"


def plan(
    result: FitResult,
    target: float | None = None,
    *,
    x_name: str = "n",
    y_name: str = "error",
) -> dict:
    """Planner answers for a fitted one-input law; `message` says them in plain words.

    Returns floor (the transfer gap, if the law has one), doubling (error at the largest size
    tried and at twice that, and the gain), and with a target: size_needed (value and interval
    over refits, None when unreachable), unreachable_fraction (share of refits that can never
    reach it) and reachable (False when the best fit cannot reach it).
    """
    law = result.law
    if law.num_inputs != 1:
        raise UsageError(f"the planner inverts one-input laws; {law.name!r} has {law.num_inputs}")
    level = result.ci_level
    params = _param_sets(result)
    ok = np.all([np.isfinite(v) for v in params.values()], axis=0)
    params = {k: v[ok] for k, v in params.items()}
    boot = slice(1, None)
    out: dict = {"x": x_name, "y": y_name}
    lines = []

    if law.floor is not None:
        with jax.enable_x64(True):
            floor = np.asarray(
                law.floor({k: jnp.asarray(v) for k, v in params.items()}), np.float64
            ) * np.ones(len(params[law.param_names[0]]))
        out["floor"] = _summary(float(floor[0]), floor[boot], level)
        ci = out["floor"]["ci"]
        lines.append(
            f"floor (transfer gap): {y_name} -> {_fmt(floor[0])}"
            + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
            + f" as {x_name} grows without bound"
        )
    else:
        floor = None

    largest = float(np.max(result.problem.x[:, 0]))
    now = _evaluate(result, params, np.full(len(ok[ok]), largest))
    doubled = _evaluate(result, params, np.full(len(ok[ok]), 2 * largest))
    gain = now - doubled
    out["doubling"] = {
        "from": largest,
        "to": 2 * largest,
        "error_now": _summary(float(now[0]), now[boot], level),
        "error_doubled": _summary(float(doubled[0]), doubled[boot], level),
        "gain": _summary(float(gain[0]), gain[boot], level),
    }
    ci = out["doubling"]["gain"]["ci"]
    lines.append(
        f"doubling {x_name} from {largest:.3g} to {2 * largest:.3g} lowers {y_name} by "
        f"{_fmt(gain[0])}"
        + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
        + f" (from {_fmt(now[0])} to {_fmt(doubled[0])})"
    )

    if target is not None:
        target = float(target)
        needed = _size_needed(result, params, target)
        if floor is not None:
            needed = np.where(target <= floor, np.inf, needed)
        reachable = bool(np.isfinite(needed[0]))
        refits = needed[boot]
        unreachable_fraction = float(np.mean(~np.isfinite(refits))) if len(refits) else None
        finite = np.where(np.isfinite(refits), refits, np.inf)
        lower, upper = (
            stats.percentile_interval(finite[:, None], level) if len(refits) else ([], [])
        )
        out["target"] = target
        out["reachable"] = reachable
        out["size_needed"] = {
            "value": float(needed[0]) if reachable else None,
            "ci": [float(lower[0]), float(upper[0])] if len(refits) else None,
            "times_largest_tried": float(needed[0] / largest) if reachable else None,
        }
        out["unreachable_fraction"] = unreachable_fraction
        if not reachable and floor is not None and target <= floor[0]:
            lines.append(
                f"target {y_name} {target:.3g} is at or below the floor {_fmt(floor[0])}: "
                f"UNREACHABLE with more data of this kind; a better-matched pre-training "
                f"source or a bigger model must lower the floor first"
            )
        elif not reachable:
            lines.append(
                f"target {y_name} {target:.3g} is not reached even at {x_name} = 1e30: "
                "UNREACHABLE under this law"
            )
        elif needed[0] <= largest:
            lines.append(
                f"target {y_name} {target:.3g} is already reached at {x_name} = "
                f"{needed[0]:.3g} (within the sizes tried)"
            )
        else:
            span = (
                f" [{lower[0]:.3g}, {upper[0]:.3g}]".replace("inf", "unreachable")
                if len(refits)
                else ""
            )
            lines.append(
                f"target {y_name} {target:.3g} needs {x_name} = {needed[0]:.3g}{span}, "
                f"{needed[0] / largest:.3g}x the largest size tried: an extrapolation, as "
                "trustworthy as the extrapolation check says"
            )
        if unreachable_fraction:
            lines.append(
                f"{100 * unreachable_fraction:.0f}% of bootstrap refits cannot reach the target"
            )
    out["message"] = "; ".join(lines)
    return out
