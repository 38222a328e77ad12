"""Comparisons with uncertainty: the difference between two settings' errors over seeds.

Two settings run with the same seeds (pre-trained and from scratch, or two pre-training sources)
are compared seed by seed: d_s = a_s - b_s, with a t-interval on the mean of d over the seeds
(paired: what a seed shares between the two, its data order and head, cancels). Without common
seeds the interval is Welch's, unpaired; with one run on a side there is none, and the answer
says so. When the setting compared is the best of several (the best of N pre-training sizes
against scratch), the interval is widened for the N comparisons (Bonferroni: each at level
1 - (1 - level) / N), since the best of N noisy means is biased towards looking better.

A difference whose interval holds 0 is reported as "no detectable difference", never as a gain.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats

NO_DIFFERENCE = "no detectable difference"


def paired_difference(
    a: dict, b: dict, level: float = 0.95, comparisons: int = 1, family: str | None = None
) -> dict:
    """a - b over the keys (seeds) both have. a, b: {seed: value}.

    comparisons: how many intervals this one is picked from or reported with (Bonferroni);
    family: what they are, in words ("the best of 4" by default).

    Returns a JSON-ready dict: mean_a, mean_b, difference (mean of a minus mean of b over the
    runs used), ci [lower, upper] or None, level, adjusted_level (the level each of the
    `comparisons` intervals is computed at), comparisons, pairs (seeds in common), runs_a,
    runs_b, method, verdict (lower, higher, "no detectable difference", or "no interval") and
    text (the difference, interval and method in words).
    """
    a = {k: float(v) for k, v in a.items() if math.isfinite(float(v))}
    b = {k: float(v) for k, v in b.items() if math.isfinite(float(v))}
    common = sorted(set(a) & set(b), key=str)
    adjusted = 1.0 - (1.0 - level) / max(int(comparisons), 1)
    out = {
        "level": level,
        "adjusted_level": adjusted,
        "comparisons": int(comparisons),
        "pairs": len(common),
        "runs_a": len(a),
        "runs_b": len(b),
    }
    if len(common) >= 2:
        d = np.array([a[k] - b[k] for k in common])
        va, vb = np.array([a[k] for k in common]), np.array([b[k] for k in common])
        half = _t(adjusted, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        out.update(
            mean_a=float(va.mean()),
            mean_b=float(vb.mean()),
            difference=float(d.mean()),
            ci=[float(d.mean() - half), float(d.mean() + half)],
            method=f"paired t-interval over {len(d)} seeds",
        )
    elif len(a) >= 2 and len(b) >= 2:
        va, vb = np.array(list(a.values())), np.array(list(b.values()))
        sa, sb = va.var(ddof=1) / len(va), vb.var(ddof=1) / len(vb)
        se = math.sqrt(sa + sb)
        dof = (sa + sb) ** 2 / (
            sa**2 / (len(va) - 1) + sb**2 / (len(vb) - 1) + 1e-300
        )  # Welch-Satterthwaite
        diff = float(va.mean() - vb.mean())
        half = _t(adjusted, max(dof, 1.0)) * se
        out.update(
            mean_a=float(va.mean()),
            mean_b=float(vb.mean()),
            difference=diff,
            ci=[diff - half, diff + half],
            method=f"Welch t-interval, unpaired ({len(va)} and {len(vb)} runs, no common seeds)",
        )
    else:
        ma = float(np.mean(list(a.values()))) if a else float("nan")
        mb = float(np.mean(list(b.values()))) if b else float("nan")
        out.update(
            mean_a=ma,
            mean_b=mb,
            difference=ma - mb,
            ci=None,
            method=f"no interval: {min(len(a), len(b))} run(s) on one side; add seeds",
        )
    out["verdict"] = verdict(out["ci"])
    if comparisons > 1 and out["ci"] is not None:
        out["method"] += f", Bonferroni-adjusted for {family or f'the best of {comparisons}'}"
    out["text"] = describe(out)
    return out


def verdict(ci) -> str:
    """lower / higher (a's error is below / above b's) when the interval excludes 0."""
    if ci is None:
        return "no interval"
    if ci[1] < 0:
        return "lower"
    if ci[0] > 0:
        return "higher"
    return NO_DIFFERENCE


def describe(result: dict, digits: int = 4) -> str:
    """'-0.0210 [-0.0450, +0.0030] (95% paired t-interval over 5 seeds)'."""
    diff = f"{result['difference']:+.{digits}f}"
    if result["ci"] is None:
        return f"{diff} ({result['method']})"
    lo, hi = result["ci"]
    level = 100 * (result["adjusted_level"] if result["comparisons"] > 1 else result["level"])
    return f"{diff} [{lo:+.{digits}f}, {hi:+.{digits}f}] ({level:.4g}% {result['method']})"


def mean_interval(values, level: float = 0.95) -> dict:
    """Mean of values float[k] with its t-interval (None for one value): the error bar of a
    size's runs over seeds."""
    v = np.asarray([x for x in values if math.isfinite(float(x))], np.float64)
    out = {"mean": float(v.mean()) if len(v) else None, "runs": int(len(v)), "level": level}
    out["std"] = float(v.std(ddof=1)) if len(v) > 1 else None
    if len(v) > 1:
        half = _t(level, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
        out["ci"] = [float(v.mean() - half), float(v.mean() + half)]
    else:
        out["ci"] = None
    return out


def _t(level: float, dof: float) -> float:
    return float(scipy_stats.t.ppf(1.0 - (1.0 - level) / 2.0, dof))


def against_baseline(by_size: dict, baseline: dict, level: float = 0.95) -> dict:
    """Each size's runs against the baseline's (e.g. scratch), paired by seed.

    by_size: {size: {seed: error}}; baseline: {seed: error}. Returns per_size (each size's
    difference at `level`, unadjusted), best (the size with the lowest mean error, its interval
    adjusted for having been picked from all sizes) and pooled (per seed, the mean over the
    sizes minus the baseline: "does this pre-training help at all", no selection; without two
    seeds that ran every size, the mean of the sizes' means, unpaired: see
    `mean_over_sizes_difference`).
    """
    sizes = sorted(by_size)
    out = {"sizes": len(sizes), "level": level}
    out["per_size"] = [
        {"size": float(s), **paired_difference(by_size[s], baseline, level)} for s in sizes
    ]
    means = {s: float(np.mean(list(by_size[s].values()))) for s in sizes}
    best = min(sizes, key=means.get)
    out["best"] = {
        "size": float(best),
        **paired_difference(by_size[best], baseline, level, comparisons=len(sizes)),
    }
    shared = set.intersection(*(set(by_size[s]) for s in sizes)) if sizes else set()
    if len(shared) >= 2:
        pooled = {k: float(np.mean([by_size[s][k] for s in sizes])) for k in shared}
        out["pooled"] = paired_difference(pooled, baseline, level)
    else:
        out["pooled"] = mean_over_sizes_difference(by_size, baseline, level)
    return out


def mean_over_sizes_difference(by_size: dict, baseline: dict, level: float = 0.95) -> dict:
    """The mean over sizes of each size's mean error, minus the baseline's mean, unpaired: for
    runs that share no seeds across sizes. by_size: {size: {seed: error}}; baseline: {seed:
    error}. Welch's t-interval with the variance of a mean of K means (sum of s_k^2 / n_k over
    K^2) and Welch-Satterthwaite degrees of freedom; None (no interval) when a size or the
    baseline has fewer than 2 runs. The same keys as `paired_difference`."""
    groups = [np.array([v for v in runs.values() if math.isfinite(v)]) for runs in by_size.values()]
    base = np.array([v for v in baseline.values() if math.isfinite(float(v))], np.float64)
    k = len(groups)
    runs = sum(len(g) for g in groups)
    out = {"level": level, "adjusted_level": level, "comparisons": 1, "pairs": 0}
    out.update(runs_a=runs, runs_b=len(base))
    mean_a = float(np.mean([g.mean() for g in groups])) if all(len(g) for g in groups) else math.nan
    mean_b = float(base.mean()) if len(base) else math.nan
    out.update(mean_a=mean_a, mean_b=mean_b, difference=mean_a - mean_b, ci=None)
    if min([len(g) for g in groups] + [len(base)]) < 2:
        out["method"] = "no interval: a size or the baseline has fewer than 2 runs; add seeds"
    else:
        parts = [g.var(ddof=1) / len(g) / k**2 for g in groups] + [base.var(ddof=1) / len(base)]
        sizes = [len(g) for g in groups] + [len(base)]
        dof = sum(parts) ** 2 / (sum(p**2 / (m - 1) for p, m in zip(parts, sizes)) + 1e-300)
        half = _t(level, max(dof, 1.0)) * math.sqrt(sum(parts))
        out["ci"] = [out["difference"] - half, out["difference"] + half]
        out["method"] = (
            f"Welch t-interval on the mean over {k} sizes' means, unpaired ({runs} and "
            f"{len(base)} runs; no two seeds ran at every size)"
        )
    out["verdict"] = verdict(out["ci"])
    out["text"] = describe(out)
    return out
