"""A sweep's report: `DIR/report.md` with PNG figures in `DIR/figures/`, and `DIR/report.json`.

What it shows, in the order a reader asks: what the synthetic images look like, whether
pre-training learned (loss curves), how fine-tuning error falls with pre-training size (the
learning curve with the fitted law and its bootstrap band, against the from-scratch baseline),
whether the law extrapolates (fit on the small sizes, predict the large ones), and the planner's
answer (the pre-training size a target error needs, or that the target is below the transfer gap).

Everything is read back from the sweep's workdir (results.csv, cells.json, the pre-training
workdirs' metrics.jsonl), so the report can be rewritten at any time with `--report-only`.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import sys

import numpy as np

from synth_jax import files
from synth_jax.config import config_to_dict
from synth_jax.errors import UsageError
from synth_jax.experiments import grid

RESULTS = "results.csv"
FIGURES = "figures"
DEFAULT_LAW = {
    "name": "mikami",
    "x": "pretrain_images",
    "y": "top1_error",
    "group": ["model", "dataset", "mode"],
    "fix": {},
    "bootstrap": 200,
    "holdout": 1,
    "target": 0.0,  # 0: plan for 10% less error than the best run
    "seed": 0,
}


# ---------------------------------------------------------------------------------------------
# The results table, joined with the grid.


def load_rows(workdir: str, cells: list[grid.Cell]) -> list[dict]:
    """The results rows of this sweep's cells (the latest row per run folder), each with the
    cell's axis values as extra columns, `cell_id` and `scratch` True/False."""
    path = os.path.join(workdir, RESULTS)
    if not os.path.exists(path):
        return []
    by_id = {cell.cell_id: cell for cell in cells}
    rows: dict[str, dict] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cell_id = grid.cell_id_of_run(row.get("workdir") or "")
            if cell_id in by_id:
                cell = by_id[cell_id]
                # the latest row per run folder (one per fine-tuning seed)
                rows[row["workdir"].rstrip("/")] = {
                    **row,
                    **cell.values,
                    "cell_id": cell_id,
                    "scratch": cell.scratch,
                }
    order = {c.cell_id: i for i, c in enumerate(cells)}
    return sorted(rows.values(), key=lambda r: (order[r["cell_id"]], r["workdir"]))


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def group_key(row: dict, keys) -> tuple:
    return tuple(str(row.get(k, "")) for k in keys)


def _baseline_keys(keys) -> list[str]:
    # A scratch row has no pre-training: it is the baseline of every group that shares its
    # fine-tuning setting, whatever the pre-training keys of that group say.
    return [k for k in keys if not str(k).startswith("pretrain")]


# ---------------------------------------------------------------------------------------------
# Fitting one learning curve.


def fit_curve(x: np.ndarray, y: np.ndarray, law_config: dict, target: float = 0.0) -> dict:
    """Fits the law to one learning curve, checks extrapolation and asks the planner.

    x: float[N] pre-training sizes (> 0); y: float[N] fine-tuning errors. Returns a JSON-ready
    dict: "fit" (the scaling API's to_dict), "band" (x grid and bootstrap percentile band),
    "extrapolation" and, for a target error > 0, "plan" (or an "error" saying why a part could
    not be done).
    """
    from synth_jax import scaling

    law = law_config["name"]
    sizes = np.unique(x)
    # Resample within each size when every size has repeats (seeds): a curve keeps its sizes.
    counts = np.array([np.sum(x == s) for s in sizes])
    strata = np.searchsorted(sizes, x) if np.all(counts >= 2) else None
    out: dict = {"n_points": int(len(x)), "sizes": sizes.tolist()}
    try:
        result = scaling.fit(
            law,
            x,
            y,
            fix=dict(law_config.get("fix") or {}),
            bootstrap=int(law_config.get("bootstrap", 0)),
            strata=strata,
            seed=int(law_config.get("seed", 0)),
        )
    except UsageError as e:
        out["error"] = str(e)
        return out
    out["fit"] = result.to_dict()
    grid_x = np.geomspace(sizes.min() / 2, sizes.max() * 8, 64)
    out["band"] = {"x": grid_x.tolist(), "mean": result.predict(grid_x).tolist()}
    boot = result.bootstrap_params
    if len(boot):
        names = result.law.param_names
        curves = np.array(
            [
                result.problem.predict(dict(zip(names, row)), grid_x)
                for row in boot
                if np.all(np.isfinite(row))
            ]
        )
        if len(curves):
            lo, hi = np.nanpercentile(curves, [2.5, 97.5], axis=0)
            out["band"].update(lower=lo.tolist(), upper=hi.tolist())
    out["extrapolation"] = _extrapolation(x, y, sizes, law_config)
    if target > 0:
        out["plan"] = _plan(result, target)
    return out


