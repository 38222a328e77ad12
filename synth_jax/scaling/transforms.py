"""The bounds transform: unconstrained z <-> parameter values kept inside their bounds.

A scaled sigmoid for a finite interval (in log space for "log" parameters), softplus for a
half-line, identity for a free parameter. The optimisers work in z, so every step is feasible.
`lo` and `hi` are the bounds in transformed units (log of the bounds for "log_interval").
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.scaling.problem import Problem

# |z| beyond this puts an interval parameter within ~1e-6 of its range from a bound, where the
# sigmoid is flat: the parameter is effectively on the bound
SATURATED_Z = 13.8


def transform_bounds(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """(lo float64[F], hi float64[F]) of the free parameters in transformed units."""
    lo, hi = [], []
    for i, kind in zip(problem.free_index, problem.kinds):
        a, b = problem.lower[i], problem.upper[i]
        if kind == "log_interval":
            a, b = math.log(a), math.log(b)
        lo.append(a if math.isfinite(a) else 0.0)
        hi.append(b if math.isfinite(b) else 0.0)
    return np.array(lo), np.array(hi)


def to_params(z, kinds, lo, hi):
    """z: float[F, ...] -> parameter values float[F, ...]."""
    out = []
    for j, kind in enumerate(kinds):
        if kind in ("interval", "log_interval"):
            t = lo[j] + (hi[j] - lo[j]) * jax.nn.sigmoid(z[j])
            out.append(jnp.exp(t) if kind == "log_interval" else t)
        elif kind == "lower":
            out.append(lo[j] + jax.nn.softplus(z[j]))
        elif kind == "upper":
            out.append(hi[j] - jax.nn.softplus(-z[j]))
        else:
            out.append(z[j])
    return jnp.stack(out)


def to_z(values: np.ndarray, kinds, lo, hi) -> np.ndarray:
    """Inverse of to_params for values float[..., F] strictly inside the bounds."""
    z = np.array(values, dtype=np.float64)
    for j, kind in enumerate(kinds):
        v = values[..., j]
        if kind in ("interval", "log_interval"):
            t = np.log(v) if kind == "log_interval" else v
            frac = (t - lo[j]) / (hi[j] - lo[j])
            z[..., j] = np.log(frac) - np.log1p(-frac)
        elif kind == "lower":
            z[..., j] = np.log(np.expm1(v - lo[j]))
        elif kind == "upper":
            z[..., j] = -np.log(np.expm1(hi[j] - v))
    return z


def saturated(z, kinds):
    """bool[F, ...]: where the transform is flat, so the parameter sits on a bound and its
    gradient in z vanishes whatever the data say (a constrained optimum, not a stall)."""
    out = []
    for j, kind in enumerate(kinds):
        if kind in ("interval", "log_interval"):
            out.append(jnp.abs(z[j]) > SATURATED_Z)
        elif kind == "lower":
            out.append(z[j] < -SATURATED_Z)
        elif kind == "upper":
            out.append(z[j] > SATURATED_Z)
        else:
            out.append(jnp.zeros_like(z[j], bool))
    return jnp.stack(out)


def position_in_bounds(values: np.ndarray, kinds, lo, hi) -> np.ndarray:
    """Where each value sits in its interval, 0..1 (0.5 for half-lines and free parameters)."""
    out = np.full(values.shape, 0.5)
    for j, kind in enumerate(kinds):
        if kind in ("interval", "log_interval"):
            t = np.log(values[..., j]) if kind == "log_interval" else values[..., j]
            out[..., j] = (t - lo[j]) / (hi[j] - lo[j])
        elif kind == "lower":
            out[..., j] = np.where(values[..., j] - lo[j] <= 1e-9 * (1 + abs(lo[j])), 0.0, 0.5)
        elif kind == "upper":
            out[..., j] = np.where(hi[j] - values[..., j] <= 1e-9 * (1 + abs(hi[j])), 1.0, 0.5)
    return out
