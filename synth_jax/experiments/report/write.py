"""Writing the report: report.md with the figures, report.json and summary.csv."""

from __future__ import annotations

import csv
import io
import math
import os
import sys

from synth_jax import files
from synth_jax.config import config_to_dict
from synth_jax.experiments import grid
from synth_jax.experiments.report import join, plot
from synth_jax.experiments.report.fit import analyse
from synth_jax.scaling.compare import NO_DIFFERENCE

FIGURES = "figures"
SUMMARY = "summary.csv"


def _fmt(value, digits=4) -> str:
    value = join.number(value)
    return "-" if not math.isfinite(value) else f"{value:.{digits}g}"


def _interval(fit: dict, name: str) -> str:
    ci = (fit.get("ci") or {}).get(name)
    if not ci or ci[0] is None:
        return ""
    return f" [{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]"


def _title(entry: dict) -> str:
    return ", ".join(f"{a}={b}" for a, b in entry["group"].items()) or "all cells"


def write(config, cells: list[grid.Cell], workdir: str, out=None) -> str:
    """Writes report.json, summary.csv, the figures and report.md; returns report.md's path."""
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
        f"({numbers['pretrainings']} pre-trainings), {numbers['rows']} finished runs; "
        f"law `{law['name']}` of `{law['y']}` against `{law['x']}`, grouped by "
        f"{', '.join(law['group']) or 'nothing'}. Differences are pre-trained minus scratch "
        f"error (negative: pre-training helps), with {100 * law['ci']:.0f}% intervals over "
        "seeds; `summary.csv` lists every size."
    )
    md += ["", "## Headline", ""]
    md += headline(numbers) or ["No finished pre-trained cells yet."]

    md += _samples_section(report_config, cells, figures, out)
    md += _pretrain_section(cells, workdir, figures)

    md += ["", "## Learning curves", ""]
    for k, entry in enumerate(numbers["groups"]):
        title = _title(entry)
        md += [f"### {title}", ""]
        if len(entry["x"]):
            name = f"learning_curve_{k}.png"
            plot.plot_learning_curve(
                entry,
                title,
                os.path.join(figures, name),
                float(law["ci"]),
                xlabel=law["x"],
                ylabel=law["y"],
            )
            md += [f"![learning curve](figures/{name})", ""]
        md += _comparison_lines(entry, law)
        md += _fit_lines(entry)
    if numbers["between_sources"]:
        md += ["", "## Between pre-training sources", ""]
        for c in numbers["between_sources"]:
            md.append(
                f"- {c['a']} minus {c['b']} (mean over sizes {', '.join(map(_fmt, c['sizes']))}):"
                f" {c['text']}: {_verdict(c['verdict'])}."
            )
    md += ["", "## All finished cells", "", _table(numbers["table"]), ""]
    files.write_json(os.path.join(workdir, "report.json"), numbers)
    files.write_text(os.path.join(workdir, SUMMARY), summary_csv(numbers))
    path = os.path.join(workdir, "report.md")
    files.write_text(path, "\n".join(md) + "\n")
    print(f"report: {path}", file=out, flush=True)
    return path


def _samples_section(report_config: dict, cells, figures: str, out) -> list[str]:
    """A figure of each pre-training family's first categories, and its markdown lines."""
    families = list(report_config.get("families") or [])
    if not families:
        families = sorted(
            {
                c.pretrain.data.family
                for c in cells
                if c.pretrain is not None and "data" in c.pretrain and "family" in c.pretrain.data
            }
        )
    if not families:
        return []
    print(f"report: rendering samples of {', '.join(families)}", file=out, flush=True)
    plot.plot_samples(
        families,
        os.path.join(figures, "samples.png"),
        per_family=int(report_config.get("samples", 8)),
        image_size=int(report_config.get("image_size", 64)),
    )
    return [
        "",
        "## Synthetic images",
        "",
        "![samples](figures/samples.png)",
        "",
        f"One image of each of the first categories of: {', '.join(families)}.",
    ]


