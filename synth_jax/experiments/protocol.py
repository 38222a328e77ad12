"""`synth-jax protocol-search --config configs/experiments/protocol_search.py --workdir DIR`:
where does pre-training help at laptop scale? A grid of transfer cells on handwritten digits.

The downstream task is digits 5-9 (scikit-learn's digits, the demo's split): k labelled images
per class drawn from the training split (k = 0 means all of them), a validation part of the
training split held out for choosing a protocol, the test split for reporting. Every cell is
compared with the from-scratch cell of the same mode and k, seed by seed:

    sources     scratch; digits_5_9 (real images of the same five digits, none of them
                labelled for any seed, in validation or in test: the positive control, a
                source that must transfer); digits_0_4 (real images of the other five digits:
                transfer between real classes); formula-driven families (fractaldb, onepfrac,
                rcdb, visualatom, dead_leaves, ...; synth_jax.fractals)
    lengths     pre-training steps (one pre-training per source and length, seed 0)
    modes       finetune (every array trains) or probe (a linear probe on frozen features)
    shots       k labelled images per class (0: all)
    seeds       each seed fixes the labelled subset, the initialisation, batch order and
                augmentation, shared by the cells it pairs

Runs are in memory (synth_jax.experiments.lab). DIR/results.csv gets one row per run (its
validation and test error and CPU seconds); re-running skips finished runs. DIR/search.json and
DIR/search.md hold the table: each cell's mean error, its difference from scratch with a paired
95% t-interval over the seeds (synth_jax.scaling.compare), and its CPU cost.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pickle
import sys
import time

import numpy as np

from synth_jax import files
from synth_jax.config import config_from_argv
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.experiments import lab
from synth_jax.scaling.compare import mean_interval, paired_difference

REAL_SOURCE = "digits_0_4"  # real digits of the other classes
CONTROL_SOURCE = "digits_5_9"  # real digits of the same classes, never labelled: the control
REAL_SOURCES = (REAL_SOURCE, CONTROL_SOURCE)
FIELDS = ["cell", "source", "pretrain_steps", "mode", "shots", "seed", "val_error"]
FIELDS += ["test_error", "cpu_s"]


def recipe_of(section) -> lab.Recipe:
    """A lab.Recipe from a config section (unknown keys are a UsageError naming them)."""
    known = {f.name for f in dataclasses.fields(lab.Recipe)}
    values = dict(section.items()) if hasattr(section, "items") else dict(section)
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"recipe key {unknown[0]!r} is unknown; known: {', '.join(sorted(known))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return lab.Recipe(**values)


# -- data ---------------------------------------------------------------------------------------
TEST_IMAGES = 497  # of 1,797: a fixed, seeded split leaves 1,300 for training


def digits_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's digits as uint8 arrays: train/test images uint8[N, 8, 8] (0..16 ink levels
    scaled to 0..255) and labels int64[N], split by a seeded permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    test, train = order[:TEST_IMAGES], order[TEST_IMAGES:]
    return {
        "train_images": images[train],
        "train_labels": labels[train],
        "test_images": images[test],
        "test_labels": labels[test],
        "class_names": np.array([str(d) for d in range(10)]),
    }


def digits_task(image_size: int, val_per_class: int = 30) -> dict:
    """The transfer task and its source: the demo's digits split at `image_size` px.

    Returns {"source": (images, labels) of training digits 0-4, "pool": (images, labels) of
    training digits 5-9 minus the validation part, "val": ..., "test": ... (test digits 5-9)};
    labels of 5-9 are 0-4."""
    d = digits_arrays()
    x = lab.prepare(d["train_images"], image_size)
    y = d["train_labels"]
    t = lab.prepare(d["test_images"], image_size)
    ty = d["test_labels"]
    upper = np.flatnonzero(y >= 5)
    val = np.concatenate([upper[y[upper] == c][:val_per_class] for c in range(5, 10)])
    pool = np.setdiff1d(upper, val)
    low, test = np.flatnonzero(y < 5), np.flatnonzero(ty >= 5)
    return {
        "source": (x[low], y[low]),
        "pool": (x[pool], y[pool] - 5),
        "val": (x[val], y[val] - 5),
        "test": (t[test], ty[test] - 5),
    }


def few_labels(labels, shots: int, seed: int) -> np.ndarray:
    """Indices of `shots` images per class drawn with `seed` (shots 0: every index)."""
    labels = np.asarray(labels)
    if shots <= 0:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 2])
    picks = [
        rng.choice(np.flatnonzero(labels == c), shots, replace=False) for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picks))


def synthetic_images(family: str, categories: int, per_category: int, image_size: int):
    """(images float32[C * m, S, S, 3], labels int[C * m], C) of a formula-driven family:
    the first m images of each of C categories, rendered at 32 px, made gray (the digits are)
    and resized to S px. Families with one image per category render C images."""
    from synth_jax.fractals import FractalDataset, data_config
    from synth_jax.fractals.preview import render_images

    ds = FractalDataset(data_config(family, num_classes=categories, image_size=32))
    per = min(per_category, ds.images_per_category or 1)
    if ds.images_per_category:
        ipc = ds.images_per_category
        idx = np.array([c * ipc + j for c in range(categories) for j in range(per)])
    else:
        idx = np.arange(min(ds.num_images, categories * per))
    images, labels, _ = render_images(ds, idx, batch=250)
    gray = images.astype(np.float32).mean(axis=-1) / 255.0
    return lab.prepare(gray, image_size), np.asarray(labels, np.int64), ds.num_classes


def unlabelled_pool(task: dict, shots, seeds):
    """(images, labels) of the digits 5-9 pool minus every image that any (k, seed) of the run
    labels: the positive control pre-trains on these, so it never sees a fine-tuning image."""
    images, labels = task["pool"]
    if any(int(k) <= 0 for k in shots):
        raise UsageError(
            f"config key 'sources': {CONTROL_SOURCE} needs every k in 'shots' above 0 (with all "
            "labels used, no image of the pool is left for it)"
        )
    used = [few_labels(labels, int(k), int(s)) for k in shots for s in seeds]
    keep = np.setdiff1d(np.arange(len(labels)), np.concatenate(used))
    return images[keep], labels[keep]


# -- pre-training -------------------------------------------------------------------------------
def pretrain(config, task: dict, source: str, steps: int, workdir: str, out=None) -> lab.Net:
    """The pre-trained model of `source` after `steps` steps (seed 0), cached in
    DIR/pretrain/<source>_<steps>.pkl; returns it with its CPU seconds in `net.cpu_s`."""
    path = os.path.join(workdir, "pretrain", f"{source}_{steps}.pkl")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    out = out or sys.stdout
    c0 = time.process_time()
    if source == REAL_SOURCE:
        images, labels = task["source"]
        classes = 5
    elif source == CONTROL_SOURCE:
        images, labels = unlabelled_pool(task, config.shots, config.seeds)
        classes = 5
    else:
        p = config.pretrain
        images, labels, classes = synthetic_images(
            source, p.categories, p.per_category, config.recipe.image_size
        )
    recipe = dataclasses.replace(
        recipe_of(config.recipe), steps=steps, hflip=source not in REAL_SOURCES, shift=2
    )
    net = lab.train(recipe, images, labels, classes, seed=0)
    net.params, net.model_state = _numpy(net.params), _numpy(net.model_state)
    net.cpu_s = time.process_time() - c0
    net.train_error = lab.error(net, images, labels)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(net, f)
    print(
        f"protocol: pre-trained {source} ({len(labels)} images, {classes} classes) for {steps} "
        f"steps in {net.cpu_s:.0f} CPU s; training error {net.train_error:.3f}",
        file=out,
        flush=True,
    )
    return net


# -- runs -----------------------------------------------------------------------------------------
def downstream_run(recipe, task, mode: str, shots: int, seed: int, init=None) -> dict:
    """One fine-tuning (or linear probe) of the digits 5-9 task: {val_error, test_error, cpu_s}."""
    c0 = time.process_time()
    images, labels = task["pool"]
    pick = few_labels(labels, shots, seed)
    x, y = images[pick], labels[pick]
    if mode == "finetune":
        net = lab.train(recipe, x, y, 5, seed, init=init)
        errs = [lab.error(net, *task[part]) for part in ("val", "test")]
    elif mode == "probe":
        net = init if init is not None else _random_net(recipe, seed)
        errs = [lab.probe_error(net, x, y, *task[part]) for part in ("val", "test")]
    else:
        raise UsageError(f"config key 'modes': {mode!r} is not a mode (finetune, probe)")
    return {"val_error": errs[0], "test_error": errs[1], "cpu_s": time.process_time() - c0}


def _random_net(recipe, seed: int) -> lab.Net:
    """A randomly initialised model (the from-scratch linear probe: random features)."""
    params, model_state = lab.init_arrays(recipe, 5, seed)
    return lab.Net(recipe, 5, params, model_state)


def cell_id(source: str, steps: int, mode: str, shots: int) -> str:
    return f"{mode}_k{shots or 'all'}_{source}" + (f"_{steps}" if source != "scratch" else "")


def cells(config) -> list[dict]:
    """Every cell of the grid: scratch plus each source x length, for each mode and k."""
    out = []
    for mode in config.modes:
        for shots in config.shots:
            out.append(dict(source="scratch", steps=0, mode=mode, shots=int(shots)))
            for source in config.sources:
                for steps in config.pretrain_steps:
                    out.append(dict(source=source, steps=int(steps), mode=mode, shots=int(shots)))
    for cell in out:
        cell["cell"] = cell_id(cell["source"], cell["steps"], cell["mode"], cell["shots"])
    return out


def read_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path: str, row: dict) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in FIELDS})


def _numpy(tree):
    import jax

    return jax.tree.map(np.asarray, tree)


def run(config, workdir: str, out=None) -> dict:
    """Runs every unfinished (cell, seed), then writes DIR/search.json and DIR/search.md."""
    out = out or sys.stdout
    os.makedirs(workdir, exist_ok=True)
    recipe = recipe_of(config.recipe)
    task = digits_task(recipe.image_size)
    path = os.path.join(workdir, "results.csv")
    done = {(r["cell"], int(r["seed"])) for r in read_rows(path)}
    grid = cells(config)
    todo = [(c, s) for c in grid for s in config.seeds if (c["cell"], int(s)) not in done]
    print(
        f"protocol: {len(grid)} cells x {len(config.seeds)} seeds; {len(todo)} runs to do; "
        f"workdir {workdir}",
        file=out,
        flush=True,
    )
    for i, (cell, seed) in enumerate(todo):
        init = None
        if cell["source"] != "scratch":
            init = pretrain(config, task, cell["source"], cell["steps"], workdir, out)
        row = downstream_run(recipe, task, cell["mode"], cell["shots"], int(seed), init)
        row.update(cell, pretrain_steps=cell["steps"], seed=int(seed))
        append_row(path, row)
        print(
            f"protocol: [{i + 1}/{len(todo)}] {cell['cell']} seed {seed}: test error "
            f"{row['test_error']:.4f} ({row['cpu_s']:.0f} CPU s)",
            file=out,
            flush=True,
        )
    table = analyse(read_rows(path), workdir)
    files.write_json(os.path.join(workdir, "search.json"), {"cells": table})
    files.write_text(os.path.join(workdir, "search.md"), markdown(table))
    return {"cells": table, "workdir": workdir}


def analyse(rows: list[dict], workdir: str = "") -> list[dict]:
    """Per cell: mean test error [95% t-interval], the paired difference from scratch (same
    mode and k) on test and on validation, and CPU seconds (its runs, plus its pre-training)."""
    by_cell: dict[str, dict] = {}
    for r in rows:
        cell = by_cell.setdefault(r["cell"], {k: r[k] for k in ("cell", "source", "mode")})
        cell.update(shots=int(r["shots"]), steps=int(r["pretrain_steps"]))
        for key in ("test_error", "val_error", "cpu_s"):
            cell.setdefault(key, {})[int(r["seed"])] = float(r[key])
    table = []
    for cell in by_cell.values():
        scratch = by_cell.get(cell_id("scratch", 0, cell["mode"], cell["shots"]))
        entry = {k: cell[k] for k in ("cell", "source", "steps", "mode", "shots")}
        entry["test"] = mean_interval(list(cell["test_error"].values()))
        entry["cpu_s"] = float(sum(cell["cpu_s"].values()))
        entry["pretrain_cpu_s"] = _pretrain_cpu(workdir, cell["source"], cell["steps"])
        if scratch is not None and cell["source"] != "scratch":
            for part in ("test", "val"):
                entry[f"vs_scratch_{part}"] = paired_difference(
                    cell[f"{part}_error"], scratch[f"{part}_error"]
                )
        table.append(entry)
    return table


def _pretrain_cpu(workdir: str, source: str, steps: int):
    path = os.path.join(workdir, "pretrain", f"{source}_{steps}.pkl")
    if source == "scratch" or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return float(getattr(pickle.load(f), "cpu_s", 0.0))


def markdown(table: list[dict]) -> str:
    """The table as Markdown: one line per cell."""
    lines = [
        "| mode | k / class | source | pre-training steps | test error (95% CI) | "
        "minus scratch, test (paired 95% CI) | minus scratch, validation | CPU s (runs + "
        "pre-training) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in sorted(table, key=_order):
        t = e["test"]
        ci = f" [{t['ci'][0]:.3f}, {t['ci'][1]:.3f}]" if t["ci"] else ""
        diffs = []
        for part in ("test", "val"):
            d = e.get(f"vs_scratch_{part}")
            diffs.append(_diff_text(d) if d else "-")
        pre = f" + {e['pretrain_cpu_s']:.0f}" if e["pretrain_cpu_s"] else ""
        lines.append(
            f"| {e['mode']} | {e['shots'] or 'all'} | {e['source']} | {e['steps'] or '-'} | "
            f"{t['mean']:.3f}{ci} | {diffs[0]} | {diffs[1]} | {e['cpu_s']:.0f}{pre} |"
        )
    return "\n".join(lines) + "\n"


def _order(e: dict):
    return (e["mode"], e["shots"] or 10**6, e["source"] != "scratch", e["source"], e["steps"])


def _diff_text(d: dict) -> str:
    if d["ci"] is None:
        return f"{d['difference']:+.3f} (no interval)"
    mark = {"lower": " **lower**", "higher": " higher"}.get(d["verdict"], "")
    return f"{d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]{mark}"


def main(argv: list[str]) -> int:
    config, rest = config_from_argv(argv)
    parser = ArgumentParser(prog="synth-jax protocol-search", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", required=True, type=files.folder_arg, help="results (resumable)"
    )
    args = parser.parse_args(rest)
    for key in ("recipe", "pretrain", "sources", "pretrain_steps", "modes", "shots", "seeds"):
        if key not in config:
            raise UsageError(
                f"config key {key!r} is missing (see configs/experiments/protocol_search.py)"
            )
    result = run(config, os.path.abspath(args.workdir))
    print(markdown(result["cells"]))
    print(f"protocol: table in {os.path.join(result['workdir'], 'search.md')}")
    return 0
