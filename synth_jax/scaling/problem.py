"""A fitting problem: a law, validated points, the free and fixed parameters, bounds, starts.

`prepare` checks everything a fit needs before anything compiles, so bad input is one
UsageError naming the argument; the solver and the bootstrap take the Problem it returns.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.errors import UsageError
from synth_jax.scaling.laws import Law, get_law

LOSSES = ("squared", "log", "huber")
# a start on a bound sits where the transform is flat: move it this fraction of the range inside
_START_MARGIN = 1e-3


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A validated fitting problem. x: float64[N, K]; y: float64[N]; starts: float64[S, F] in
    parameter units (strictly inside the bounds); lower/upper: float64[P] per law parameter."""

    law: Law
    x: np.ndarray
    y: np.ndarray
    free: tuple[str, ...]
    fixed: dict[str, float]
    lower: np.ndarray
    upper: np.ndarray
    scales: tuple[str, ...]
    starts: np.ndarray
    loss: str
    huber_delta: float

    @property
    def free_index(self) -> tuple[int, ...]:
        return tuple(self.law.param_names.index(n) for n in self.free)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(
            bound_kind(self.lower[i], self.upper[i], self.scales[i]) for i in self.free_index
        )

    @property
    def fixed_vector(self) -> np.ndarray:
        """float64[P]: the fixed values in law order (0 for free parameters)."""
        return np.array([self.fixed.get(n, 0.0) for n in self.law.param_names], np.float64)

    def full_params(self, free_values: np.ndarray) -> dict[str, float]:
        """All parameters (fixed and fitted) by name, from float[F] free values."""
        values = {name: float(v) for name, v in self.fixed.items()}
        values.update({n: float(v) for n, v in zip(self.free, free_values)})
        return {name: values[name] for name in self.law.param_names}

    def predict(self, params: dict[str, float], x: np.ndarray | None = None) -> np.ndarray:
        """The law at x float[M, K] (default: the data) as float64[M]."""
        x = self.x if x is None else np.asarray(x, dtype=np.float64).reshape(-1, self.x.shape[1])
        with jax.enable_x64(True):
            p = {k: jnp.float64(v) for k, v in params.items()}
            return np.asarray(_law_at(self.law, p, jnp.asarray(x)), dtype=np.float64)

    def predict_rows(self, rows: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """The law for many parameter sets at once: rows float[B, P] (all parameters in law
        order; a row of NaN gives NaN) at x float[M, K] (default: the data), float64[B, M]."""
        x = self.x if x is None else np.asarray(x, dtype=np.float64).reshape(-1, self.x.shape[1])
        rows = np.asarray(rows, np.float64).reshape(-1, len(self.law.param_names))
        with jax.enable_x64(True):
            p = {k: jnp.asarray(rows[:, i]) for i, k in enumerate(self.law.param_names)}
            return np.asarray(_law_at_rows(self.law, p, jnp.asarray(x)), dtype=np.float64)

    def residuals(self, predicted: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Residuals in the loss's space: predicted - y (squared), log predicted - log y (log,
        Huber). predicted: float[..., N]; y: float[..., N] (default: the data)."""
        y = self.y if y is None else y
        if self.loss == "squared":
            return predicted - y
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(predicted) - np.log(y)

    def data_from_residuals(self, predicted: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """The y whose residuals against `predicted` are `residuals` (inverse of `residuals`:
        a residual is predicted minus y, so y is predicted minus the residual)."""
        if self.loss == "squared":
            return predicted - residuals
        return predicted * np.exp(-residuals)

    def distinct_points(self, weights: np.ndarray) -> np.ndarray:
        """How many distinct inputs (rows of x) carry weight, per row of weights float[R, N]:
        a law with F free parameters needs at least F of them to be identifiable."""
        _, label = np.unique(self.x, axis=0, return_inverse=True)
        label = label.reshape(-1)
        present = np.zeros((len(weights), label.max() + 1), bool)
        for j in range(len(label)):
            present[:, label[j]] |= weights[:, j] > 0
        return present.sum(axis=1)


@functools.partial(jax.jit, static_argnums=0)
def _law_at(law, params, x):
    """The law at x float[M, K] (jitted: evaluated op by op it costs milliseconds per call)."""
    return law(params, *[x[:, k] for k in range(x.shape[1])])


@functools.partial(jax.jit, static_argnums=0)
def _law_at_rows(law, params, x):
    """The law float[B, M] for B parameter sets (params {name: float[B]}) at x float[M, K]."""
    return jax.vmap(lambda p: law(p, *[x[:, k] for k in range(x.shape[1])]))(params)


def bound_kind(lower: float, upper: float, scale: str) -> str:
    """How a parameter is kept in its bounds: log_interval, interval, lower, upper or free."""
    if scale == "log":
        return "log_interval"
    if math.isfinite(lower) and math.isfinite(upper):
        return "interval"
    if math.isfinite(lower):
        return "lower"
    if math.isfinite(upper):
        return "upper"
    return "free"


def prepare(
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
) -> Problem:
    """Validates inputs and builds the start grid. Bad input raises UsageError naming it.

    x: float[N] or float[N, K] (K = law.num_inputs), all finite and > 0; y: float[N], finite
    (and > 0 for the log and Huber losses). fix: parameters held at a value (e.g. D=0.48).
    bounds: overrides of (lower, upper). init: per-parameter initial values replacing the law's
    grid axis. starts: an explicit start grid float[S, F] over the free parameters instead.
    A parameter may be fixed or bounded, not both. The points must hold at least as many
    distinct inputs as there are free parameters.
    """
    law = get_law(law) if isinstance(law, str) else law
    x, y = _points(law, x, y)
    if loss not in LOSSES:
        raise UsageError(f"unknown loss {loss!r}; one of: {', '.join(LOSSES)}")
    if loss != "squared" and np.any(y <= 0):
        raise UsageError(f"the {loss} loss works on log(y): y must be > 0")
    if not huber_delta > 0:
        raise UsageError(f"huber_delta must be > 0, got {huber_delta}")
    fix = {k: float(v) for k, v in (fix or {}).items()}
    bounds = dict(bounds or {})
    init = dict(init or {})
    lower, upper = _bounds(law, fix, bounds, init)
    scales = tuple(p.scale for p in law.params)
    free = tuple(n for n in law.param_names if n not in fix)
    _check_identifiable(x, y, free)
    if starts is None:
        custom = dataclasses.replace(
            law,
            params=tuple(
                dataclasses.replace(p, init=tuple(init[p.name]), init_x_quantiles=())
                if p.name in init
                else p
                for p in law.params
            ),
        )
        starts = custom.init_grid(free, x)
    starts = np.asarray(starts, dtype=np.float64).reshape(-1, len(free))
    index = [law.param_names.index(n) for n in free]
    starts = _inside(starts, lower[index], upper[index], [scales[i] for i in index])
    return Problem(law, x, y, free, fix, lower, upper, scales, starts, loss, float(huber_delta))


def _points(law: Law, x, y) -> tuple[np.ndarray, np.ndarray]:
    """x float64[N, K] and y float64[N], checked: shapes, finite, sizes > 0."""
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[1] != law.num_inputs:
        raise UsageError(
            f"law {law.name!r} ({law.formula}) takes {law.num_inputs} input column(s); "
            f"got x with shape {x.shape}"
        )
    if x.shape[0] != y.shape[0]:
        raise UsageError(f"x has {x.shape[0]} points but y has {y.shape[0]}")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise UsageError(
            "x must be finite and > 0 (a law in the data size cannot use n = 0: "
            "leave out scratch rows)"
        )
    if not np.all(np.isfinite(y)):
        raise UsageError("y has NaN or infinite values")
    return x, y


def _bounds(law: Law, fix: dict, bounds: dict, init: dict) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) float64[P] per law parameter: the law's, with `bounds` applied."""
    for name in [*fix, *bounds, *init]:
        law.param(name)  # raises UsageError for an unknown name
    for name in sorted(set(fix) & set(bounds), key=law.param_names.index):
        lo, hi = bounds[name]
        raise UsageError(
            f"{name} is both fixed (={fix[name]:g}) and bounded ({lo:g}:{hi:g}): a fixed "
            "parameter is not fitted, so its bounds would be ignored; drop one of the two"
        )
    lower = np.array([bounds.get(p.name, (p.lower, p.upper))[0] for p in law.params], np.float64)
    upper = np.array([bounds.get(p.name, (p.lower, p.upper))[1] for p in law.params], np.float64)
    for i, p in enumerate(law.params):
        if not lower[i] < upper[i]:
            raise UsageError(f"bounds of {p.name}: lower {lower[i]} must be < upper {upper[i]}")
        if p.scale == "log" and not (0 < lower[i] and math.isfinite(upper[i])):
            raise UsageError(
                f"{p.name} is fitted on a log scale: its bounds must satisfy 0 < lower < upper "
                f"< inf, got {lower[i]}:{upper[i]}"
            )
    return lower, upper


def _check_identifiable(x: np.ndarray, y: np.ndarray, free: tuple[str, ...]) -> None:
    if not free:
        raise UsageError("every parameter is fixed: nothing to fit")
    if len(y) < len(free):
        raise UsageError(
            f"{len(y)} point(s) cannot determine {len(free)} free parameters "
            f"({', '.join(free)}): add points or fix parameters (--fix NAME=VALUE)"
        )
    distinct = len(np.unique(x, axis=0))
    if distinct < len(free):
        raise UsageError(
            f"{distinct} distinct input value(s) cannot determine {len(free)} free parameters "
            f"({', '.join(free)}), however many repeats each has: add sizes or fix parameters "
            "(--fix NAME=VALUE)"
        )


def _inside(values: np.ndarray, lower, upper, scales) -> np.ndarray:
    """Moves values strictly inside [lower, upper] (a margin of the range for finite bounds)."""
    out = values.copy()
    for j, (lo, hi, scale) in enumerate(zip(lower, upper, scales)):
        if scale == "log":
            lo_t, hi_t = math.log(lo), math.log(hi)
            t = np.log(np.clip(out[:, j], lo, hi))
            margin = _START_MARGIN * (hi_t - lo_t)
            out[:, j] = np.exp(np.clip(t, lo_t + margin, hi_t - margin))
        elif math.isfinite(lo) and math.isfinite(hi):
            margin = _START_MARGIN * (hi - lo)
            out[:, j] = np.clip(out[:, j], lo + margin, hi - margin)
        else:
            out[:, j] = np.clip(out[:, j], lo + 1e-6 * (1 + abs(lo)), hi - 1e-6 * (1 + abs(hi)))
    return out
