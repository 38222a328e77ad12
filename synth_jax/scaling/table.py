"""Reading the results table (one row per fine-tuning run) into curves to fit.

The table is the CSV that every `synth-jax finetune` run appends to (columns `run_id,
pretrain_family, pretrain_classes, pretrain_images, ..., seed, ...`). Rows are grouped by the
`--group` columns; each group becomes one curve. Rows trained from scratch (`pretrain_family ==
scratch`; in a table without that column, an empty or zero size) cannot enter a law in the
size, so they are set aside, noted, and kept per seed as the baseline to compare against.

A row pre-trained on something (`pretrain_family` names a source) whose `pretrain_images` is
empty was fine-tuned from a pre-training that had not finished (it had written no summary): it
is an error naming the run, never a scratch run or a silently dropped point.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os

import numpy as np

from synth_jax.errors import UsageError

SCRATCH = "scratch"


@dataclasses.dataclass
class Group:
    """One group's points: key {column: value}; x float64[N, K]; y float64[N]; rows (line
    numbers); seeds (str[N], the seed column's value per point, or None without that column);
    strata int[N] (labels for within-stratum bootstrap, or None); scratch {seed: [errors]} of
    the set-aside scratch rows; notes (what was set aside and why)."""

    key: dict[str, str]
    x: np.ndarray
    y: np.ndarray
    rows: list[int]
    seeds: np.ndarray | None = None
    strata: np.ndarray | None = None
    scratch: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.key.items()) or "all rows"

    @property
    def scratch_error(self) -> float | None:
        """Mean error of the scratch rows, or None."""
        values = [v for runs in self.scratch.values() for v in runs]
        return float(np.mean(values)) if values else None


_EXTRA = "\0extra"  # where DictReader puts the cells of a row longer than the header


def _number(text: str, path: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(
            f"{path}: line {line}: column {column!r} is {text!r}, not a number"
        ) from None
    return value


def _run_name(row: dict) -> str:
    return (row.get("run_id") or row.get("workdir") or "").strip() or "(no run_id)"


def _is_scratch(row: dict, first: str, path: str, line: int, x_column: str) -> bool:
    family = (row.get("pretrain_family") or "").strip()
    if family == SCRATCH:
        return True
    if family:
        if "pretrain_images" in row and not (row.get("pretrain_images") or "").strip():
            raise UsageError(
                f"{path}: line {line}: run {_run_name(row)} was fine-tuned from a "
                f"{family} pre-training that had not finished (pretrain_images is empty; "
                f"init_from {row.get('init_from') or '?'}): finish that pre-training and "
                "fine-tune again, or delete the row"
            )
        return False
    # a table without pretrain_family: an empty or zero size is a run without pre-training
    return not first or _number(first, path, line, x_column) == 0


Y_SCALES = {"rate": 1.0, "percent": 100.0, "raw": None}


def read_curves(
    path: str,
    x_columns: list[str],
    y_column: str,
    group_columns: list[str] = (),
    strata_columns: list[str] = (),
    seed_column: str | None = "seed",
    y_scale: str = "rate",
) -> list[Group]:
    """Reads path and returns one Group per group (in order of first appearance).

    seed_column: the column naming each run's seed (for seed resampling and paired comparisons
    with scratch); None, or a table without it, leaves seeds unknown. y_scale: rate (errors in
    [0, 1]), percent (errors in [0, 100], divided by 100 here) or raw (any value >= 0, e.g. a
    loss, fitted as it is).

    Errors (UsageError naming the file, line and column or run): a missing file or column, a
    column name that appears twice, a file that is not UTF-8, a row with more or fewer cells
    than the header, a non-numeric or NaN x or y, a negative x or y, an error above 1 (above 100
    in percent), a pre-trained row whose pre-training had not finished, a group with no usable
    rows. Scratch rows are set aside with a note.
    """
    if y_scale not in Y_SCALES:
        raise UsageError(f"y scale {y_scale!r}: one of {', '.join(Y_SCALES)}")
    header, rows = _read_table(path)
    needed = [*x_columns, y_column, *group_columns, *strata_columns]
    missing = [c for c in needed if c not in header]
    if missing:
        raise UsageError(
            f"{path}: no column(s) {', '.join(map(repr, missing))}; the table has: "
            f"{', '.join(header) or '(no header)'}"
        )
    if not rows:
        raise UsageError(f"{path}: the table has no rows")
    seed_column = seed_column if seed_column in header else None
    groups: dict[tuple, dict] = {}
    for line, row in enumerate(rows, start=2):
        key = tuple(row[c] for c in group_columns)
        group = groups.setdefault(
            key, {"x": [], "y": [], "rows": [], "strata": [], "seeds": [], "scratch": {}}
        )
        y = _error(row, path, line, y_column, y_scale)
        seed = (row.get(seed_column) or "").strip() if seed_column else ""
        first = (row[x_columns[0]] or "").strip()
        if _is_scratch(row, first, path, line, x_columns[0]):
            group["scratch"].setdefault(seed or f"line {line}", []).append(y)
            continue
        group["x"].append([_size(row, path, line, column) for column in x_columns])
        group["y"].append(y)
        group["rows"].append(line)
        group["seeds"].append(seed)
        group["strata"].append(tuple(row[c] for c in strata_columns))
    return [
        _curve(
            path,
            dict(zip(group_columns, key)),
            group,
            x_columns[0],
            seed_column,
            bool(strata_columns),
        )
        for key, group in groups.items()
    ]


def _read_table(path: str) -> tuple[list[str], list[dict]]:
    """(header, rows) of a UTF-8 CSV whose rows all have as many cells as the header and whose
    column names are all different."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such results file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is no name
            reader = csv.DictReader(f, restkey=_EXTRA)
            header = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r}); "
            f"save the table as UTF-8 CSV"
        ) from None
    for name in header:
        where = [i + 1 for i, h in enumerate(header) if h == name]
        if name.strip() and len(where) > 1:
            raise UsageError(
                f"{path}: column {name!r} appears {len(where)} times in the header (columns "
                f"{', '.join(map(str, where))}); rename or remove all but one"
            )
    for line, row in enumerate(rows, start=2):
        if _EXTRA in row or None in row.values():
            cells = len(header) + len(row.get(_EXTRA, [])) - list(row.values()).count(None)
            raise UsageError(
                f"{path}: line {line} has {cells} cells but the header has {len(header)}; "
                f"mend or remove that line"
            )
    return header, rows


