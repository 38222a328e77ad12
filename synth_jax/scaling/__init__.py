"""Transfer scaling laws: fit error-vs-data-size curves, check extrapolation, plan data needs.

    from synth_jax import scaling
    result = scaling.fit("mikami", n, error, fix={"D": 0.48}, bootstrap=1000)
    result.params, result.ci            # alpha, C (the transfer gap) with percentile intervals
    scaling.extrapolation_check("mikami", n, error, holdout=2)
    scaling.plan(result, target=0.2)    # pre-training images needed, or why it is unreachable

`synth-jax fit-law RESULTS.csv ...` (synth_jax.scaling.cli) does the same on a results table.
"""

from synth_jax.scaling.extrapolate import extrapolation_check, leave_one_out
from synth_jax.scaling.fitting import fit
from synth_jax.scaling.laws import LAWS, Law, Param, get_law
from synth_jax.scaling.plan import plan
from synth_jax.scaling.plot import Curve, plot_fits
from synth_jax.scaling.problem import Problem, prepare
from synth_jax.scaling.result import FitResult
from synth_jax.scaling.solver import solve

__all__ = [
    "LAWS",
    "Curve",
    "FitResult",
    "Law",
    "Param",
    "Problem",
    "extrapolation_check",
    "fit",
    "get_law",
    "leave_one_out",
    "plan",
    "plot_fits",
    "prepare",
    "solve",
]
