"""`synth-jax fit-law RESULTS.csv --law mikami --x pretrain_images --y top1_error ...`

Fits a scaling law to every group of a results table and writes fit.json (and a plot):

    synth-jax fit-law results.csv --law mikami --x pretrain_images --y top1_error \\
        --group model,dataset --fix D=0.48 --bounds alpha=0.1:1.5 --bootstrap 1000 \\
        --holdout 2 --loo --target 0.2 --out fit.json --plot fit.png

Every interval says how it was obtained (bootstrap method and replicates used). A group with
scratch rows also gets the comparison of each size with scratch, paired by seed, with intervals
(the best size's adjusted for being the best of several). Defaults come from
synth_jax.scaling.config. Everything is validated and fitted before anything is written: on bad
input nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys

import numpy as np

from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.files import write_json
from synth_jax.scaling import compare
from synth_jax.scaling.bootstrap import METHODS
from synth_jax.scaling.config import DEFAULTS
from synth_jax.scaling.extrapolate import extrapolation_check, leave_one_out
from synth_jax.scaling.fitting import fit
from synth_jax.scaling.laws import LAWS, get_law
from synth_jax.scaling.plan import plan
from synth_jax.scaling.plot import Curve, plot_fits
from synth_jax.scaling.problem import LOSSES
from synth_jax.scaling.table import Y_SCALES, Group, read_curves

_PLOT_FORMATS = ("png", "pdf", "svg")


def _default_group(path: str) -> list[str]:
    """The default group columns the table has: synth_jax's results.csv has them all; a table
    written by hand with only sizes and errors is one curve. (A missing or unreadable file is
    left to read_curves, which names it.)"""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is no name
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return []
    return [c for c in DEFAULTS["group"] if c in {h.strip() for h in header}]


def _parser() -> argparse.ArgumentParser:
    laws = "; ".join(f"{name}: {law.formula}" for name, law in LAWS.items())
    p = ArgumentParser(
        prog="synth-jax fit-law",
        description="Fit a transfer scaling law to a results table, per group.",
        epilog=f"laws: {laws}",
    )
    p.add_argument("results", help="results CSV (one row per fine-tuning run)")
    p.add_argument("--law", default=DEFAULTS["name"], help=f"law name (default {DEFAULTS['name']})")
    p.add_argument("--x", nargs="+", default=[DEFAULTS["x"]], help="input column(s)")
    p.add_argument("--y", default=DEFAULTS["y"], help=f"error column (default {DEFAULTS['y']})")
    p.add_argument(
        "--y-scale",
        default="rate",
        choices=tuple(Y_SCALES),
        help="rate (default): errors in [0, 1]; percent: errors in [0, 100], divided by 100 "
        "(and --target with them); raw: any value >= 0 (a loss), fitted as it is",
    )
    p.add_argument(
        "--group",
        default=None,
        help="comma-separated columns: one curve per value (default: those of "
        f"{','.join(DEFAULTS['group'])} the table has; '' fits all rows as one curve)",
    )
    p.add_argument("--fix", action="append", default=[], help="NAME=VALUE[,NAME=VALUE]")
    p.add_argument("--bounds", action="append", default=[], help="NAME=LO:HI[,NAME=LO:HI]")
    p.add_argument("--init", action="append", default=[], help="NAME=V1:V2:... start values")
    p.add_argument("--loss", default="squared", choices=LOSSES)
    p.add_argument("--huber-delta", type=float, default=1e-3)
    p.add_argument("--method", choices=("lm", "lbfgs"), default=None)
    p.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULTS["bootstrap"],
        help=f"bootstrap refits (default {DEFAULTS['bootstrap']}; 0: no intervals)",
    )
    p.add_argument(
        "--bootstrap-method",
        default=DEFAULTS["resample"],
        choices=METHODS,
        help="auto (default): seed with 5+ seeds, case with 5+ rows per size, else residual",
    )
    p.add_argument(
        "--resample-within",
        default="",
        help="comma-separated columns: case resampling within each of their values "
        "(e.g. pretrain_images keeps every size in every refit)",
    )
    p.add_argument(
        "--seed-column",
        default="seed",
        help="column naming each run's seed: seed resampling and paired comparisons (default seed)",
    )
    p.add_argument(
        "--ci",
        type=float,
        default=DEFAULTS["ci"],
        help=f"interval level (default {DEFAULTS['ci']})",
    )
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="the bootstrap's seed")
    p.add_argument("--holdout", type=int, default=0, help="extrapolation check: largest sizes")
    p.add_argument("--loo", action="store_true", help="leave-one-size-out check")
    p.add_argument(
        "--target", default=None, help="planner: target error, in the units of the --y column"
    )
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


def _output_path(path: str, flag: str, results: str) -> str:
    """Refuses, before anything is fitted or written, an output path that is a folder, lies in
    a folder that does not exist, or is the results table itself."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a folder; name the file to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: no folder {folder}; create it first")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: cannot write in {folder} (permission denied)")
    if os.path.realpath(path) == os.path.realpath(results):
        raise UsageError(f"{flag} {path}: is the results table; name another file to write")
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


