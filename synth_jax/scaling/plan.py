"""The planner: invert a fitted law, with bootstrap intervals, to answer data questions.

- How many pre-training images does a target error need? (unreachable when the target is at
  or below the law's floor, the transfer gap: more data of this kind cannot reach it.)
- What does doubling the largest size tried buy?

Each answer is computed for the best fit and for every bootstrap refit. A refit that can never
reach the target is an answer too ("unreachable", an infinite size): it stays in the percentile
interval, so when more than the interval's upper tail of refits cannot reach the target, the
upper bound is "unreachable", and `reach_fraction` says what share of refits reach it.

The inversion assumes the law decreases in the size over the range it searches (from the
smallest size tried up): a best fit that rises anywhere there (a broken law with a rising
segment, say) is refused with a UsageError. The size needed is the first crossing of the target,
found on a log grid and refined by bisection, so a refit that is not monotone still gets the
smallest size at which it reaches the target.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.errors import UsageError
from synth_jax.scaling.result import FitResult

_LARGEST = 1e30  # sizes searched: the smallest tried .. 1e30
_GRID = 512  # log-spaced sizes scanned for the first crossing and for monotonicity
_RISE_TOLERANCE = 1e-9  # relative rise between grid sizes still counted as flat
UNREACHABLE = "unreachable"


def _param_sets(result: FitResult) -> dict[str, np.ndarray]:
    """{name: float64[1 + B]}: the best fit first, then the bootstrap refits."""
    names = result.law.param_names
    rows = np.concatenate(
        [np.array([[result.params[n] for n in names]]), result.bootstrap_params], axis=0
    )
    return {n: rows[:, i] for i, n in enumerate(names)}


@functools.partial(jax.jit, static_argnums=0)
def _law_on_grid(law, params, log_sizes):
    """The law float64[M, G] for M parameter sets at sizes exp(log_sizes float[G])."""
    return jax.vmap(lambda p: law(p, jnp.exp(log_sizes)))(params)


def _evaluate(result: FitResult, params: dict[str, np.ndarray], sizes: np.ndarray) -> np.ndarray:
    """The law at sizes float[G] for M parameter sets, float64[M, G]."""
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        log_sizes = jnp.log(jnp.asarray(sizes, jnp.float64))
        return np.asarray(_law_on_grid(result.law, p, log_sizes))


@functools.partial(jax.jit, static_argnums=0)
def _bisect_log_size(law, params, target, lo, hi):
    """Refines a crossing: law(lo) > target >= law(hi) per parameter set; returns hi."""

    def step(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        reached = jax.vmap(lambda p, m: law(p, jnp.exp(m)))(params, mid) <= target
        return jnp.where(reached, lo, mid), jnp.where(reached, mid, hi)

    return jax.lax.fori_loop(0, 100, step, (lo, hi))[1]


def _log_grid(smallest: float) -> np.ndarray:
    return np.linspace(np.log(smallest), np.log(_LARGEST), _GRID)


def _size_needed(result: FitResult, params, target: float, smallest: float) -> np.ndarray:
    """The smallest size >= `smallest` at which the law reaches target, per parameter set
    (float64[M]; inf: never within 1e30)."""
    grid = _log_grid(smallest)
    values = _evaluate(result, params, np.exp(grid))  # [M, G]
    reached = values <= target
    first = np.argmax(reached, axis=1)
    ever = reached.any(axis=1)
    at_start = ever & (first == 0)
    lo = grid[np.maximum(first - 1, 0)]
    hi = grid[first]
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        refined = np.asarray(
            _bisect_log_size(result.law, p, jnp.float64(target), jnp.asarray(lo), jnp.asarray(hi))
        )
    size = np.where(at_start, smallest, np.exp(refined))
    return np.where(ever, size, np.inf)


def check_decreasing(result: FitResult, smallest: float, x_name: str = "n") -> None:
    """Raises UsageError when the best fit rises anywhere between `smallest` and 1e30."""
    grid = _log_grid(smallest)
    best = {k: np.array([v]) for k, v in result.params.items()}
    values = _evaluate(result, best, np.exp(grid))[0]
    rise = np.diff(values) > _RISE_TOLERANCE * np.maximum(np.abs(values[:-1]), 1e-300)
    if rise.any():
        where = float(np.exp(grid[np.argmax(rise)]))
        raise UsageError(
            f"the planner inverts laws that decrease in {x_name}; the fitted {result.law.name} "
            f"rises from {x_name} = {where:.3g} on (its parameters: "
            + ", ".join(f"{k}={v:.3g}" for k, v in result.params.items())
            + "): fit a monotone law (e.g. mikami) or bound the parameters that let it rise"
        )


def interval(result: FitResult, best: float, samples: np.ndarray) -> list | None:
    """The bootstrap interval [lower, upper] (see FitResult.bootstrap_interval) of the refits'
    sizes float[B], which may hold inf (an answer that is never reached: a bound that falls on
    it is UNREACHABLE) and NaN (a refit that did not converge, counted beyond both bounds).
    None when there are no refits."""
    samples = np.asarray(samples, np.float64)
    if not len(samples):
        return None
    lower, upper = result.bootstrap_interval(samples[:, None], np.array([best]), log=True)
    if np.isnan(lower[0]):
        return None
    return [float(b[0]) if np.isfinite(b[0]) else UNREACHABLE for b in (lower, upper)]


def _summary(result: FitResult, best: float, samples: np.ndarray) -> dict:
    """The best fit's value and the interval over the refits' values float[B]."""
    if not len(samples):
        return {"value": best, "ci": None}
    lower, upper = result.bootstrap_interval(samples[:, None], np.array([best]))
    return {"value": best, "ci": [float(lower[0]), float(upper[0])]}


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
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
    tried and at twice that, and the gain), and with a target: size_needed (value, and the
    interval over refits whose upper bound is "unreachable" when too few refits reach it),
    reach_fraction (share of refits that reach it, weighted by their probabilities; one that did
    not converge does not count as reaching), unreachable_fraction (1 - reach_fraction)
    and reachable (whether the best fit reaches it). Raises UsageError for a two-input law or
    a best fit that is not decreasing over the range searched.
    """
    law = result.law
    if law.num_inputs != 1:
        raise UsageError(f"the planner inverts one-input laws; {law.name!r} has {law.num_inputs}")
    smallest = float(np.min(result.problem.x[:, 0]))
    check_decreasing(result, smallest, x_name)
    tail = result.bootstrap.tail if result.bootstrap else (1 - result.ci_level) / 2
    params = _param_sets(result)
    boot = slice(1, None)
    out: dict = {"x": x_name, "y": y_name, "refits": len(params[law.param_names[0]]) - 1}
    if result.bootstrap is not None:
        out["ci_method"] = result.bootstrap.describe()
    lines = []

    if law.floor is not None:
        with jax.enable_x64(True):
            floor = np.asarray(
                law.floor({k: jnp.asarray(v) for k, v in params.items()}), np.float64
            ) * np.ones(len(params[law.param_names[0]]))
        out["floor"] = _summary(result, float(floor[0]), floor[boot])
        ci = out["floor"]["ci"]
        lines.append(
            f"floor (transfer gap): {y_name} -> {_fmt(floor[0])}"
            + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
            + f" as {x_name} grows without bound"
        )
    else:
        floor = None

    largest = float(np.max(result.problem.x[:, 0]))
    now, doubled = _evaluate(result, params, np.array([largest, 2 * largest])).T
    gain = now - doubled
    out["doubling"] = {
        "from": largest,
        "to": 2 * largest,
        "error_now": _summary(result, float(now[0]), now[boot]),
        "error_doubled": _summary(result, float(doubled[0]), doubled[boot]),
        "gain": _summary(result, float(gain[0]), gain[boot]),
    }
    ci = out["doubling"]["gain"]["ci"]
    lines.append(
        f"doubling {x_name} from {largest:.3g} to {2 * largest:.3g} lowers {y_name} by "
        f"{_fmt(gain[0])}"
        + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
        + f" (from {_fmt(now[0])} to {_fmt(doubled[0])})"
    )

    if target is not None:
        lines += _target(out, result, params, float(target), floor, smallest, largest, tail)
    out["message"] = "; ".join(lines)
    return out


