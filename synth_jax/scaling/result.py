"""A fitted law: parameters, their uncertainty and how it was obtained, goodness of fit."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from synth_jax.scaling.laws import Law
from synth_jax.scaling.problem import Problem


@dataclasses.dataclass
class BootstrapRecord:
    """How the intervals were obtained. method: case, seed, residual or wild; requested: the
    replicates asked for; used: those whose refits enter the intervals (identifiable and
    converged); redrawn: replicates drawn again because they could not identify the law;
    dropped_unidentifiable / dropped_not_converged: replicates left out, and why; level: the
    intervals' nominal level; tail: the quantile each bound is taken at (an expanded percentile
    interval, see bootstrap.interval_tail); at_bound: share of used refits with each free
    parameter on a bound; note: why this method."""

    method: str
    requested: int
    used: int
    redrawn: int
    dropped_unidentifiable: int
    dropped_not_converged: int
    level: float
    tail: float
    note: str
    at_bound: dict[str, float]

    def describe(self) -> str:
        """'95% expanded percentile intervals (quantiles 0.9% and 99.1%), residual bootstrap,
        198 of 200 replicates'."""
        text = (
            f"{100 * self.level:.0f}% expanded percentile intervals (quantiles "
            f"{100 * self.tail:.2g}% and {100 - 100 * self.tail:.4g}%), {self.method} bootstrap, "
            f"{self.used} of {self.requested} replicates"
        )
        dropped = []
        if self.dropped_unidentifiable:
            dropped.append(f"{self.dropped_unidentifiable} could not identify the law")
        if self.dropped_not_converged:
            dropped.append(f"{self.dropped_not_converged} did not converge")
        if dropped:
            text += f" ({'; '.join(dropped)})"
        if self.redrawn:
            text += f"; {self.redrawn} redrawn for too few distinct sizes"
        return text

    def to_dict(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "interval": "expanded percentile",
            "describe": self.describe(),
        }


@dataclasses.dataclass
class FitResult:
    """A fitted law: best parameters, uncertainty and goodness of fit (see `to_dict`).

    status: converged, stalled (the optimiser stopped short of a first-order optimum) or
    max_iter; converged is status == "converged". hit_bounds: free parameters on a bound.
    bootstrap_params: float64[B, P], all parameters in law order, of the B used refits.
    """

    problem: Problem
    params: dict[str, float]
    stderr: dict[str, float]
    ci: dict[str, tuple[float, float]]
    ci_level: float
    objective: float
    r2: float
    rmse: float
    log_rmse: float
    aic: float
    bic: float
    status: str
    hit_bounds: list[str]
    starts: int
    starts_agreeing: int
    iterations: int
    bootstrap_params: np.ndarray
    bootstrap: BootstrapRecord | None
    method: str

    @property
    def law(self) -> Law:
        return self.problem.law

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    def predict(self, x) -> np.ndarray:
        return self.problem.predict(self.params, x)

    def to_dict(self) -> dict:
        clean = _finite_or_none
        return {
            "law": self.law.name,
            "formula": self.law.formula,
            "loss_kind": self.problem.loss,
            "method": self.method,
            "params": {k: clean(v) for k, v in self.params.items()},
            "fixed": dict(self.problem.fixed),
            "bounds": {
                n: [clean(self.problem.lower[i]), clean(self.problem.upper[i])]
                for i, n in enumerate(self.law.param_names)
            },
            "stderr": {k: clean(v) for k, v in self.stderr.items()},
            "ci": {k: [clean(a), clean(b)] for k, (a, b) in self.ci.items()},
            "ci_level": self.ci_level,
            "ci_method": self.bootstrap.describe() if self.bootstrap else None,
            "loss": clean(self.objective),
            "r2": clean(self.r2),
            "rmse": clean(self.rmse),
            "log_rmse": clean(self.log_rmse),
            "aic": clean(self.aic),
            "bic": clean(self.bic),
            "n_points": int(len(self.problem.y)),
            "n_sizes": int(len(np.unique(self.problem.x, axis=0))),
            "n_free": len(self.problem.free),
            "converged": self.converged,
            "status": self.status,
            "hit_bounds": list(self.hit_bounds),
            "starts": self.starts,
            "starts_agreeing": self.starts_agreeing,
            "iterations": self.iterations,
            "bootstrap": self.bootstrap.to_dict() if self.bootstrap else None,
        }


def _finite_or_none(value) -> float | None:
    """JSON has no NaN or infinity: such numbers are written as null."""
    value = float(value)
    return value if math.isfinite(value) else None