def _settings(args) -> dict:
    """Checks the arguments (all of them, before anything is read or fitted) and returns the
    law, the fit options and the planner's target as an error rate (or None)."""
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
    for name in [n for n in law.param_names if n in fix and n in bounds]:
        raise UsageError(
            f"--fix {name}={fix[name]:g} and --bounds {name}={bounds[name][0]:g}:"
            f"{bounds[name][1]:g}: a fixed parameter is not fitted, so its bounds would be "
            "ignored; drop one of the two"
        )
    if args.bootstrap < 0:
        raise UsageError("--bootstrap must be >= 0")
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed {args.seed}: must be an integer in [0, 2**32)")
    if args.holdout < 0:
        raise UsageError("--holdout must be >= 0")
    if args.plot and args.plot.rsplit(".", 1)[-1].lower() not in _PLOT_FORMATS:
        raise UsageError(f"--plot {args.plot}: use a .png, .pdf or .svg file name")
    if not 0 < args.ci < 1:
        raise UsageError(f"--ci must be in (0, 1), got {args.ci}")
    _output_path(args.out, "--out", args.results)
    if args.plot:
        _output_path(args.plot, "--plot", args.results)
        if os.path.realpath(args.plot) == os.path.realpath(args.out):
            raise UsageError(f"--plot {args.plot}: is the --out file; name another file")
    options = dict(fix=fix, bounds=bounds, init=init, loss=args.loss, huber_delta=args.huber_delta)
    return {"law": law, "options": options, "target": _target(args, law)}


def _target(args, law) -> float | None:
    """--target as an error rate (divided by 100 with --y-scale percent), or None."""
    if args.target is None:
        return None
    if law.num_inputs != 1:
        raise UsageError(f"--target: the planner inverts one-input laws; {law.name!r} has 2")
    value = _float(args.target, "--target")
    scale = Y_SCALES[args.y_scale]
    if not value > 0 or (scale is not None and value > scale):
        within = "> 0" if scale is None else f"in (0, {scale:g}] ({args.y_scale})"
        raise UsageError(f"--target {args.target}: a target error must be {within}")
    return value / (scale or 1.0)


