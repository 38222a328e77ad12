"""`synth-jax fit-law RESULTS.csv --law mikami --x pretrain_images --y top1_error ...`

Fits a scaling law to every group of a results table and writes fit.json (and a plot):

    synth-jax fit-law results.csv --law mikami --x pretrain_images --y top1_error \\
        --group model,dataset --fix D=0.48 --bounds alpha=0.1:1.5 --bootstrap 1000 \\
        --holdout 2 --loo --target 0.2 --out fit.json --plot fit.png

Everything is validated and fitted before anything is written: on bad input nothing is written.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.files import write_json
from synth_jax.scaling.extrapolate import extrapolation_check, leave_one_out
from synth_jax.scaling.fitter import LOSSES, fit
from synth_jax.scaling.laws import LAWS, get_law
from synth_jax.scaling.plan import plan
from synth_jax.scaling.plot import Curve, plot_fits
from synth_jax.scaling.table import read_curves

_PLOT_FORMATS = ("png", "pdf", "svg")


def _parser() -> argparse.ArgumentParser:
    laws = "; ".join(f"{name}: {law.formula}" for name, law in LAWS.items())
    p = ArgumentParser(
        prog="synth-jax fit-law",
        description="Fit a transfer scaling law to a results table, per group.",
        epilog=f"laws: {laws}",
    )
    p.add_argument("results", help="results CSV (one row per fine-tuning run)")
    p.add_argument("--law", default="mikami", help="law name (default mikami)")
    p.add_argument("--x", nargs="+", default=["pretrain_images"], help="input column(s)")
    p.add_argument("--y", default="top1_error", help="error column (default top1_error)")
    p.add_argument("--group", default="", help="comma-separated columns: one curve per value")
    p.add_argument("--fix", action="append", default=[], help="NAME=VALUE[,NAME=VALUE]")
    p.add_argument("--bounds", action="append", default=[], help="NAME=LO:HI[,NAME=LO:HI]")
    p.add_argument("--init", action="append", default=[], help="NAME=V1:V2:... start values")
    p.add_argument("--loss", default="squared", choices=LOSSES)
    p.add_argument("--huber-delta", type=float, default=1e-3)
    p.add_argument("--method", choices=("lm", "lbfgs"), default=None)
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap refits (e.g. 1000)")
    p.add_argument(
        "--resample-within",
        default="",
        help="comma-separated columns: bootstrap resamples within each of their values "
        "(e.g. pretrain_images keeps every size in every refit)",
    )
    p.add_argument("--ci", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout", type=int, default=0, help="extrapolation check: largest sizes")
    p.add_argument("--loo", action="store_true", help="leave-one-size-out check")
    p.add_argument("--target", type=float, default=None, help="planner: target error")
    p.add_argument("--out", required=True, help="fit.json to write")
    p.add_argument("--plot", default=None, help="figure to write (.png, .pdf or .svg)")
    return p


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        for item in value.split(","):
            name, sep, text = item.partition("=")
            if not sep or not name.strip() or not text.strip():
                raise UsageError(f"{flag} {item!r}: expected NAME=VALUE")
            out[name.strip()] = text.strip()
    return out


def _float(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{flag}: {text!r} is not a finite number")
    return value


def _output_path(path: str, flag: str) -> str:
    """Refuses, before anything is fitted or written, an output path that is a folder or lies
    in a folder that does not exist."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a folder; name the file to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: no folder {folder}; create it first")
    return path