def _extrapolation(x, y, sizes, law_config) -> dict:
    from synth_jax import scaling

    holdout = int(law_config.get("holdout", 0))
    if holdout <= 0:
        return {"error": "law.holdout is 0: no extrapolation check asked for"}
    if len(sizes) - holdout < 2:
        return {"error": f"{len(sizes)} sizes leave too few to fit after holding out {holdout}"}
    try:
        check = scaling.extrapolation_check(
            law_config["name"], x, y, holdout=holdout, fix=dict(law_config.get("fix") or {})
        )
    except UsageError as e:
        return {"error": str(e)}
    return check if isinstance(check, dict) else check.to_dict()


def _plan(result, target: float) -> dict:
    from synth_jax import scaling

    try:
        answer = scaling.plan(result, target)
    except UsageError as e:
        return {"error": str(e)}
    answer = dict(answer if isinstance(answer, dict) else answer.to_dict())
    # The report's two lookups: the plain-words answer and the size that reaches the target.
    answer["summary"] = answer.get("message")
    answer["n"] = (answer.get("size_needed") or {}).get("value")
    return answer


# ---------------------------------------------------------------------------------------------
# Figures.


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def plot_samples(families: list[str], path: str, per_family: int = 8, image_size: int = 64):
    """One row of `per_family` images (one per category) of each fractal family, rendered from
    the engine's small preview configs (seconds on a laptop CPU)."""
    from synth_jax.fractals import FractalDataset
    from synth_jax.fractals.preview import preview_config, preview_indices, render_images

    plt = _pyplot()
    fig, axes = plt.subplots(
        len(families), per_family, figsize=(1.4 * per_family, 1.6 * len(families)), squeeze=False
    )
    for r, family in enumerate(families):
        dataset = FractalDataset(preview_config(family, per_family, image_size))
        images, labels, _ = render_images(
            dataset, preview_indices(dataset, per_family), batch=per_family
        )
        for c in range(per_family):
            ax = axes[r, c]
            ax.imshow(images[c])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"class {int(labels[c])}", fontsize=7)
            if c == 0:
                ax.set_ylabel(family, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def read_metrics(path: str) -> list[dict]:
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut by a kill: skip it
                        continue
    return rows


def plot_pretrain_curves(curves: dict[str, list[dict]], path: str):
    """Training loss (and accuracy when logged) against step, one line per pre-training."""
    plt = _pyplot()
    has_acc = any(any("accuracy" in r for r in rows) for rows in curves.values())
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5.5, 3.6))
    axes = np.atleast_1d(axes)
    for name, rows in sorted(curves.items()):
        steps = [r["step"] for r in rows if "loss" in r]
        axes[0].plot(steps, [r["loss"] for r in rows if "loss" in r], label=name, lw=1.2)
        if has_acc:
            steps = [r["step"] for r in rows if "accuracy" in r]
            axes[1].plot(steps, [r["accuracy"] for r in rows if "accuracy" in r], lw=1.2)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss")
    axes[0].legend(fontsize=7)
    if has_acc:
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("training accuracy")
    fig.tight_layout()
    _save(fig, path)


