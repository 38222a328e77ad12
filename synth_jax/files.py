"""Atomic file writes: a reader (or a resumed run) never sees a half-written file; and the
tolerant read of a JSON state file that something else cut short or edited.

Temporary files and folders get the mode a plain `open()` or `mkdir` would give them (0666 or
0777 less the umask), not the private 0600/0700 of `tempfile`: once renamed into place they are
the results colleagues read on shared storage.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
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
    """argparse `type` of a folder to write into, new or existing, checked before anything
    starts: an empty name, an existing file, a file or a symlink loop on the way, a name too
    long for the file system are refused ("argument --workdir: ... is a file")."""
    if not path.strip():
        raise argparse.ArgumentTypeError("an empty name; name a folder")
    problem = path_problem(path)
    if problem:
        raise argparse.ArgumentTypeError(f"{path}: {problem}; name another folder")
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder; name a folder")
    return path


def file_arg(path: str) -> str:
    """argparse `type` of a file to write, checked before any work: a folder, an empty name, a
    file or a symlink loop on the way are refused."""
    if not path.strip():
        raise argparse.ArgumentTypeError("an empty name; name a file")
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a folder; name the file to write")
    problem = path_problem(os.path.dirname(os.path.abspath(path)))
    if problem:
        raise argparse.ArgumentTypeError(f"{path}: {problem}; name another file")
    return path


def workdir_arg(path: str) -> str:
    """folder_arg for a run's own folder: the current directory is refused as well (a run's
    files and its checkpoints would mix with whatever is there)."""
    folder_arg(path)
    if os.path.abspath(path) == os.path.abspath(os.getcwd()):
        raise argparse.ArgumentTypeError(
            f"{path!r} is the current directory; name a folder for the run (e.g. runs/NAME)"
        )
    return path


def path_problem(path: str) -> str | None:
    """Why `path` (existing or not) cannot be a folder, or None: a name longer than the file
    system allows, a symlink loop, or a file where a folder must be."""
    full = os.path.abspath(path)
    limit = 255
    with contextlib.suppress(OSError, ValueError):
        limit = os.pathconf(existing_ancestor(full), "PC_NAME_MAX")
    for part in full.split(os.sep):
        if len(part.encode()) > limit:
            return f"the name {part[:20]}... is longer than the {limit} bytes a name may have"
    probe = full
    while True:
        try:
            os.stat(probe)
            break
        except FileNotFoundError:
            if os.path.islink(probe):  # a dangling link
                return f"{probe} is a link to nothing"
            probe = os.path.dirname(probe)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return f"{probe} is a symlink loop"
            if e.errno == errno.ENOTDIR:
                return f"a part of it is a file, not a folder ({_file_on_the_way(probe)})"
            return f"{e.strerror}"
    if probe != full and not os.path.isdir(probe):
        return f"{probe} is a file, not a folder"
    return None


def existing_ancestor(path: str) -> str:
    """`path` or its nearest ancestor that is a folder (absolute)."""
    path = os.path.abspath(path)
    while not os.path.isdir(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path


def _file_on_the_way(path: str) -> str:
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        prefix = os.sep.join(parts[:i])
        if os.path.exists(prefix) and not os.path.isdir(prefix):
            return prefix
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
