"""The results table joined with the sweep's grid: which row belongs to which cell.

A row belongs to the cell named in its run folder (`finetune/<cell_id>[/seed_<s>]`); rows of
other sweeps that share the table are ignored. A pre-trained cell's row whose `pretrain_images`
is empty was fine-tuned from a pre-training that had not finished: an error naming the run,
never a scratch run or a silently dropped point.
"""

from __future__ import annotations

import csv
import math
import os

from synth_jax.errors import UsageError
from synth_jax.experiments import grid

RESULTS = "results.csv"


def load_rows(workdir: str, cells: list[grid.Cell]) -> list[dict]:
    """The results rows of this sweep's cells (the latest row per run folder), each with the
    cell's axis values as extra columns, `cell_id` and `scratch` True/False."""
    path = os.path.join(workdir, RESULTS)
    if not os.path.exists(path):
        return []
    by_id = {cell.cell_id: cell for cell in cells}
    rows: dict[str, dict] = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            cell_id = grid.cell_id_of_run(row.get("workdir") or "")
            if cell_id not in by_id:
                continue
            cell = by_id[cell_id]
            if not cell.scratch and not (row.get("pretrain_images") or "").strip():
                raise UsageError(
                    f"{path}: line {line}: run {row.get('run_id') or row.get('workdir')} of cell "
                    f"{cell_id} was fine-tuned from pre-training {cell.pretrain_id} before it "
                    "finished (pretrain_images is empty): delete the row and the run folder "
                    f"{row.get('workdir')}, then run the sweep again"
                )
            # the latest row per run folder (one per fine-tuning seed)
            rows[row["workdir"].rstrip("/")] = {
                **row,
                **cell.values,
                "cell_id": cell_id,
                "scratch": cell.scratch,
            }
    order = {c.cell_id: i for i, c in enumerate(cells)}
    return sorted(rows.values(), key=lambda r: (order[r["cell_id"]], r["workdir"]))


def number(value) -> float:
    """A table cell as a float; NaN when empty or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def finite(value) -> bool:
    return math.isfinite(number(value))


def group_key(row: dict, keys) -> tuple:
    return tuple(str(row.get(k, "")) for k in keys)


def baseline_keys(keys) -> list[str]:
    """The group keys a scratch row shares with the groups it is the baseline of: a scratch row
    has no pre-training, so it is the baseline of every group with its fine-tuning setting,
    whatever the pre-training keys of that group say."""
    return [k for k in keys if not str(k).startswith("pretrain")]


def seed_of(row: dict) -> str:
    """The run's seed (pairs runs across settings), or its run folder when the row has none."""
    return (row.get("seed") or "").strip() or row.get("workdir", "")