def _pretrain_section(cells, workdir: str, figures: str) -> list[str]:
    """The pre-training loss curves (a figure) and a first/last loss table."""
    curves = {}
    for pretrain_id in sorted({c.pretrain_id for c in cells if c.pretrain_id}):
        rows = plot.read_metrics(os.path.join(workdir, "pretrain", pretrain_id, "metrics.jsonl"))
        if rows:
            curves[pretrain_id] = rows
    if not curves:
        return []
    plot.plot_pretrain_curves(curves, os.path.join(figures, "pretrain_curves.png"))
    md = ["", "## Pre-training", "", "![pre-training curves](figures/pretrain_curves.png)", ""]
    md += ["| pre-training | steps | first loss | last loss |", "|---|---|---|---|"]
    for name, rows in sorted(curves.items()):
        losses = [r["loss"] for r in rows if "loss" in r]
        md.append(
            f"| {name} | {rows[-1].get('step', '-')} | {_fmt(losses[0] if losses else None)} "
            f"| {_fmt(losses[-1] if losses else None)} |"
        )
    return md


def _verdict(verdict: str) -> str:
    """The comparison's verdict in words (a is pre-trained, b scratch or another source)."""
    return {
        "lower": "lower error, beyond the interval",
        "higher": "HIGHER error, beyond the interval",
        NO_DIFFERENCE: f"{NO_DIFFERENCE} at this budget",
        "no interval": "no interval (add seeds)",
    }[verdict]


def headline(numbers: dict) -> list[str]:
    """One bullet per group: scratch, the best size and all sizes against it with intervals,
    the fit with its intervals and flags, the planner."""
    lines = []
    y = numbers["law"]["y"]
    for entry in numbers["groups"]:
        best = entry.get("best")
        if not best:
            continue
        text = f"- **{_title(entry)}**: "
        scratch = entry["scratch"]
        vs = entry.get("vs_scratch")
        if vs:
            b, pooled = vs["best"], vs["pooled"]
            text += (
                f"from scratch {y} {_fmt(scratch['mean'])} ({scratch['runs']} runs). "
                f"Best pre-training (n = {_fmt(b['size'])} of {vs['sizes']} sizes) minus "
                f"scratch: {b['text']}: {_verdict(b['verdict'])}. All sizes pooled: "
                f"{pooled['text']}: {_verdict(pooled['verdict'])}"
            )
        else:
            text += (
                f"best pre-trained {y} {_fmt(best['mean'])} at n = {_fmt(best['x'])}; no scratch "
                "runs to compare with"
            )
        fit = entry.get("fit")
        if fit:
            params = ", ".join(
                f"{n} = {_fmt(v, 3)}{_interval(fit, n)}" for n, v in fit["params"].items()
            )
            text += f". Fit {fit['formula']}: {params} (R^2 {_fmt(fit['r2'], 3)}"
            if fit.get("ci_method"):
                text += f"; {fit['ci_method']}"
            text += ")"
            text += "".join(f"; {flag}" for flag in _flags(fit))
        elif entry.get("error"):
            text += f". Law not fitted: {entry['error']}"
        plan = entry.get("plan") or {}
        if plan.get("summary"):
            text += f". Planner: {plan['summary']}"
        lines.append(text + ".")
    return lines


def _flags(fit: dict) -> list[str]:
    flags = []
    if not fit.get("converged", True):
        flags.append(f"**did not converge ({fit.get('status')})**")
    if fit.get("hit_bounds"):
        flags.append(
            f"**at a bound: {', '.join(fit['hit_bounds'])}** (the data do not pin "
            f"{'it' if len(fit['hit_bounds']) == 1 else 'them'} down)"
        )
    return flags


def _comparison_lines(entry: dict, law: dict) -> list[str]:
    per_size = entry.get("per_size") or []
    if not per_size:
        return []
    vs = entry.get("vs_scratch")
    pct = f"{100 * law['ci']:.0f}%"
    lines = [
        f"| {law['x']} | runs | mean {law['y']} [{pct} CI] | minus scratch [{pct} CI] |",
        "|---|---|---|---|",
    ]
    scratch = entry["scratch"]
    if scratch["mean"] is not None:
        lines.append(f"| scratch | {scratch['runs']} | {_fmt(scratch['mean'])}{_ci(scratch)} | - |")
    diffs = {d["size"]: d for d in (vs or {}).get("per_size", [])}
    for s in per_size:
        d = diffs.get(s["size"])
        lines.append(
            f"| {_fmt(s['size'])} | {s['runs']} | {_fmt(s['mean'])}{_ci(s)} | "
            f"{d['text'] if d else '-'} |"
        )
    lines.append("")
    if vs:
        lines.append(
            f"Per-size intervals are unadjusted; the best size's, in the headline, is adjusted "
            f"for being the best of {vs['sizes']}."
        )
        lines.append("")
    return lines


