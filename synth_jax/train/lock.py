"""One run per workdir: WORKDIR/run.lock, held while a pre-training or fine-tuning runs there.

    with lock.held(workdir):   # refuses (UsageError, one line) when another run holds it
        ...

The lock file is JSON naming its holder (the command), host, pid and start time. It appears
whole (written beside, then hard-linked into place, which fails when one is there) and already
locked with `flock`, so a second run sees either no lock or a held one. A lock whose holder is
gone (the pid is dead on this host, or the file is not flock-ed any more on this host) is taken
over, with a line saying so; a lock of another host is refused with what to do (delete it when
that run is gone). In a multi-process run process 0 holds it and every process agrees on the
refusal (synth_jax.train.workdir.agree). The lock is re-entrant within a process: a fine-tune
holds its workdir and the trainer, called inside, finds it held by itself.

Leaving the block removes the lock file, and the workdir too when the lock created it and
nothing else was written there (a refused run leaves nothing behind).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time

import jax

from synth_jax import files
from synth_jax.errors import UsageError
from synth_jax.train import workdir as workdir_lib

NAME = "run.lock"
_held: dict[str, list] = {}  # absolute workdir -> [fd, count, created the workdir]


def _info() -> dict:
    return dict(
        holder=" ".join(["synth-jax", *sys.argv[1:2]]) if sys.argv else "synth-jax",
        host=socket.gethostname(),
        pid=os.getpid(),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _describe(info: dict) -> str:
    return (
        f"{info.get('holder', '?')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
        f"started {info.get('started', '?')})"
    )


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            found = json.load(f)
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def _create(path: str) -> int | None:
    """Puts a new, flock-ed lock file at `path`; returns its fd, or None when one is there."""
    tmp = files.make_temp_file(os.path.dirname(path), f".{NAME}.")
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.write(fd, (json.dumps(_info()) + "\n").encode())
        os.fsync(fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            os.link(tmp, path)
        except FileExistsError:
            os.close(fd)
            return None
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


def _take_over_if_stale(path: str, log) -> bool:
    """Removes the lock at `path` when its holder is gone; raises UsageError when it lives."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # released meanwhile: try again
    try:
        info = _read(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(_busy(path, info)) from None
        if info.get("host") != socket.gethostname():
            raise UsageError(_busy(path, info, other_host=True))
        # Not flock-ed on this host: its holder is gone (a live one keeps the flock).
        if _same_file(path, fd):
            os.remove(path)
        log(f"{path}: left by {_describe(info)}, which is gone; taking it over")
        return True
    finally:
        os.close(fd)


def _same_file(path: str, fd: int) -> bool:
    try:
        a, b = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _busy(path: str, info: dict, other_host: bool = False) -> str:
    workdir = os.path.dirname(path)
    if other_host:
        return (
            f"{path}: the workdir is in use by {_describe(info)}; wait for that run, or delete "
            f"{NAME} if it is gone (it ran on another host, so this one cannot tell)"
        )
    return (
        f"{workdir}: in use by {_describe(info)}, which holds {NAME}; wait for it to finish "
        f"(or stop it), or use another --workdir"
    )


def acquire(workdir: str, log=print) -> None:
    """Takes the workdir's lock for this process (re-entrant); UsageError when another run
    holds it. Creates the workdir if needed (removed again on release when left empty)."""
    workdir = os.path.abspath(workdir)
    if workdir in _held:
        _held[workdir][1] += 1
        return
    created = not os.path.exists(workdir)
    path = os.path.join(workdir, NAME)
    try:
        os.makedirs(workdir, exist_ok=True)
        for _ in range(10):
            fd = _create(path)
            if fd is not None:
                _held[workdir] = [fd, 1, created]
                return
            _take_over_if_stale(path, log)
    except OSError as e:
        _remove_created(workdir, created)
        raise UsageError(
            f"{workdir}: cannot write there ({e.strerror}); fix its permissions (or free space) "
            f"or use another --workdir"
        ) from None
    except BaseException:
        _remove_created(workdir, created)
        raise
    raise UsageError(f"{path}: could not take the lock (it keeps changing); retry")


def _remove_created(workdir: str, created: bool) -> None:
    """Removes a workdir this lock created, when nothing else was written there."""
    if created:
        with contextlib.suppress(OSError):
            os.rmdir(workdir)


def release(workdir: str) -> None:
    """Gives the lock back (the last release of a re-entrant hold removes run.lock)."""
    workdir = os.path.abspath(workdir)
    entry = _held.get(workdir)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held[workdir]
    fd, _, created = entry
    path = os.path.join(workdir, NAME)
    with contextlib.suppress(OSError):
        if _same_file(path, fd):
            os.remove(path)
    os.close(fd)
    _remove_created(workdir, created)


@contextlib.contextmanager
def held(workdir: str, log=print):
    """The workdir's lock, held by process 0 for the block; every process raises the same
    UsageError when another run holds it."""
    mine = jax.process_index() == 0
    workdir_lib.agree(lambda: acquire(workdir, log) if mine else None)
    try:
        yield
    finally:
        if mine:
            release(workdir)
