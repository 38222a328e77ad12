"""The report's figures (PNG, matplotlib's Agg backend, imported only when a figure is drawn):
fractal samples, pre-training curves, and the learning curve of each group.
"""

from __future__ import annotations

import json
import os

import numpy as np

from synth_jax import files
from synth_jax.fractals import FractalDataset
from synth_jax.fractals.preview import preview_config, preview_indices, render_images


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str):
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)


def plot_samples(families: list[str], path: str, per_family: int = 8, image_size: int = 64):
    """One row of `per_family` images (one per category) of each fractal family, rendered from
    the engine's small preview configs (seconds on a laptop CPU)."""
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
    """The rows of a metrics.jsonl (a line cut by a kill is skipped)."""
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
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


def _half_width(summary: dict) -> float:
    return 0.0 if not summary.get("ci") else summary["ci"][1] - summary["mean"]


def plot_learning_curve(entry: dict, title: str, path: str, level: float, xlabel="", ylabel=""):
    """The group's runs (faint), each size's mean with its t-interval over seeds, the fitted law
    and its bootstrap band (labelled with method and refits), held-out sizes, transfer gap, the
    scratch baseline's mean and interval, and the planner's target."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    x, y = np.asarray(entry["x"], float), np.asarray(entry["y"], float)
    pct = f"{100 * level:.0f}%"
    ax.scatter(x, y, s=12, color="tab:blue", alpha=0.3, label="runs")
    per_size = entry.get("per_size") or []
    if per_size:
        runs = sorted({s["runs"] for s in per_size})
        ax.errorbar(
            [s["size"] for s in per_size],
            [s["mean"] for s in per_size],
            yerr=[_half_width(s) for s in per_size],
            fmt="o",
            color="tab:blue",
            capsize=3,
            label=f"mean, {pct} CI over {'/'.join(map(str, runs))} seeds",
        )
    band = entry.get("band")
    if band:
        bx = np.array(band["x"])
        fit = entry["fit"]
        ax.plot(bx, band["mean"], color="tab:red", lw=1.5, label=f"{fit['law']}: {fit['formula']}")
        if "lower" in band:
            b = fit["bootstrap"]
            label = f"{pct} band: {b['method']} bootstrap, {b['refits']} refits"
            # null: a bound past every refit (too many did not converge), drawn as a gap
            lower, upper = (np.array(band[k], dtype=np.float64) for k in ("lower", "upper"))
            ax.fill_between(bx, lower, upper, color="tab:red", alpha=0.15, label=label)
        floor = fit["params"].get("C")
        if floor is not None:
            ax.axhline(floor, color="tab:red", ls=":", lw=1, label=f"transfer gap C = {floor:.3f}")
    extrapolation = entry.get("extrapolation") or {}
    held = extrapolation.get("heldout_x") or []
    if held:
        ax.scatter(
            held,
            extrapolation.get("heldout_y") or [],
            s=60,
            facecolors="none",
            edgecolors="k",
            label="held out (extrapolation)",
        )
    scratch = entry.get("scratch") or {}
    if scratch.get("mean") is not None:
        mean = scratch["mean"]
        ax.axhline(mean, color="gray", ls="--", lw=1.2, label=f"scratch {mean:.3f}")
        if scratch.get("ci"):
            ax.axhspan(*scratch["ci"], color="gray", alpha=0.12, label=f"scratch {pct} CI")
    plan = entry.get("plan") or {}
    if plan.get("target") is not None:
        ax.axhline(plan["target"], color="tab:green", ls="-.", lw=1, label="target")
        if plan.get("n") is not None:
            ax.axvline(plan["n"], color="tab:green", ls="-.", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Frame the measured errors (and the baseline, target and floor when near them): a wide
    # bootstrap band or a floor near 0 must not squash the points into one line.
    shown = [v for v in y if v > 0]
    if scratch.get("mean"):
        shown.append(float(scratch["mean"]))
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