def _ci(summary: dict) -> str:
    return f" [{_fmt(summary['ci'][0])}, {_fmt(summary['ci'][1])}]" if summary.get("ci") else ""


def _fit_lines(entry: dict) -> list[str]:
    if "error" in entry:
        return [f"Not fitted: {entry['error']}", ""]
    fit = entry.get("fit")
    if not fit:
        return ["No points to fit.", ""]
    pct = f"{100 * fit['ci_level']:.0f}%"
    lines = [f"| parameter | value | std. error | {pct} bootstrap interval |", "|---|---|---|---|"]
    for name, value in fit["params"].items():
        fixed = " (fixed)" if name in (fit.get("fixed") or {}) else ""
        bound = " (at a bound)" if name in fit.get("hit_bounds", []) else ""
        lines.append(
            f"| {name}{fixed}{bound} | {_fmt(value)} | "
            f"{_fmt((fit.get('stderr') or {}).get(name))} | {_interval(fit, name).strip() or '-'} |"
        )
    notes = [
        f"R^2 {_fmt(fit['r2'], 3)}",
        f"RMSE {_fmt(fit['rmse'], 3)}",
        f"{fit['n_points']} points at {fit['n_sizes']} sizes",
        *_flags(fit),
    ]
    lines += ["", "Fit: " + ", ".join(notes) + "."]
    boot = fit.get("bootstrap")
    if boot:
        shares = ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in boot["at_bound"].items() if v and v > 0.05
        )
        lines.append(
            f"Intervals: {boot['describe']} ({boot['note']})."
            + (f" Refits with a parameter on its bound: {shares}." if shares else "")
        )
    lines.append("")
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


SUMMARY_COLUMNS = (
    "comparison",
    "size",
    "runs",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "minus_scratch",
    "minus_scratch_ci_low",
    "minus_scratch_ci_high",
    "level",
    "method",
    "verdict",
)


def summary_csv(numbers: dict) -> str:
    """summary.csv: per group, a row for scratch, one per size (its mean over seeds with its
    interval, and its difference from scratch with its interval), the best size (interval
    adjusted for the selection) and all sizes pooled."""
    keys = list(numbers["law"]["group"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*keys, *SUMMARY_COLUMNS])
    level = numbers["law"]["ci"]
    for entry in numbers["groups"]:
        group = [entry["group"].get(k, "") for k in keys]
        scratch = entry["scratch"]
        if scratch["mean"] is not None:
            writer.writerow([*group, "scratch", "", *_stats(scratch), "", "", "", level, "", ""])
        vs = entry.get("vs_scratch") or {}
        diffs = {d["size"]: d for d in vs.get("per_size", [])}
        for s in entry.get("per_size") or []:
            writer.writerow(
                [*group, "size", s["size"], *_stats(s), *_diff(diffs.get(s["size"]), level)]
            )
        for name in ("best", "pooled"):
            d = vs.get(name)
            if d:
                size = d.get("size", "")
                runs = d["pairs"] or d["runs_a"]
                writer.writerow(
                    [*group, name, size, runs, d["mean_a"], "", "", "", *_diff(d, level)]
                )
    return buffer.getvalue()


def _stats(summary: dict) -> list:
    ci = summary.get("ci") or ["", ""]
    std = summary.get("std")
    return [summary["runs"], summary["mean"], "" if std is None else std, ci[0], ci[1]]


def _diff(d: dict | None, level: float) -> list:
    if not d:
        return ["", "", "", level, "", ""]
    ci = d["ci"] or ["", ""]
    return [d["difference"], ci[0], ci[1], d["adjusted_level"], d["method"], d["verdict"]]
