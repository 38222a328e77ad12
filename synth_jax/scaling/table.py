"""Reading the results table (one row per fine-tuning run) into curves to fit.

The table is the CSV that every `synth-jax finetune` run appends to (columns `run_id,
pretrain_family, pretrain_classes, pretrain_images, ...`). Rows are grouped by the `--group`
columns; each group becomes one curve. Rows trained from scratch (`pretrain_family == scratch`,
or an empty or zero size) cannot enter a law in the size, so they are set aside, noted, and their
mean error is kept as context (the from-scratch baseline).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os

import numpy as np

from synth_jax.errors import UsageError


@dataclasses.dataclass
class Group:
    """One group's points: key {column: value}; x float64[N, K]; y float64[N]; strata int[N]
    (labels for within-stratum bootstrap, or None); scratch_error (mean y of set-aside scratch
    rows, or None); notes (what was set aside and why)."""

    key: dict[str, str]
    x: np.ndarray
    y: np.ndarray
    rows: list[int]
    strata: np.ndarray | None = None
    scratch_error: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.key.items()) or "all rows"


_EXTRA = "\0extra"  # where DictReader puts the cells of a row longer than the header


def _number(text: str, path: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(
            f"{path}: line {line}: column {column!r} is {text!r}, not a number"
        ) from None
    return value


def read_curves(
    path: str,
    x_columns: list[str],
    y_column: str,
    group_columns: list[str] = (),
    strata_columns: list[str] = (),
) -> list[Group]:
    """Reads path and returns one Curve per group (in order of first appearance).

    Errors (UsageError naming the file, line and column): a missing file or column, a file that
    is not UTF-8, a row with more or fewer cells than the header, a non-numeric or NaN x or y, a
    negative x or y, a group with no usable rows. Rows with an empty or zero first x
    (scratch runs) are set aside with a note.
    """
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such results file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, restkey=_EXTRA)
            header = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r}); "
            f"save the table as UTF-8 CSV"
        ) from None
    for line, row in enumerate(rows, start=2):
        if _EXTRA in row or None in row.values():
            cells = len(header) + len(row.get(_EXTRA, [])) - list(row.values()).count(None)
            raise UsageError(
                f"{path}: line {line} has {cells} cells but the header has {len(header)}; "
                f"mend or remove that line"
            )
    needed = [*x_columns, y_column, *group_columns, *strata_columns]
    missing = [c for c in needed if c not in header]
    if missing:
        raise UsageError(
            f"{path}: no column(s) {', '.join(map(repr, missing))}; the table has: "
            f"{', '.join(header) or '(no header)'}"
        )
    if not rows:
        raise UsageError(f"{path}: the table has no rows")
    groups: dict[tuple, dict] = {}
    for line, row in enumerate(rows, start=2):
        key = tuple(row[c] for c in group_columns)
        group = groups.setdefault(key, {"x": [], "y": [], "rows": [], "strata": [], "scratch": []})
        y_text = (row[y_column] or "").strip()
        if not y_text:
            raise UsageError(f"{path}: line {line}: column {y_column!r} is empty")
        y = _number(y_text, path, line, y_column)
        if not math.isfinite(y) or y < 0:
            raise UsageError(
                f"{path}: line {line}: column {y_column!r} is {y_text!r}; an error must be a "
                f"finite number >= 0"
            )
        first = (row[x_columns[0]] or "").strip()
        scratch = row.get("pretrain_family", "").strip() == "scratch"
        if scratch or not first or (first and _number(first, path, line, x_columns[0]) == 0):
            group["scratch"].append(y)
            continue
        xs = []
        for column in x_columns:
            text = (row[column] or "").strip()
            if not text:
                raise UsageError(f"{path}: line {line}: column {column!r} is empty")
            value = _number(text, path, line, column)
            if not math.isfinite(value) or value <= 0:
                raise UsageError(
                    f"{path}: line {line}: column {column!r} is {text!r}; a scaling law needs "
                    "finite sizes > 0"
                )
            xs.append(value)
        group["x"].append(xs)
        group["y"].append(y)
        group["rows"].append(line)
        group["strata"].append(tuple(row[c] for c in strata_columns))
    curves = []
    for key, group in groups.items():
        label = dict(zip(group_columns, key))
        notes = []
        if group["scratch"]:
            notes.append(
                f"{len(group['scratch'])} row(s) with no pre-training data ({x_columns[0]} empty "
                "or 0, or pretrain_family scratch) set aside: a law in the size cannot use "
                "n = 0; their mean error is reported as scratch_error"
            )
        if not group["x"]:
            raise UsageError(
                f"{path}: group {label or '(all rows)'} has no rows with {x_columns[0]} > 0 to fit"
            )
        strata = None
        if strata_columns:
            _, strata = np.unique(
                np.array(group["strata"], dtype=object).astype(str), axis=0, return_inverse=True
            )
            strata = strata.reshape(-1)
        curves.append(
            Group(
                key=label,
                x=np.array(group["x"], dtype=np.float64),
                y=np.array(group["y"], dtype=np.float64),
                rows=group["rows"],
                strata=strata,
                scratch_error=float(np.mean(group["scratch"])) if group["scratch"] else None,
                notes=notes,
            )
        )
    return curves
