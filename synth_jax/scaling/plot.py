"""Plots of fitted laws: per-size means with seed error bars, fitted curve, bootstrap band,
held-out points.

Log-log axes; one colour per curve (group). Error bars are t-intervals of each size's mean over
its runs (seeds) at the fit's level; the band is the bootstrap's, labelled with its method and
replicate count. Matplotlib's Agg backend, so it runs headless.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from synth_jax.files import atomic_path
from synth_jax.scaling.compare import mean_interval
from synth_jax.scaling.result import FitResult


@dataclasses.dataclass
class Curve:
    """One fitted curve to draw: its fit, a legend label, optionally the extrapolation check
    (its held-out points are drawn hollow, with the curve fitted without them dashed) and the
    from-scratch error (a dotted horizontal line)."""

    result: FitResult
    label: str
    extrapolation: dict | None = None
    scratch_error: float | None = None


def _band(result: FitResult, grid: np.ndarray, at: np.ndarray | None):
    """The bootstrap interval of the refits' predictions on grid float[G] (or None)."""
    if result.bootstrap is None or result.bootstrap.used < 2:
        return None
    x = grid[:, None] if at is None else np.column_stack([grid, np.full_like(grid, at)])
    curves = result.problem.predict_rows(result.bootstrap_params, x)
    lower, upper = result.bootstrap_interval(curves, result.predict(x))
    # an infinite bound (too many refits did not converge) leaves a gap, not a wall
    return tuple(np.where(np.isfinite(b), b, np.nan) for b in (lower, upper))


def plot_fits(
    path: str,
    curves: list[Curve],
    *,
    x_name: str = "n",
    y_name: str = "error",
    x2_name: str = "s",
):
    """Writes one log-log figure with every curve to path (.png, .pdf or .svg), atomically.

    For a two-input law the fitted curve is drawn at each value of the second input (up to 4).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, curve in enumerate(curves):
        color = colors[i % len(colors)]
        _draw_points(ax, curve, color)
        _draw_law(ax, curve, color, x2_name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    if curves:
        law = curves[0].result.law
        ax.set_title(f"{law.name}: {law.formula}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.rsplit(".", 1)[-1].lower(), dpi=120)
    plt.close(fig)


def _draw_points(ax, curve: Curve, color) -> None:
    """The data: mean and its t-interval over repeats (seeds) at each input; held-out sizes
    hollow."""
    result = curve.result
    x, y = result.problem.x, result.problem.y
    held = np.zeros(len(y), bool)
    if curve.extrapolation:
        held = x[:, 0] >= min(curve.extrapolation["heldout_sizes"])
    keys, inverse = np.unique(x, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    summaries = [mean_interval(y[inverse == k], result.ci_level) for k in range(len(keys))]
    means = np.array([m["mean"] for m in summaries])
    half = np.array([0.0 if m["ci"] is None else m["ci"][1] - m["mean"] for m in summaries])
    held_key = np.array([held[inverse == k].any() for k in range(len(keys))])
    for mask, face in ((~held_key, color), (held_key, "none")):
        if mask.any():
            ax.errorbar(
                keys[mask, 0],
                means[mask],
                yerr=half[mask],
                fmt="o",
                color=color,
                markerfacecolor=face,
                capsize=3,
                label=None
                if face == "none"
                else f"{curve.label}: mean, {100 * result.ci_level:.0f}% CI over runs",
            )


def _draw_law(ax, curve: Curve, color, x2_name: str) -> None:
    """The fitted law (at up to 4 values of a second input) with its bootstrap band, the fit
    without the held-out sizes (dashed) and the from-scratch error (dotted)."""
    result, problem = curve.result, curve.result.problem
    x = problem.x
    grid = np.geomspace(x[:, 0].min() / 1.5, x[:, 0].max() * 4, 200)
    levels = [None] if x.shape[1] == 1 else list(np.unique(x[:, 1]))[:4]
    for at in levels:
        xg = grid[:, None] if at is None else np.column_stack([grid, np.full_like(grid, at)])
        ax.plot(grid, result.predict(xg), color=color, lw=1.5)
        if at is not None:  # name the second input's value at the curve's right end
            ax.annotate(
                f"{x2_name}={at:.3g}",
                (grid[-1], result.predict(xg)[-1]),
                fontsize=7,
                color=color,
                ha="right",
                va="bottom",
            )
        band = _band(result, grid, at)
        if band is not None:
            b = result.bootstrap
            label = f"{b.method} bootstrap, {b.refits} refits" if at == levels[0] else None
            ax.fill_between(grid, band[0], band[1], color=color, alpha=0.2, lw=0, label=label)
    if curve.extrapolation and x.shape[1] == 1:
        ax.plot(
            grid,
            problem.predict(curve.extrapolation["params"], grid[:, None]),
            color=color,
            ls="--",
            lw=1,
            label=f"{curve.label}: fit without held-out sizes",
        )
    if curve.scratch_error is not None:
        ax.axhline(
            curve.scratch_error, color=color, ls=":", lw=1, label=f"{curve.label}: from scratch"
        )
