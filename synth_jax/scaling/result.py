"""A fitted law: parameters, their uncertainty and how it was obtained, goodness of fit."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from synth_jax.scaling import stats
from synth_jax.scaling.laws import Law
from synth_jax.scaling.problem import Problem

# a share of refits that did not converge above this is a warning: they widen the intervals
WARN_NOT_CONVERGED = 0.01


@dataclasses.dataclass
class BootstrapRecord:
    """How the intervals were obtained. method: case, seed, residual or wild; requested: the
    replicates asked for; refits: the replicates refitted (identifiable ones; with exact, every
    distinct seed resample); used: refits that converged, whose values enter the intervals;
    not_converged: refits that did not, counted beyond both bounds of every interval (an
    interval holds whatever they would have given); redrawn: replicates drawn again because
    they could not identify the law; dropped_unidentifiable: those left out after all redraws;
    exact: refits are every distinct resample, weighted by its probability (seed resampling of
    few seeds), not random draws; distinct: how many different resamples the refits hold;
    level: the intervals' nominal level; tail: the quantile each bound is taken at (below
    (1 - level) / 2: an expanded percentile interval); widen: how many times further from the
    best fit each bound is then moved (1: not at all; see bootstrap.interval_rule); at_bound:
    share of used refits with each
    free parameter on a bound; note: why this method; warning: what the reader must know, or
    None; starts_at_iteration_cap: starts run to the end (the polished ones) that stopped at the
    iteration cap, over all refits (a refit whose best start is one of them is not converged)."""

    method: str
    requested: int
    refits: int
    used: int
    not_converged: int
    redrawn: int
    dropped_unidentifiable: int
    exact: bool
    distinct: int
    level: float
    tail: float
    widen: float
    note: str
    at_bound: dict[str, float]
    warning: str | None = None
    starts_at_iteration_cap: int = 0

    def describe(self) -> str:
        """'95% expanded percentile intervals (quantiles 0.91% and 99.09%), residual bootstrap,
        200 replicates'."""
        quantiles = f"quantiles {100 * self.tail:.2g}% and {100 - 100 * self.tail:.4g}%"
        if self.widen != 1.0:
            text = (
                f"{100 * self.level:.0f}% percentile intervals ({quantiles}) widened "
                f"{self.widen:.3g}x about the fit, {self.method} bootstrap, "
            )
        else:
            text = (
                f"{100 * self.level:.0f}% expanded percentile intervals ({quantiles}), "
                f"{self.method} bootstrap, "
            )
        if self.exact:
            text += f"exact: all {self.refits} distinct resamples, each weighted by its probability"
        else:
            text += f"{self.refits} replicates ({self.distinct} distinct)"
        if self.not_converged:
            text += f"; {self.not_converged} did not converge and count beyond both bounds"
        if self.dropped_unidentifiable:
            text += f"; {self.dropped_unidentifiable} left out: could not identify the law"
        if self.redrawn:
            text += f"; {self.redrawn} redrawn for too few distinct sizes"
        return text

    def to_dict(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "interval": "expanded percentile",
            "describe": self.describe(),
        }


def not_converged_warning(not_converged: float, refits: int) -> str | None:
    """The warning for a share (probability mass) of refits that did not converge, or None."""
    if not_converged <= WARN_NOT_CONVERGED:
        return None
    return (
        f"{100 * not_converged:.1f}% of {refits} bootstrap refits did not converge (more than "
        f"{100 * WARN_NOT_CONVERGED:.0f}%): they count beyond both bounds, so the intervals are "
        "wider than the data alone would give; check the fit (bounds, starts, the law)"
    )


@dataclasses.dataclass
class FitResult:
    """A fitted law: best parameters, uncertainty and goodness of fit (see `to_dict`).

    status: converged, stalled (the optimiser stopped short of a first-order optimum) or
    max_iter; converged is status == "converged". hit_bounds: free parameters on a bound.
    bootstrap_params: float64[B, P], all parameters in law order, of the B refits (rows of NaN
    for those that did not converge); bootstrap_probabilities: float64[B] (the exact seed
    distribution) or None (equally likely).
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
    bootstrap_probabilities: np.ndarray | None = None

    @property
    def law(self) -> Law:
        return self.problem.law

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    def predict(self, x) -> np.ndarray:
        return self.problem.predict(self.params, x)

    def bootstrap_interval(
        self, values: np.ndarray, best: np.ndarray, log: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The interval of any quantity computed per refit, taken as the parameters' intervals
        are (tail, widening, probabilities, refits that did not converge): values float[B, k]
        (NaN for refits that did not converge), best float[k] (the best fit's values). log:
        widen on a log scale (a positive quantity such as a size). Returns (lower[k],
        upper[k])."""
        tail = self.bootstrap.tail if self.bootstrap else (1.0 - self.ci_level) / 2.0
        widen = self.bootstrap.widen if self.bootstrap else 1.0
        lower, upper = stats.percentile_interval(
            values, self.ci_level, tail, self.bootstrap_probabilities
        )
        if not log:
            return stats.widened(lower, upper, best, widen)
        with np.errstate(divide="ignore"):
            logs = (np.log(np.maximum(b, 0.0)) for b in (lower, upper, best))
            lower, upper = stats.widened(*logs, widen)
        return np.exp(lower), np.exp(upper)

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