def plot_learning_curve(
    curve: dict, x, y, title: str, path: str, baseline=None, xlabel="", ylabel=""
):
    """Points (mean +- std over seeds per size), fitted law, bootstrap band, held-out sizes,
    transfer gap, the scratch baseline and the planner's target."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    x, y = np.asarray(x, float), np.asarray(y, float)
    sizes = np.unique(x)
    ax.scatter(x, y, s=12, color="tab:blue", alpha=0.35, label="runs")
    means = np.array([y[x == s].mean() for s in sizes])
    stds = np.array([y[x == s].std() for s in sizes])
    ax.errorbar(sizes, means, yerr=stds, fmt="o", color="tab:blue", capsize=3, label="mean +- std")
    band = curve.get("band")
    if band:
        bx = np.array(band["x"])
        fit = curve["fit"]
        ax.plot(bx, band["mean"], color="tab:red", lw=1.5, label=f"{fit['law']}: {fit['formula']}")
        if "lower" in band:
            ax.fill_between(bx, band["lower"], band["upper"], color="tab:red", alpha=0.15,
                            label="95% bootstrap band")  # fmt: skip
        floor = fit["params"].get("C")
        if floor is not None:
            ax.axhline(floor, color="tab:red", ls=":", lw=1, label=f"transfer gap C = {floor:.3f}")
    extrapolation = curve.get("extrapolation") or {}
    held = extrapolation.get("heldout_x") or []
    if held:
        ax.scatter(held, extrapolation.get("heldout_y") or [], s=60, facecolors="none",
                   edgecolors="k", label="held out (extrapolation)")  # fmt: skip
    if baseline is not None and len(baseline):
        b = np.asarray(baseline, float)
        ax.axhline(b.mean(), color="gray", ls="--", lw=1.2, label=f"scratch {b.mean():.3f}")
        if len(b) > 1:
            ax.axhspan(b.mean() - b.std(), b.mean() + b.std(), color="gray", alpha=0.12)
    plan = curve.get("plan") or {}
    if plan.get("target") is not None:
        ax.axhline(plan["target"], color="tab:green", ls="-.", lw=1, label="target")
        if plan.get("n") is not None:
            ax.axvline(plan["n"], color="tab:green", ls="-.", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Frame the measured errors (and the baseline, target and floor when near them): a wide
    # bootstrap band or a floor near 0 must not squash the points into one line.
    shown = [v for v in y if v > 0]
    if baseline is not None and len(baseline):
        shown.append(float(np.mean(baseline)))
    if plan.get("target"):
        shown.append(float(plan["target"]))
    if shown:
        lo, hi = min(shown), max(shown)
        ax.set_ylim(lo / 1.5, min(hi * 1.5, 1.05) if hi <= 1 else hi * 1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: str):
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)


# ---------------------------------------------------------------------------------------------
# The report.


def _fmt(value, digits=4) -> str:
    value = _number(value)
    return "-" if not math.isfinite(value) else f"{value:.{digits}g}"


def _interval(fit: dict, name: str) -> str:
    ci = (fit.get("ci") or {}).get(name)
    if not ci or ci[0] is None:
        return ""
    return f" [{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]"


def analyse(config, cells: list[grid.Cell], workdir: str) -> dict:
    """The numbers of the report (report.json): per group, its points, fit, extrapolation, plan,
    scratch baseline and the gain of the best pre-training over scratch."""
    law = {**DEFAULT_LAW, **config_to_dict(config.get("law", {}) or {})}
    rows = load_rows(workdir, cells)
    keys = list(law["group"])
    groups: dict[tuple, dict] = {}
    for row in rows:
        if row["scratch"]:
            continue
        groups.setdefault(group_key(row, keys), []).append(row)
    scratch: dict[tuple, list[float]] = {}
    for row in rows:
        if row["scratch"]:
            y = _number(row.get(law["y"]))
            if math.isfinite(y):
                scratch.setdefault(group_key(row, _baseline_keys(keys)), []).append(y)
    out_groups = []
    for key, members in sorted(groups.items()):
        x = np.array([_number(r.get(law["x"])) for r in members])
        y = np.array([_number(r.get(law["y"])) for r in members])
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
        x, y = x[ok], y[ok]
        base_key = tuple(v for k, v in zip(keys, key) if k in _baseline_keys(keys))
        baseline = scratch.get(base_key, [])
        entry = {
            "group": dict(zip(keys, key)),
            "x": x.tolist(),
            "y": y.tolist(),
            "scratch": {
                "values": baseline,
                "mean": float(np.mean(baseline)) if baseline else None,
            },
        }
        if len(x):
            sizes = np.unique(x)
            means = np.array([y[x == s].mean() for s in sizes])
            best = int(np.argmin(means))
            entry["best"] = {"x": float(sizes[best]), "mean": float(means[best])}
            if baseline:
                entry["gain_over_scratch"] = float(np.mean(baseline) - means[best])
            # The planner's question: the law's target, or by default 10% less error than the
            # best run (how much more synthetic data would that take?).
            target = float(law.get("target") or 0.0) or 0.9 * float(means[best])
            entry.update(fit_curve(x, y, law, target))
        out_groups.append(entry)
    pretrain_ids = sorted({c.pretrain_id for c in cells if c.pretrain_id})
    return {
        "name": config.get("name", ""),
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "law": law,
        "cells": len(cells),
        "pretrainings": len(pretrain_ids),
        "rows": len(rows),
        "groups": out_groups,
        "scratch_rows": sum(1 for r in rows if r["scratch"]),
        "table": [
            {
                k: r.get(k)
                for k in ("cell_id", law["x"], "model", "dataset", "mode", "seed", law["y"])
            }
            for r in rows
        ],
    }


def write(config, cells: list[grid.Cell], workdir: str, out=None) -> str:
    """Writes report.json, the figures and report.md; returns the path of report.md."""
    out = out or sys.stdout
    figures = os.path.join(workdir, FIGURES)
    os.makedirs(figures, exist_ok=True)
    print("report: fitting the law per group", file=out, flush=True)
    numbers = analyse(config, cells, workdir)
    law = numbers["law"]
    report_config = config_to_dict(config.get("report", {}) or {})
    md = [f"# Sweep report: {numbers['name']}", ""]
    md.append(
        f"Generated {numbers['generated']} by `synth-jax sweep`. {numbers['cells']} cells "
        f"({numbers['pretrainings']} pre-trainings), {numbers['rows']} finished; "
        f"law `{law['name']}` of `{law['y']}` against `{law['x']}`, grouped by "
        f"{', '.join(law['group']) or 'nothing'}."
    )
    md += ["", "## Headline", ""]
    md += _headline(numbers) or ["No finished pre-trained cells yet."]

    families = list(report_config.get("families") or [])
    if not families:
        families = sorted(
            {
                c.pretrain.data.family
                for c in cells
                if c.pretrain is not None and "data" in c.pretrain and "family" in c.pretrain.data
            }  # fmt: skip
        )
    if families:
        print(f"report: rendering samples of {', '.join(families)}", file=out, flush=True)
        plot_samples(
            families,
            os.path.join(figures, "samples.png"),
            per_family=int(report_config.get("samples", 8)),
            image_size=int(report_config.get("image_size", 64)),
        )
        md += ["", "## Synthetic images", "", "![samples](figures/samples.png)", ""]
        md.append(f"One image of each of the first categories of: {', '.join(families)}.")

    curves = {}
    for pretrain_id in sorted({c.pretrain_id for c in cells if c.pretrain_id}):
        rows = read_metrics(os.path.join(workdir, "pretrain", pretrain_id, "metrics.jsonl"))
        if rows:
            curves[pretrain_id] = rows
    if curves:
        plot_pretrain_curves(curves, os.path.join(figures, "pretrain_curves.png"))
        md += ["", "## Pre-training", "", "![pre-training curves](figures/pretrain_curves.png)", ""]
        md += ["| pre-training | steps | first loss | last loss |", "|---|---|---|---|"]
        for name, rows in sorted(curves.items()):
            losses = [r["loss"] for r in rows if "loss" in r]
            md.append(
                f"| {name} | {rows[-1].get('step', '-')} | {_fmt(losses[0] if losses else None)} "
                f"| {_fmt(losses[-1] if losses else None)} |"
            )

    md += ["", "## Learning curves", ""]
    for k, entry in enumerate(numbers["groups"]):
        title = ", ".join(f"{a}={b}" for a, b in entry["group"].items()) or "all cells"
        md += [f"### {title}", ""]
        if len(entry["x"]):
            name = f"learning_curve_{k}.png"
            plot_learning_curve(
                entry, entry["x"], entry["y"], title, os.path.join(figures, name),
                baseline=entry["scratch"]["values"], xlabel=law["x"], ylabel=law["y"],
            )  # fmt: skip
            md += [f"![learning curve](figures/{name})", ""]
        md += _fit_lines(entry, law)
    md += ["", "## All finished cells", "", _table(numbers["table"]), ""]
    files.write_json(os.path.join(workdir, "report.json"), numbers)
    path = os.path.join(workdir, "report.md")
    files.write_text(path, "\n".join(md) + "\n")
    print(f"report: {path}", file=out, flush=True)
    return path


def _headline(numbers: dict) -> list[str]:
    lines = []
    y = numbers["law"]["y"]
    for entry in numbers["groups"]:
        title = ", ".join(f"{a}={b}" for a, b in entry["group"].items()) or "all cells"
        best = entry.get("best")
        if not best:
            continue
        text = f"- **{title}**: best pre-trained {y} {_fmt(best['mean'])} at n = {_fmt(best['x'])}"
        if entry["scratch"]["mean"] is not None:
            gain = entry["gain_over_scratch"]
            verdict = "better" if gain > 0 else "worse"
            text += (
                f"; from scratch {_fmt(entry['scratch']['mean'])}: pre-training is "
                f"{abs(gain):.4f} {verdict}"
            )
        fit = entry.get("fit")
        if fit:
            params = ", ".join(
                f"{n} = {_fmt(v, 3)}{_interval(fit, n)}" for n, v in fit["params"].items()
            )
            text += f". Fit {fit['formula']}: {params} (R^2 {_fmt(fit['r2'], 3)})"
        plan = entry.get("plan") or {}
        if plan.get("summary"):
            text += f". Planner: {plan['summary']}"
        lines.append(text + ".")
    return lines


def _fit_lines(entry: dict, law: dict) -> list[str]:
    lines = []
    if "error" in entry:
        return [f"Not fitted: {entry['error']}", ""]
    fit = entry.get("fit")
    if not fit:
        return ["No points to fit.", ""]
    lines += ["| parameter | value | std. error | 95% bootstrap interval |", "|---|---|---|---|"]
    for name, value in fit["params"].items():
        fixed = " (fixed)" if name in (fit.get("fixed") or {}) else ""
        lines.append(
            f"| {name}{fixed} | {_fmt(value)} | {_fmt((fit.get('stderr') or {}).get(name))} "
            f"| {_interval(fit, name).strip() or '-'} |"
        )
    notes = [
        f"R^2 {_fmt(fit['r2'], 3)}",
        f"RMSE {_fmt(fit['rmse'], 3)}",
        f"{fit['n_points']} points",
    ]
    if not fit.get("converged", True):
        notes.append("**did not converge**")
    if fit.get("hit_bounds"):
        notes.append(f"**at a bound: {', '.join(fit['hit_bounds'])}**")
    lines += ["", "Fit: " + ", ".join(notes) + ".", ""]
    extrapolation = entry.get("extrapolation") or {}
    if "error" in extrapolation:
        lines.append(f"Extrapolation check: not done ({extrapolation['error']}).")
    elif extrapolation:
        lines.append(
            "Extrapolation check: fitted on the smallest sizes, the law predicts the held-out "
            f"sizes {extrapolation.get('heldout_sizes')} with log-RMSE "
            f"{_fmt(extrapolation.get('heldout_log_rmse'), 3)}."
        )
    plan = entry.get("plan")
    if plan:
        lines += ["", f"Planner: {plan.get('summary') or plan.get('error')}"]
    return lines + [""]


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no finished cells)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)
