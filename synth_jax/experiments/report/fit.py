"""The report's numbers: per group, each size's runs over seeds, the comparison with scratch
(paired by seed, with intervals), the fitted law with its bootstrap intervals, the
extrapolation check and the planner; and the comparison between pre-training sources.
"""

from __future__ import annotations

import datetime
import itertools

import numpy as np

from synth_jax import scaling
from synth_jax.config import config_to_dict
from synth_jax.errors import UsageError
from synth_jax.experiments import grid
from synth_jax.experiments.report import join
from synth_jax.files import finite_json
from synth_jax.scaling import compare
from synth_jax.scaling.config import law_config


def law_settings(config) -> dict:
    """The sweep's law settings over the defaults (synth_jax.scaling.config), as a dict."""
    return config_to_dict(law_config(**config_to_dict(config.get("law", {}) or {})))


def fit_curve(x: np.ndarray, y: np.ndarray, seeds, law: dict, target: float = 0.0) -> dict:
    """Fits the law to one learning curve, checks extrapolation and asks the planner.

    x: float[N] pre-training sizes (> 0); y: float[N] fine-tuning errors; seeds: str[N] (each
    run's seed, for seed resampling) or None. Returns a JSON-ready dict: "fit" (the scaling
    API's to_dict, with how its intervals were obtained), "band" (x grid, best fit and the
    bootstrap percentile band), "extrapolation" and, for a target error > 0, "plan" (or an
    "error" saying why a part could not be done).
    """
    sizes = np.unique(x)
    out: dict = {"n_points": int(len(x)), "sizes": sizes.tolist()}
    clusters = None if seeds is None else np.unique(np.asarray(seeds), return_inverse=True)[1]
    try:
        result = scaling.fit(
            law["name"],
            x,
            y,
            fix=dict(law.get("fix") or {}),
            bootstrap=int(law["bootstrap"]),
            resample=law["resample"],
            clusters=clusters,
            seed=int(law["seed"]),
            ci=float(law["ci"]),
        )
    except UsageError as e:
        out["error"] = str(e)
        return out
    out["fit"] = result.to_dict()
    grid_x = np.geomspace(sizes.min() / 2, sizes.max() * 8, 64)
    out["band"] = {"x": grid_x.tolist(), "mean": result.predict(grid_x).tolist()}
    if result.bootstrap is not None and result.bootstrap.used:
        curves = result.problem.predict_rows(result.bootstrap_params, grid_x)
        lo, hi = result.bootstrap_interval(curves, result.predict(grid_x))
        band = {"lower": lo.tolist(), "upper": hi.tolist(), "method": result.bootstrap.describe()}
        out["band"].update(finite_json(band))
    out["extrapolation"] = _extrapolation(x, y, sizes, law)
    if target > 0:
        out["plan"] = _plan(result, target, law)
    return out


def _extrapolation(x, y, sizes, law) -> dict:
    holdout = int(law.get("holdout", 0))
    if holdout <= 0:
        return {"error": "law.holdout is 0: no extrapolation check asked for"}
    if len(sizes) - holdout < 2:
        return {"error": f"{len(sizes)} sizes leave too few to fit after holding out {holdout}"}
    try:
        return scaling.extrapolation_check(
            law["name"], x, y, holdout=holdout, fix=dict(law.get("fix") or {})
        )
    except UsageError as e:
        return {"error": str(e)}


def _plan(result, target: float, law: dict) -> dict:
    try:
        answer = scaling.plan(result, target, x_name=law["x"], y_name=law["y"])
    except UsageError as e:
        return {"error": str(e), "summary": f"refused: {e}"}
    # The report's two lookups: the plain-words answer and the size that reaches the target.
    answer["summary"] = answer.get("message")
    answer["n"] = (answer.get("size_needed") or {}).get("value")
    return answer


def _by_size_and_seed(x, y, seeds) -> dict:
    """{size: {seed: mean error of that seed's runs at that size}}."""
    runs: dict[float, dict] = {}
    for size, seed, value in zip(x, seeds, y):
        runs.setdefault(float(size), {}).setdefault(seed, []).append(float(value))
    return {s: {k: float(np.mean(v)) for k, v in by.items()} for s, by in runs.items()}


