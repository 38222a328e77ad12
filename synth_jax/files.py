"""Atomic file writes: a reader (or a resumed run) never sees a half-written file; and the
tolerant read of a JSON state file that something else cut short or edited.

Temporary files and folders get the mode a plain `open()` or `mkdir` would give them (0666 or
0777 less the umask), not the private 0600/0700 of `tempfile`: once renamed into place they are
the results colleagues read on shared storage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets

from synth_jax.errors import UsageError


def _fresh_name(directory: str, prefix: str, suffix: str = "") -> str:
    return os.path.join(directory, f"{prefix}{secrets.token_hex(4)}{suffix}")


def make_temp_file(directory: str, prefix: str, suffix: str = "") -> str:
    """Creates an empty, new file in `directory` (mode 0666 less the umask); returns its path."""
    while True:
        path = _fresh_name(directory, prefix, suffix)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


def make_temp_dir(directory: str, prefix: str) -> str:
    """Creates a new, empty folder in `directory` (mode 0777 less the umask); returns its path."""
    while True:
        path = _fresh_name(directory, prefix)
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path next to `path`; renames it onto `path` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = make_temp_file(directory, "." + os.path.basename(path) + ".", ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def folder_arg(path: str) -> str:
    """argparse `type` of a folder to write into, new or existing: an existing file is refused
    ("argument --workdir: ... is a file"), before anything starts."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder; name a folder")
    return path


def write_text(path: str, text: str):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str, obj, indent: int = 2):
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def append_line(path: str, line: str):
    """Appends one line in a single write (safe for one writer; rows are never half-written)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: str, what_to_do: str):
    """The JSON file at `path`. One that is not JSON (cut short by a crash of an earlier
    version, or edited) is a UsageError naming the file and `what_to_do`, not a traceback."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise UsageError(f"{path}: not valid JSON{where}; {what_to_do}") from None


def finite_json(tree):
    """`tree` (dicts, lists, numbers) with NaN and infinite floats as None: JSON has no NaN, and a
    bare NaN makes a file unreadable to strict parsers."""
    if isinstance(tree, dict):
        return {k: finite_json(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [finite_json(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree


def _json_default(obj):
    # numpy / jax scalars and arrays
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