def _target(out, result, params, target, floor, smallest, largest, tail) -> list[str]:
    """Fills out's target answers; returns their lines."""
    x_name, y_name = out["x"], out["y"]
    needed = _size_needed(result, params, target, smallest)
    if floor is not None:
        needed = np.where(target <= floor, np.inf, needed)
    unknown = np.isnan(np.stack(list(params.values()))).any(axis=0)
    needed = np.where(unknown, np.nan, needed)  # a refit that did not converge has no answer
    reachable = bool(np.isfinite(needed[0]))
    refits = needed[1:]
    p = result.bootstrap_probabilities
    p = np.full(len(refits), 1.0 / max(len(refits), 1)) if p is None else p
    reach = 1.0 - float(np.sum(p[~np.isfinite(refits)])) if len(refits) else None
    ci = interval(result, float(needed[0]), refits)
    out["target"] = target
    out["reachable"] = reachable
    out["size_needed"] = {
        "value": float(needed[0]) if reachable else None,
        "ci": ci,
        "times_largest_tried": float(needed[0] / largest) if reachable else None,
    }
    out["reach_fraction"] = reach
    out["unreachable_fraction"] = None if reach is None else 1.0 - reach
    lines = []
    span = f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
    if not reachable and floor is not None and target <= floor[0]:
        lines.append(
            f"target {y_name} {target:.3g} is at or below the floor {_fmt(floor[0])}: "
            f"UNREACHABLE with more data of this kind; a better-matched pre-training "
            f"source or a bigger model must lower the floor first"
        )
    elif not reachable:
        lines.append(
            f"target {y_name} {target:.3g} is not reached even at {x_name} = {_LARGEST:.0e}: "
            "UNREACHABLE under this law"
        )
    elif needed[0] <= largest:
        lines.append(
            f"target {y_name} {target:.3g} is already reached at {x_name} = "
            f"{needed[0]:.3g}{span} (within the sizes tried)"
        )
    else:
        lines.append(
            f"target {y_name} {target:.3g} needs {x_name} = {needed[0]:.3g}{span}, "
            f"{needed[0] / largest:.3g}x the largest size tried: an extrapolation, as "
            "trustworthy as the extrapolation check says"
        )
    if reach is not None and reach < 1:
        lines.append(
            f"only {100 * reach:.0f}% of bootstrap refits reach the target"
            + (
                f" (fewer than the {100 * (1 - tail):.3g}% a finite upper bound needs: the "
                f"interval's upper bound is unreachable)"
                if ci and ci[1] == UNREACHABLE
                else ""
            )
        )
    return lines