def _check_sizes(group, x_names: list[str]) -> None:
    """A law in a size needs the size to vary: refuses a group whose x column holds one value."""
    for j, name in enumerate(x_names):
        values = np.unique(group.x[:, j])
        if values.size < 2:
            raise UsageError(
                f"group {group.label}: column {name!r} is {values[0]:g} in all "
                f"{len(group.x)} rows; a law in {name} needs at least two different values"
            )


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _clean(obj):
    """Replaces NaN and infinities (not JSON) with None, recursively."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    law = get_law(args.law)
    if len(args.x) != law.num_inputs:
        raise UsageError(
            f"--x: law {law.name!r} ({law.formula}) takes {law.num_inputs} input column(s), "
            f"got {len(args.x)}: {' '.join(args.x)}"
        )
    fix = {k: _float(v, "--fix") for k, v in _pairs(args.fix, "--fix").items()}
    bounds = {}
    for name, text in _pairs(args.bounds, "--bounds").items():
        lo, sep, hi = text.partition(":")
        if not sep:
            raise UsageError(f"--bounds {name}={text}: expected NAME=LO:HI")
        bounds[name] = (_float(lo, "--bounds"), _float(hi, "--bounds"))
    init = {
        name: tuple(_float(v, "--init") for v in text.split(":"))
        for name, text in _pairs(args.init, "--init").items()
    }
    for name in [*fix, *bounds, *init]:
        law.param(name)
    if args.bootstrap < 0:
        raise UsageError("--bootstrap must be >= 0")
    if args.holdout < 0:
        raise UsageError("--holdout must be >= 0")
    if args.target is not None and law.num_inputs != 1:
        raise UsageError(f"--target: the planner inverts one-input laws; {law.name!r} has 2")
    if args.plot and args.plot.rsplit(".", 1)[-1].lower() not in _PLOT_FORMATS:
        raise UsageError(f"--plot {args.plot}: use a .png, .pdf or .svg file name")
    if not 0 < args.ci < 1:
        raise UsageError(f"--ci must be in (0, 1), got {args.ci}")
    _output_path(args.out, "--out")
    if args.plot:
        _output_path(args.plot, "--plot")
    groups = read_curves(
        args.results, args.x, args.y, _columns(args.group), _columns(args.resample_within)
    )

    options = dict(fix=fix, bounds=bounds, init=init, loss=args.loss, huber_delta=args.huber_delta)
    entries, curves = [], []
    for group in groups:
        _check_sizes(group, args.x)
        x = group.x[:, 0] if law.num_inputs == 1 else group.x
        try:
            result = fit(
                law,
                x,
                group.y,
                **options,
                method=args.method,
                bootstrap=args.bootstrap,
                strata=group.strata,
                seed=args.seed,
                ci=args.ci,
            )
            extrapolation = (
                extrapolation_check(
                    law, x, group.y, holdout=args.holdout, **options, method=args.method
                )
                if args.holdout
                else None
            )
            loo = (
                leave_one_out(law, x, group.y, **options, method=args.method) if args.loo else None
            )
        except UsageError as e:
            raise UsageError(f"group {group.label}: {e}") from None
        entry = {"group": group.key, **result.to_dict(), "rows": group.rows, "notes": group.notes}
        entry["scratch_error"] = group.scratch_error
        if extrapolation is not None:
            entry["extrapolation"] = extrapolation
        if loo is not None:
            entry["leave_one_out"] = loo
        if law.num_inputs == 1:
            entry["plan"] = plan(result, args.target, x_name=args.x[0], y_name=args.y)
        entries.append(entry)
        curves.append(Curve(result, group.label, extrapolation, group.scratch_error))
        _print_summary(group.label, entry)

    if args.plot:
        plot_fits(args.plot, curves, x_name=args.x[0], y_name=args.y, x2_name=args.x[-1])
    write_json(
        args.out,
        _clean(
            {
                "results": args.results,
                "law": law.name,
                "formula": law.formula,
                "x": args.x,
                "y": args.y,
                "group_by": _columns(args.group),
                "groups": entries,
            }
        ),
    )
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def _g(value, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def _print_summary(label: str, entry: dict):
    params = ", ".join(
        f"{k}={_g(v)}"
        + (
            f" [{_g(entry['ci'][k][0], '.3g')}, {_g(entry['ci'][k][1], '.3g')}]"
            if k in entry["ci"]
            else ""
        )
        for k, v in entry["params"].items()
    )
    flags = "" if entry["converged"] else " NOT CONVERGED"
    if entry["hit_bounds"]:
        flags += f"; at a bound: {', '.join(entry['hit_bounds'])}"
    print(f"[{label}] {entry['n_points']} points: {params}; R^2={_g(entry['r2'])}{flags}")
    for note in entry["notes"]:
        print(f"  note: {note}", file=sys.stderr)
    if "extrapolation" in entry:
        e = entry["extrapolation"]
        print(
            f"  held-out {len(e['heldout_sizes'])} largest sizes: log-RMSE "
            f"{_g(e['heldout_log_rmse'])}"
        )
    if "leave_one_out" in entry:
        print(f"  leave-one-size-out log-RMSE {_g(entry['leave_one_out']['log_rmse'])}")
    if "plan" in entry:
        print(f"  {entry['plan']['message']}")