def _fit_group(group: Group, args, settings: dict) -> tuple[dict, Curve]:
    """One group's fit, checks, comparison and plan: its fit.json entry and its plot curve."""
    law, options = settings["law"], settings["options"]
    _check_sizes(group, args.x)
    x = group.x[:, 0] if law.num_inputs == 1 else group.x
    clusters = None if group.seeds is None else np.unique(group.seeds, return_inverse=True)[1]
    try:
        result = fit(
            law,
            x,
            group.y,
            **options,
            method=args.method,
            bootstrap=args.bootstrap,
            resample=args.bootstrap_method,
            strata=group.strata,
            clusters=clusters,
            seed=args.seed,
            ci=args.ci,
        )
        checks = dict(options, method=args.method)
        extrapolation = (
            extrapolation_check(law, x, group.y, holdout=args.holdout, **checks)
            if args.holdout
            else None
        )
        loo = leave_one_out(law, x, group.y, **checks) if args.loo else None
    except UsageError as e:
        raise UsageError(f"group {group.label}: {e}") from None
    entry = {"group": group.key, **result.to_dict(), "rows": group.rows, "notes": group.notes}
    entry["scratch_error"] = group.scratch_error
    if group.scratch and law.num_inputs == 1:
        entry["comparison_with_scratch"] = compare_with_scratch(group, args.ci)
    if extrapolation is not None:
        entry["extrapolation"] = extrapolation
    if loo is not None:
        entry["leave_one_out"] = loo
    if law.num_inputs == 1:
        try:
            entry["plan"] = plan(result, settings["target"], x_name=args.x[0], y_name=args.y)
        except UsageError as e:
            entry["plan"] = {"error": str(e), "message": f"planner refused: {e}"}
    return entry, Curve(result, group.label, extrapolation, group.scratch_error)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    group_by = _columns(args.group) if args.group is not None else _default_group(args.results)
    groups = read_curves(
        args.results,
        args.x,
        args.y,
        group_by,
        _columns(args.resample_within),
        seed_column=args.seed_column or None,
        y_scale=args.y_scale,
    )
    entries, curves = [], []
    for group in groups:
        entry, curve = _fit_group(group, args, settings)
        entries.append(entry)
        curves.append(curve)
        _print_summary(group.label, entry)
    law = settings["law"]
    summary = {
        "results": args.results,
        "law": law.name,
        "formula": law.formula,
        "x": args.x,
        "y": args.y,
        "y_scale": args.y_scale,
        "group_by": group_by,
        "groups": entries,
    }
    flag = "--out"
    try:
        write_json(args.out, _clean(summary))
        if args.plot:
            flag = "--plot"
            plot_fits(args.plot, curves, x_name=args.x[0], y_name=args.y, x2_name=args.x[-1])
    except OSError as e:  # a full disk, a folder made read-only meanwhile
        raise UsageError(
            f"{flag} {args.plot if flag == '--plot' else args.out}: writing it failed "
            f"({e.strerror or e}); free space (or fix permissions) and rerun"
        ) from None
    print(f"wrote {args.out}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def compare_with_scratch(group: Group, level: float) -> dict:
    """The group's sizes against its scratch rows, paired by seed (see compare.py)."""
    seeds = group.seeds if group.seeds is not None else [f"row {r}" for r in group.rows]
    by_size: dict[float, dict] = {}
    for size, seed, y in zip(group.x[:, 0], seeds, group.y):
        by_size.setdefault(float(size), {}).setdefault(str(seed), []).append(float(y))
    by_size = {s: {k: float(np.mean(v)) for k, v in runs.items()} for s, runs in by_size.items()}
    scratch = {k: float(np.mean(v)) for k, v in group.scratch.items()}
    return compare.against_baseline(by_size, scratch, level)


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
    flags = "" if entry["converged"] else f" NOT CONVERGED ({entry['status']})"
    if entry["hit_bounds"]:
        flags += f"; AT A BOUND: {', '.join(entry['hit_bounds'])}"
    print(f"[{label}] {entry['n_points']} points: {params}; R^2={_g(entry['r2'])}{flags}")
    if entry["ci_method"]:
        print(f"  intervals: {entry['ci_method']}; {entry['bootstrap']['note']}")
        if entry["bootstrap"]["warning"]:
            print(f"  warning: {entry['bootstrap']['warning']}", file=sys.stderr)
    if "comparison_with_scratch" in entry:
        best = entry["comparison_with_scratch"]["best"]
        pooled = entry["comparison_with_scratch"]["pooled"]
        print(
            f"  vs scratch: best size {best['size']:.4g}: {best['text']}: "
            f"{best['verdict']}; all sizes pooled: {pooled['text']}: {pooled['verdict']}"
        )
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
