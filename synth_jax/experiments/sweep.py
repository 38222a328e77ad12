"""`synth-jax sweep --config configs/experiments/NAME.py --workdir DIR [--shard i/n]`: run a grid.

Each cell pre-trains (or reuses a finished or half-finished pre-training), fine-tunes from it, and
the fine-tuning appends its row to `DIR/results.csv`. The layout of DIR:

    cells.json                 every cell of the grid: id, axis values, pre-training id
    pretrain/<pretrain_id>/    one pre-training workdir, shared by all cells that start from it
    finetune/<cell_id>/        one fine-tuning workdir per cell
    results.csv                one row per finished cell (written by the fine-tuning)
    report.md, report.json, figures/*.png

Re-running the same command skips finished cells (a row of results.csv names the cell's workdir)
and resumes a half-finished one from its checkpoints: both trainers resume from their workdir.
`--shard i/n` runs the i-th of n disjoint parts of the grid (cells that share a pre-training stay
together), so n hosts can share one DIR on a shared filesystem. The report is written by the run
that finds every cell finished, or on demand with `--report-only`.
"""

from __future__ import annotations

import copy
import csv
import os
import sys
import time
from collections.abc import Callable

import ml_collections

from synth_jax import files
from synth_jax.config import config_from_argv, config_to_dict, require_keys
from synth_jax.data import tfds_source
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.experiments import grid, report
from synth_jax.scaling.config import DEFAULTS as LAW_DEFAULTS
from synth_jax.train import pretrain
from synth_jax.transfer import finetune

# Top-level keys of a sweep config; `pretrain` and `finetune` are checked by their own trainers.
SWEEP_KEYS = {
    "name": None,
    "pretrain": None,
    "finetune": None,
    "axes": None,
    "scratch": None,
    "law": dict.fromkeys(LAW_DEFAULTS),
    "report": {"families": None, "samples": None, "image_size": None},
}

RESULTS = "results.csv"


def validate(config: ml_collections.ConfigDict) -> list[grid.Cell]:
    """Checks the sweep config's keys and expands it; returns the cells."""
    require_keys(config, SWEEP_KEYS)
    for key in ("init_from", "results_csv"):
        if key not in config.finetune:
            raise UsageError(
                f"config key 'finetune.{key}' is missing: the base fine-tuning config must be a "
                "synth-jax finetune config (see configs/finetune/)"
            )
    cells = grid.expand(config)
    if not cells:
        raise UsageError("the sweep has no cells: add values to 'axes' (or set scratch=True)")
    return cells


def check_cells(cells: list[grid.Cell]) -> None:
    """Runs the trainers' own config checks on every cell before anything trains, so a bad
    value in the third cell stops the sweep now, not after the first two have run."""
    checked: set[str] = set()
    for cell in cells:
        stage = "pretrain"
        try:
            if cell.pretrain_id and cell.pretrain_id not in checked:
                checked.add(cell.pretrain_id)
                pretrain.check_config(cell.pretrain)
            stage = "finetune"
            config = copy.deepcopy(cell.finetune)
            with config.ignore_type():
                config.init_from = ""  # the pre-training does not exist yet
            finetune.check_config(config)
        except UsageError as e:
            raise UsageError(f"cell {cell.cell_id}, {stage} config: {e}") from None


def check_datasets(cells: list[grid.Cell]) -> None:
    """Opens every fine-tuning dataset split the cells read (metadata only), so a missing or
    unprepared dataset stops the sweep before its first pre-training, not after it."""
    opened: set[tuple] = set()
    for cell in cells:
        data = cell.finetune.data
        if data.get("source", "tfds") != "tfds":
            continue
        for key in ("train_split", "eval_split"):
            spec = (data.name, data[key], data.get("data_dir") or None)
            if spec in opened:
                continue
            opened.add(spec)
            try:
                tfds_source.open_split(*spec)
            except UsageError as e:
                raise UsageError(f"cell {cell.cell_id}, finetune.data.{key}: {e}") from None