def _group(key, members, keys, law, scratch) -> dict:
    """One group's numbers; members: its pre-trained rows; scratch: {baseline key: {seed: [y]}}."""
    x = np.array([join.number(r.get(law["x"])) for r in members])
    y = np.array([join.number(r.get(law["y"])) for r in members])
    seeds = np.array([join.seed_of(r) for r in members])
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y, seeds = x[ok], y[ok], seeds[ok]
    base_key = tuple(v for k, v in zip(keys, key) if k in join.baseline_keys(keys))
    baseline = {s: float(np.mean(v)) for s, v in scratch.get(base_key, {}).items()}
    level = float(law["ci"])
    entry = {
        "group": dict(zip(keys, key)),
        "sources": sorted({str(r.get("pretrain_family", "")) for r in members}),
        "x": x.tolist(),
        "y": y.tolist(),
        "seeds": seeds.tolist(),
        "scratch": {
            "values": list(baseline.values()),
            "seeds": list(baseline),
            **compare.mean_interval(list(baseline.values()), level),
        },
    }
    if not len(x):
        return entry
    sizes = np.unique(x)
    entry["per_size"] = [
        {"size": float(s), **compare.mean_interval(y[x == s], level)} for s in sizes
    ]
    means = np.array([y[x == s].mean() for s in sizes])
    best = int(np.argmin(means))
    entry["best"] = {"x": float(sizes[best]), "mean": float(means[best])}
    by_size = _by_size_and_seed(x, y, seeds)
    if baseline:
        entry["vs_scratch"] = compare.against_baseline(by_size, baseline, level)
    # The planner's question: the law's target, or by default 10% less error than the best
    # run (how much more synthetic data would that take?).
    target = float(law.get("target") or 0.0) or 0.9 * float(means[best])
    unique_seeds = len(set(seeds.tolist()))
    use_seeds = seeds if unique_seeds < len(seeds) else None  # one run per seed: no clusters
    entry.update(fit_curve(x, y, use_seeds, law, target))
    entry["_by_size"] = by_size
    return entry


def _between_sources(groups: list[dict], keys: list[str], level: float) -> list[dict]:
    """Pairs of groups with the same fine-tuning setting and different pre-training: per seed,
    the mean error over the sizes both ran, compared with an interval. The pairs of one
    fine-tuning setting are one family: each interval is Bonferroni-adjusted for their number,
    so that all of them hold together at `level`."""
    base = join.baseline_keys(keys)
    setting = lambda g: tuple(g["group"].get(k) for k in base)
    label = lambda g: ", ".join(f"{k}={v}" for k, v in g["group"].items() if k not in base)
    pairs = []
    for a, b in itertools.combinations(groups, 2):
        if "_by_size" not in a or "_by_size" not in b or setting(a) != setting(b):
            continue
        common = sorted(set(a["_by_size"]) & set(b["_by_size"]))
        if common:
            pairs.append((a, b, common))
    family = {}
    for a, _, _ in pairs:
        family[setting(a)] = family.get(setting(a), 0) + 1
    out = []
    for a, b, common in pairs:
        pooled = []
        for g in (a, b):
            seeds = set.intersection(*(set(g["_by_size"][s]) for s in common))
            pooled.append({k: float(np.mean([g["_by_size"][s][k] for s in common])) for k in seeds})
        m = family[setting(a)]
        why = f"{m} pairwise comparisons between sources"
        out.append(
            {
                "a": label(a),
                "b": label(b),
                "sizes": common,
                **compare.paired_difference(pooled[0], pooled[1], level, m, why),
            }
        )
    return out


def analyse(config, cells: list[grid.Cell], workdir: str) -> dict:
    """The numbers of the report (report.json): per group, its runs per size, the comparison
    with scratch, the fit, extrapolation and plan; and comparisons between sources."""
    law = law_settings(config)
    rows = join.load_rows(workdir, cells)
    keys = list(law["group"])
    groups: dict[tuple, list] = {}
    scratch: dict[tuple, dict] = {}
    for row in rows:
        if not row["scratch"]:
            groups.setdefault(join.group_key(row, keys), []).append(row)
        elif join.finite(row.get(law["y"])):
            runs = scratch.setdefault(join.group_key(row, join.baseline_keys(keys)), {})
            runs.setdefault(join.seed_of(row), []).append(join.number(row.get(law["y"])))
    entries = [_group(key, members, keys, law, scratch) for key, members in sorted(groups.items())]
    between = _between_sources(entries, keys, float(law["ci"]))
    for entry in entries:
        entry.pop("_by_size", None)
    pretrain_ids = sorted({c.pretrain_id for c in cells if c.pretrain_id})
    return {
        "name": config.get("name", ""),
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "law": law,
        "cells": len(cells),
        "pretrainings": len(pretrain_ids),
        "rows": len(rows),
        "groups": entries,
        "between_sources": between,
        "scratch_rows": sum(1 for r in rows if r["scratch"]),
        "table": [
            {
                k: r.get(k)
                for k in ("cell_id", law["x"], "model", "dataset", "mode", "seed", law["y"])
            }
            for r in rows
        ],
    }
