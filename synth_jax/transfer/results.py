"""The results table: one CSV row per finished fine-tuning run, read by the scaling-law fits.

Columns (in this order; empty cells for what does not apply, `scratch` for no pre-training):
    run_id, pretrain_family, pretrain_method, pretrain_classes, pretrain_images,
    pretrain_images_seen, model, dataset, mode, fraction, shots, seed, top1, top1_error,
    top5_error, init_from, workdir, timestamp
`pretrain_images` counts unique pre-training images; `pretrain_images_seen` the samples drawn;
`pretrain_method` the pre-training's objective (supervised, simclr, mae; empty from scratch).
Tables written before that column (LEGACY_COLUMNS) still read, and the next row appended to one
rewrites it with the column (its earlier rows: `supervised`, the only method then, or empty
from scratch).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import sys
import time

from synth_jax import files, weights
from synth_jax.errors import UsageError
from synth_jax.weights import sidecar

COLUMNS = (
    "run_id",
    "pretrain_family",
    "pretrain_method",
    "pretrain_classes",
    "pretrain_images",
    "pretrain_images_seen",
    "model",
    "dataset",
    "mode",
    "fraction",
    "shots",
    "seed",
    "top1",
    "top1_error",
    "top5_error",
    "init_from",
    "workdir",
    "timestamp",
)


LEGACY_COLUMNS = tuple(c for c in COLUMNS if c != "pretrain_method")


def _upgraded(table: list) -> list:
    """A table of LEGACY_COLUMNS with the pretrain_method column added."""
    rows = [dict(zip(LEGACY_COLUMNS, cells)) for cells in table[1:]]
    for row in rows:
        row["pretrain_method"] = "" if row.get("pretrain_family") == "scratch" else "supervised"
    return [list(COLUMNS)] + [[row.get(c, "") for c in COLUMNS] for row in rows]


def _csv_line(values) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


def append_row(path: str, row: dict) -> bool:
    """Appends `row` (keys: COLUMNS; missing keys -> empty cells) to the CSV at `path`, exactly
    once; returns whether it was appended (False: the table holds it already).

    Writers take an exclusive lock on the file (fcntl), so that rows of concurrent runs (sweep
    shards, seeds on several machines sharing a folder) are never lost or interleaved, and the
    first of them writes the header. A row is already there when the table has a row of the same
    run folder with the same timestamp, or with the same result (mode, seed, top-1, errors):
    a rerun after a crash between result.json and the table adds nothing twice. An existing file
    with another header is refused (a table whose columns shift would be misread by every fit).
    """
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise ValueError(f"results row has unknown columns {unknown}")
    cells = ["" if row.get(c) is None else str(row.get(c)) for c in COLUMNS]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        f.seek(0)
        data = f.read()
        if data and not data.endswith(b"\n"):
            data = _end_last_row(f, data, path)
        table = parse_table(data.decode("utf-8", errors="replace"), path)
        if table and tuple(table[0]) == LEGACY_COLUMNS:
            table = _upgraded(table)
            f.truncate(0)  # under the lock; the whole table is rewritten below
            f.write("".join(_csv_line(cells) for cells in table).encode())
        if table and tuple(table[0]) != COLUMNS:
            raise UsageError(_header_message(path, table[0]))
        if any(_same_run(dict(zip(COLUMNS, old)), dict(zip(COLUMNS, cells))) for old in table[1:]):
            return False
        f.write((("" if table else _csv_line(COLUMNS)) + _csv_line(cells)).encode())
        f.flush()
        os.fsync(f.fileno())
    return True


def _end_last_row(f, data: bytes, path: str) -> bytes:
    """A table whose last line has no line break. Only this tool's own torn row (a writer
    killed mid-row: a prefix of a row in its format) is dropped, with a note that quotes it;
    anything else (a row added by hand, another tool's) is kept and gets its line break."""
    start = data.rfind(b"\n") + 1
    last = data[start:].decode("utf-8", errors="replace")
    if not _torn_row_of_ours(last):
        f.write(b"\n")
        return data + b"\n"
    f.truncate(start)
    print(f"results_csv {path}: dropped a partial last row: {last!r}", file=sys.stderr)
    return data[:start]


_TIMESTAMP = "dddd-dd-ddTdd:dd:ddZ"  # timestamp()'s format, d a digit


def _torn_row_of_ours(line: str) -> bool:
    """Whether `line` can be a row `append_row` was killed while writing: fewer cells than the
    columns, or all of them with a timestamp cut short (a complete row is never torn)."""
    if line.count('"') % 2:  # cut inside a quoted cell
        line = line + '"'
    cells = next(csv.reader([line]), [])
    if not cells or len(cells) > len(COLUMNS):
        return False
    if len(cells) < len(COLUMNS):
        return True
    stamp = cells[-1]
    pattern = "".join(r"\d" if c == "d" else re.escape(c) for c in _TIMESTAMP[: len(stamp)])
    return len(stamp) < len(_TIMESTAMP) and re.fullmatch(pattern, stamp) is not None


def parse_table(text: str, path: str) -> list[list[str]]:
    """The rows of a results table; one line (UsageError) for a quote left open, which would
    swallow every row after it into one cell for every CSV reader."""
    reader = csv.reader(io.StringIO(text), strict=True)
    table = []
    try:
        for cells in reader:
            if any("\n" in c or "\r" in c for c in cells):
                raise csv.Error("a quoted cell runs over several lines")
            table.append(cells)
    except csv.Error as e:
        raise UsageError(
            f"results_csv {path}: line {reader.line_num}: {e} (a quote left open?); fix that "
            f"line by hand, or name another file in config.results_csv"
        ) from None
    return table


def _same_run(a: dict, b: dict) -> bool:
    """Two rows (dicts of cells) record the same finished run (rows without a run folder, as
    tables built by hand have, are never the same run)."""
    if not a.get("workdir") or a.get("workdir") != b.get("workdir"):
        return False
    same_result = ("mode", "seed", "top1", "top1_error", "top5_error")
    same_time = bool(a.get("timestamp")) and a.get("timestamp") == b.get("timestamp")
    return same_time or all(a.get(k) == b.get(k) for k in same_result)


def _header_message(path: str, header) -> str:
    return (
        f"results_csv {path}: its header is {list(header)}, not the results columns; "
        f"name another file in config.results_csv"
    )


def check_table(path: str) -> None:
    """Refuses, before any training, a results_csv that cannot take the row: a folder, one
    that cannot be written, one whose header is not the results columns or that does not parse."""
    problem = files.path_problem(path)
    if problem is None and os.path.isdir(path):
        problem = "is a folder; name a file"
    if problem is None:
        target = path if os.path.exists(path) else files.existing_ancestor(path)
        if not os.access(target, os.W_OK):
            problem = f"cannot write {'it' if target == path else target} (permission denied)"
    if problem:
        raise UsageError(f"results_csv {path}: {problem}; name another file in config.results_csv")
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            table = parse_table(f.read(), path)
        header = table[0] if table else []
        if tuple(header) not in (COLUMNS, LEGACY_COLUMNS):
            raise UsageError(_header_message(path, header))


def read_rows(path: str) -> list[dict]:
    """The rows of a results CSV as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _load_json(path: str):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def pretrain_info(workdir: str | None) -> dict:
    """The pretrain_* cells for a fine-tune initialised from `workdir` (None -> `scratch`).

    Reads the pre-training run's `summary.json` (pretrain_family, pretrain_classes,
    pretrain_images, images_seen; the trainer's num_classes / num_images otherwise) and, for the
    family, `config.json`'s data section; a checkpoint path inside a workdir is accepted too.
    """
    if not workdir:
        return {
            "pretrain_family": "scratch",
            "pretrain_method": None,
            "pretrain_classes": None,
            "pretrain_images": None,
            "pretrain_images_seen": None,
        }
    if weights.is_weights_file(workdir):
        return _weights_file_info(workdir)
    root = _workdir_of(workdir)
    config = _load_json(os.path.join(root, "config.json")) or {}
    summary = _load_json(os.path.join(root, "summary.json")) or {}
    data = config.get("data", {}) if isinstance(config, dict) else {}
    family = data.get("family") or (data.get("name") if data.get("source") == "tfds" else None)

    def first(*values):
        return next((v for v in values if v not in (None, "")), None)

    return {
        "pretrain_family": first(summary.get("pretrain_family"), family, "unknown"),
        "pretrain_method": first(
            summary.get("pretrain_method"),
            (config.get("objective") or {}).get("type") if isinstance(config, dict) else None,
            "supervised",
        ),
        "pretrain_classes": first(summary.get("pretrain_classes"), summary.get("num_classes")),
        "pretrain_images": first(summary.get("pretrain_images"), summary.get("num_images")),
        "pretrain_images_seen": summary.get("images_seen"),
    }


def _weights_file_info(path: str) -> dict:
    """The pretrain_* cells for a weights file: the pre-training an `export-model` folder's
    config.json records, else the file's name (`file:vit_base_in21k` for an outside baseline)."""
    timm_config = sidecar.read(path) or {}
    pretraining = timm_config.get("synth_jax", {}).get("pretraining", {})
    stem = os.path.splitext(os.path.basename(path))[0]
    return {
        "pretrain_family": pretraining.get("family") or f"file:{stem}",
        "pretrain_method": pretraining.get("method"),
        "pretrain_classes": pretraining.get("num_classes"),
        "pretrain_images": None,
        "pretrain_images_seen": None,
    }


def _workdir_of(path: str) -> str:
    """The run folder holding config.json: `path` itself or an ancestor (checkpoint paths)."""
    probe = os.path.abspath(path)
    for _ in range(4):
        if os.path.exists(os.path.join(probe, "config.json")):
            return probe
        probe = os.path.dirname(probe)
    return os.path.abspath(path)


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