def finished_cells(workdir: str, cells: list[grid.Cell]) -> set[str]:
    """Ids of the cells with all their rows in DIR/results.csv (one per fine-tuning seed).

    A row belongs to the cell named in its workdir (`finetune/<cell_id>[/seed_<s>]`)."""
    path = os.path.join(workdir, RESULTS)
    if not os.path.exists(path):
        return set()
    rows: dict[str, set[str]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cell_id = grid.cell_id_of_run(row.get("workdir") or "")
            if cell_id:
                rows.setdefault(cell_id, set()).add(row.get("workdir", "").rstrip("/"))
    return {
        cell.cell_id
        for cell in cells
        if len(rows.get(cell.cell_id, ())) >= grid.runs_per_cell(cell)
    }


def cell_finetune_config(cell: grid.Cell, workdir: str) -> ml_collections.ConfigDict:
    """The cell's fine-tuning config with its run paths: where to start from, where to append."""
    config = copy.deepcopy(cell.finetune)
    pretrain_dir, _ = grid.cell_dirs(workdir, cell)
    with config.ignore_type():
        config.init_from = os.path.abspath(pretrain_dir) if pretrain_dir else ""
        config.results_csv = os.path.abspath(os.path.join(workdir, RESULTS))
    return config


def write_plan(config, cells: list[grid.Cell], workdir: str):
    """DIR/cells.json and DIR/sweep_config.json: the same content from every shard."""
    files.write_json(
        os.path.join(workdir, "cells.json"), {"cells": [cell.to_json() for cell in cells]}
    )
    files.write_json(os.path.join(workdir, "sweep_config.json"), config_to_dict(config))


def run(
    config: ml_collections.ConfigDict,
    workdir: str,
    shard: tuple[int, int] = (0, 1),
    pretrain_fn: Callable | None = None,
    finetune_fn: Callable | None = None,
    report: bool = True,
    out=None,
) -> dict:
    """Runs this shard's unfinished cells, then writes the report if every cell is finished.

    pretrain_fn(config, workdir) and finetune_fn(config, workdir) default to
    synth_jax.train.pretrain.run and synth_jax.transfer.finetune.run (tests inject others).
    Returns {"cells": all, "ran": ids run now, "skipped": ids already finished, "report": path}.
    """
    out = out or sys.stdout
    cells = validate(config)
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    write_plan(config, cells, workdir)
    if pretrain_fn is None and finetune_fn is None:
        check_cells(cells)  # the real trainers' checks; injected runners check their own
        check_datasets(cells)
    if pretrain_fn is None:
        pretrain_fn = pretrain.run
    if finetune_fn is None:
        finetune_fn = finetune.run

    mine = grid.shard_cells(cells, shard)
    done = finished_cells(workdir, cells)
    todo = [cell for cell in mine if cell.cell_id not in done]
    i, n = shard
    print(
        f"sweep {config.get('name', '')}: {len(cells)} cells"
        + (f", shard {i}/{n} has {len(mine)}" if n > 1 else "")
        + f"; {len(mine) - len(todo)} finished, {len(todo)} to run; workdir {workdir}",
        file=out,
        flush=True,
    )
    ran, preempted, t_sweep = [], False, time.perf_counter()
    for k, cell in enumerate(todo):
        label = f"[{k + 1}/{len(todo)}] {cell.cell_id}"
        if not _run_cell(cell, workdir, label, pretrain_fn, finetune_fn, out):
            preempted = True
            break
        ran.append(cell.cell_id)

    result = {
        "cells": [cell.cell_id for cell in cells],
        "ran": ran,
        "skipped": [cell.cell_id for cell in mine if cell.cell_id in done],
        "seconds": time.perf_counter() - t_sweep,
        "report": None,
        "preempted": preempted,
    }
    finished = finished_cells(workdir, cells)
    missing = [cell.cell_id for cell in cells if cell.cell_id not in finished]
    if preempted:
        pass
    elif missing:
        print(
            f"sweep: {len(missing)} cells of other shards are not finished; the last shard to "
            "finish writes the report (or run again with --report-only)",
            file=out,
            flush=True,
        )
    elif report:
        result["report"] = write_report(config, cells, workdir, out)
    return result


def _preempted(summary, label: str, out) -> bool:
    if isinstance(summary, dict) and summary.get("status") == "preempted":
        print(f"{label}: preempted; run the same command again to resume", file=out)
        return True
    return False


def _run_cell(cell, workdir: str, label: str, pretrain_fn, finetune_fn, out) -> bool:
    """Pre-trains the cell's source unless finished (shared by cells), then fine-tunes the cell;
    False when either was preempted (nothing more runs), True when the cell's row is in."""
    pretrain_dir, finetune_dir = grid.cell_dirs(workdir, cell)
    t0 = time.perf_counter()
    if pretrain_dir is not None:
        if os.path.exists(os.path.join(pretrain_dir, "summary.json")):
            print(f"{label}: reusing pre-training {cell.pretrain_id}", file=out, flush=True)
        else:
            verb = "resuming" if os.path.isdir(pretrain_dir) else "starting"
            print(f"{label}: {verb} pre-training {cell.pretrain_id}", file=out, flush=True)
            if _preempted(pretrain_fn(copy.deepcopy(cell.pretrain), pretrain_dir), label, out):
                return False
    verb = "resuming" if os.path.isdir(finetune_dir) else "starting"
    source = "from scratch" if cell.scratch else f"from {cell.pretrain_id}"
    print(f"{label}: {verb} fine-tuning {source}", file=out, flush=True)
    summary = finetune_fn(cell_finetune_config(cell, workdir), finetune_dir)
    if _preempted(summary, label, out):
        return False
    if cell.cell_id not in finished_cells(workdir, [cell]):
        raise RuntimeError(
            f"fine-tuning of cell {cell.cell_id} returned without appending its row to "
            f"{os.path.join(workdir, RESULTS)}"
        )
    seconds = time.perf_counter() - t0
    print(f"{label}: done in {seconds:.0f}s{_top1(summary)}", file=out, flush=True)
    return True


def _top1(summary) -> str:
    """' top-1 0.9123' from a fine-tuning summary (its mean over seeds, or its row), or ''."""
    if not isinstance(summary, dict):
        return ""
    value = summary.get("top1_mean")
    if value is None and isinstance(summary.get("row"), dict):
        value = summary["row"].get("top1")
    if value is None:
        value = summary.get("top1")
    try:
        return f" top-1 {float(value):.4f}"
    except (TypeError, ValueError):
        return ""


def write_report(config, cells, workdir, out=None) -> str:
    return report.write(config, cells, workdir, out=out or sys.stdout)


def main(argv: list[str]) -> int:
    config, rest = config_from_argv(argv)
    parser = ArgumentParser(
        prog="synth-jax sweep",
        description="Run a grid of pre-training and fine-tuning cells, then fit and report.",
    )
    parser.add_argument(
        "--workdir", required=True, type=files.workdir_arg, help="the sweep's directory (resumable)"
    )
    parser.add_argument("--shard", default=None, help="i/n: run the i-th of n disjoint parts")
    parser.add_argument(
        "--report-only", action="store_true", help="write the report from the finished cells"
    )
    parser.add_argument(
        "--list", action="store_true", help="list the cells and whether they are finished"
    )
    args = parser.parse_args(rest)
    shard = grid.parse_shard(args.shard)
    if args.list:
        cells = validate(config)
        done = finished_cells(args.workdir, cells)
        mine = {c.cell_id for c in grid.shard_cells(cells, shard)}
        for cell in cells:
            if cell.cell_id in mine:
                state = "finished" if cell.cell_id in done else "to run"
                print(f"{cell.cell_id}\t{state}\t{cell.values}")
        return 0
    if args.report_only:
        cells = validate(config)
        if not os.path.isdir(args.workdir):
            raise UsageError(f"--workdir {args.workdir}: no such directory; run the sweep first")
        print(write_report(config, cells, os.path.abspath(args.workdir)))
        return 0
    result = run(config, args.workdir, shard=shard)
    if result["report"]:
        print(f"sweep: report written to {result['report']}")
    return 0