def _error(row: dict, path: str, line: int, column: str, y_scale: str) -> float:
    """The row's error, checked (finite, >= 0, within the scale) and divided by the scale."""
    text = (row[column] or "").strip()
    if not text:
        raise UsageError(f"{path}: line {line}: column {column!r} is empty")
    y = _number(text, path, line, column)
    if not math.isfinite(y) or y < 0:
        raise UsageError(
            f"{path}: line {line}: column {column!r} is {text!r}; an error must be a "
            f"finite number >= 0"
        )
    scale = Y_SCALES[y_scale]
    if scale is not None and y > scale:
        hint = (
            "if the column is in percent, pass --y-scale percent; if it is a loss, --y-scale raw"
            if y_scale == "rate"
            else "an error in percent is at most 100"
        )
        raise UsageError(
            f"{path}: line {line}: column {column!r} is {text!r}, above {scale:g}: {hint}"
        )
    return y / (scale or 1.0)


def _size(row: dict, path: str, line: int, column: str) -> float:
    text = (row[column] or "").strip()
    if not text:
        raise UsageError(f"{path}: line {line}: column {column!r} is empty")
    value = _number(text, path, line, column)
    if not math.isfinite(value) or value <= 0:
        raise UsageError(
            f"{path}: line {line}: column {column!r} is {text!r}; a scaling law needs "
            "finite sizes > 0"
        )
    return value


def _curve(path: str, label: dict, group: dict, x_column: str, seed_column, stratified) -> Group:
    """One Group from the rows collected for it, with notes on what was set aside."""
    notes = []
    scratch_runs = sum(len(v) for v in group["scratch"].values())
    if scratch_runs:
        notes.append(
            f"{scratch_runs} row(s) with no pre-training data (pretrain_family scratch) set "
            "aside: a law in the size cannot use n = 0; they are the baseline of the "
            "comparison"
        )
    if not group["x"]:
        raise UsageError(
            f"{path}: group {label or '(all rows)'} has no rows with {x_column} > 0 to fit"
        )
    strata = None
    if stratified:
        _, strata = np.unique(
            np.array(group["strata"], dtype=object).astype(str), axis=0, return_inverse=True
        )
        strata = strata.reshape(-1)
    seeds = np.array(group["seeds"], dtype=str) if seed_column else None
    if seeds is not None and np.any(seeds == ""):
        seeds = None
        notes.append(f"some rows have no {seed_column!r}: seeds unknown for this group")
    return Group(
        key=label,
        x=np.array(group["x"], dtype=np.float64),
        y=np.array(group["y"], dtype=np.float64),
        rows=group["rows"],
        seeds=seeds,
        strata=strata,
        scratch=group["scratch"],
        notes=notes,
    )
