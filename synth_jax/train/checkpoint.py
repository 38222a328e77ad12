"""Checkpoints with Orbax: async saves every N steps, keep K, exact resume, corrupt-latest fallback.

A checkpoint of step t (t steps done) lives in `WORKDIR/checkpoints/<t>/` with two items:
    state  the train state {params, model_state, opt_state, step} (arrays, saved sharded);
           model_state is the model's non-parameter state (batch statistics, fixed embeddings)
    data   JSON: the host-fed iterator's state, the config digest
Orbax writes a step to a temporary directory and renames it when complete, so a save killed
half-way never replaces a good checkpoint. A step whose bytes are damaged (a checksum, a cut
file, unreadable metadata) is moved to `WORKDIR/checkpoints_corrupt/` with a message, and the
previous one is tried; if every checkpoint fails, the run stops rather than silently starting
from scratch. Any other failure to restore (a checkpoint of another model or optimiser, a
permission, memory, the storage) says nothing about the checkpoint's bytes: the run stops with
one line naming the cause and every checkpoint stays where it is. In a multi-process run every
process reads its part and all of them act on the worst verdict, so they stop or go on together.

Checkpoints of earlier versions named model_state "extra"; they restore under today's name
(`LEGACY_NAMES`), so a run started before resumes and an old pre-training still fine-tunes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from synth_jax import files
from synth_jax.errors import UsageError


def _drop_closed_loop_callbacks(unraisable, previous=sys.unraisablehook):
    """A read of a damaged checkpoint fails while TensorStore still has reads in flight; their
    callbacks then find Orbax's event loop closed, and each would print a traceback
    ("RuntimeError: Event loop is closed") after the one-line error. Those say nothing more."""
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and "Event loop is closed" in str(error):
        return
    previous(unraisable)


sys.unraisablehook = _drop_closed_loop_callbacks


class _BackgroundNoise(logging.Filter):
    """Drops what Orbax's background work logs when a save or read fails (an error per array
    from its threads, asyncio's "exception was never retrieved" per write): the failure itself
    reaches the run, which reports it in one line naming the step and the cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio":
            return "exception was never retrieved" not in record.getMessage()
        orbax = f"{os.sep}orbax{os.sep}" in (record.pathname or "")
        return not (orbax and record.levelno >= logging.WARNING)


for _name in ("absl", "asyncio"):
    logging.getLogger(_name).addFilter(_BackgroundNoise())


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax's warnings while reading a step (a metadata file of another version absent, ...)
    are not the user's business: the outcome is reported in one line."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


# Train-state keys of earlier versions -> today's.
LEGACY_NAMES = {"extra": "model_state"}


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, every_steps: int, keep: int, async_save: bool = True):
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=max(int(every_steps), 1),
        max_to_keep=max(int(keep), 1),
        enable_async_checkpointing=async_save,
        create=True,
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir), options=options, item_names=("state", "data")
    )


def save(manager, step: int, state, data: dict, force: bool = False) -> bool:
    """Starts a (possibly async) save of `state` at `step`; returns whether one was started."""
    return manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data)),
        force=force,
    )


def steps_on_disk(workdir: str) -> list[int]:
    """The completed checkpoint steps in the workdir, oldest first (Orbax's temporary folders of
    unfinished saves are not steps, nor is an empty numbered folder)."""
    directory = checkpoint_dir(workdir)
    if not os.path.isdir(directory):
        return []
    return sorted(int(d) for d in os.listdir(directory) if _is_step(os.path.join(directory, d)))


def _is_step(path: str) -> bool:
    """A numbered folder with something in it (an empty one is no checkpoint)."""
    name = os.path.basename(path)
    return name.isdigit() and os.path.isdir(path) and bool(os.listdir(path))


# ------------------------------------------------------------------ checksums
# A finished save gets WORKDIR/checkpoints/<step>/MANIFEST: the size and SHA-256 of every file
# of the step, written (by process 0) once Orbax has finished writing it. A restore checks it
# first: a file that differs, or is missing, is corruption (the step is moved aside and the
# previous one used), never read into a train state. A step without one (saved by an earlier
# version, or killed between the save and its manifest) restores unverified.
MANIFEST = "manifest.sha256.json"


class ChecksumMismatch(ValueError):
    """A checkpoint file differs from (or is missing in) its step's manifest."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _step_files(step_dir: str) -> list[str]:
    found = []
    for root, _, names in os.walk(step_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), step_dir)
            if rel != MANIFEST and not name.endswith(".tmp"):
                found.append(rel)
    return sorted(found)


def write_manifest(workdir: str, step: int) -> bool:
    """Records the checksums of a finished save (process 0); False when the step is gone."""
    if jax.process_index() != 0:
        return False
    step_dir = os.path.join(checkpoint_dir(workdir), str(step))
    if not os.path.isdir(os.path.join(step_dir, "state")):
        return False  # the save failed (or the step was deleted): nothing to vouch for
    try:
        entries = {
            rel: dict(size=os.path.getsize(os.path.join(step_dir, rel)), sha256=_sha256(p))
            for rel in _step_files(step_dir)
            for p in [os.path.join(step_dir, rel)]
        }
    except FileNotFoundError:  # deleted meanwhile (an older step Orbax no longer keeps)
        return False
    files.write_json(os.path.join(step_dir, MANIFEST), dict(algorithm="sha256", files=entries))
    return True


def verify(step_dir: str) -> bool:
    """Checks a step's files against its manifest; raises ChecksumMismatch naming the first
    file that differs. Returns False when the step has no manifest (not verified)."""
    path = os.path.join(step_dir, MANIFEST)
    if not os.path.exists(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)["files"]
        items = sorted(entries.items())
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ChecksumMismatch(f"{path}: its checksum manifest is damaged") from None
    for rel, want in items:
        full = os.path.join(step_dir, rel)
        if not os.path.isfile(full):
            raise ChecksumMismatch(f"{rel} is missing (the checksum manifest lists it)")
        if os.path.getsize(full) != want.get("size") or _sha256(full) != want.get("sha256"):
            raise ChecksumMismatch(f"{rel} does not match its checksum")
    return True


# Why a step could not be restored. Only CORRUPT (its bytes) moves the step aside: the others say
# nothing about the checkpoint, which may be healthy, so the run stops and leaves it in place.
OK, CORRUPT, MISMATCH, PERMISSION, MEMORY, IO, OTHER = range(7)
_CORRUPT_MARKS = (
    "DATA_LOSS",
    "Truncated",
    "Error decoding",
    "was not found in the checkpoint",
    "incomplete checkpoint",
    "checksum",
    "Unexpected end",
    "OUT_OF_RANGE",  # a data file cut short: "Requested byte range ... is not valid"
    "is not valid for value of size",
)
_STOP = {
    MISMATCH: "does not fit this run's model or optimiser ({reason}); every checkpoint was left "
    "in place: resume with the config that wrote it, or use another --workdir",
    PERMISSION: "cannot be read: permission denied ({reason}); every checkpoint was left in "
    "place: fix the permissions and rerun",
    MEMORY: "cannot be restored: out of memory ({reason}); every checkpoint was left in place: "
    "free memory (or shard the state over more devices: mesh.fsdp) and rerun",
    IO: "cannot be read: an I/O error ({reason}); every checkpoint was left in place: rerun once "
    "the storage is reachable",
    OTHER: "cannot be restored ({reason}); every checkpoint was left in place: if that step is "
    "damaged, move its folder aside and rerun",
}


class TreeMismatch(ValueError):
    """The saved train state has other arrays or shapes than this run's."""


class Unreadable(ValueError):
    """A step's files do not describe a train state (its metadata is missing or damaged)."""


def classify(error: BaseException) -> int:
    """The kind of a restore failure (CORRUPT, MISMATCH, PERMISSION, MEMORY, IO or OTHER), from
    the exception and its causes (Orbax and TensorStore wrap the original error)."""
    chain, seen = [], error
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    if any(isinstance(e, (Unreadable, ChecksumMismatch)) for e in chain):
        return CORRUPT
    if any(isinstance(e, PermissionError) for e in chain) or "PERMISSION_DENIED" in text:
        return PERMISSION
    if any(isinstance(e, MemoryError) for e in chain) or "RESOURCE_EXHAUSTED" in text:
        return MEMORY
    if "out of memory" in text.lower():
        return MEMORY
    if any(isinstance(e, TreeMismatch) for e in chain) or "tree structures do not match" in text:
        return MISMATCH
    if "is not compatible with the stored shape" in text:
        return MISMATCH
    corrupt_types = (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError)
    if any(isinstance(e, corrupt_types) for e in chain):
        return CORRUPT
    if any(mark in text for mark in _CORRUPT_MARKS):
        return CORRUPT
    if any(isinstance(e, (OSError, TimeoutError)) for e in chain):
        return IO
    if any(mark in text for mark in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED")):
        return IO
    return OTHER


def _reason(error: BaseException) -> str:
    first = str(error).splitlines()[0][:200] if str(error) else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _is_array(m) -> bool:
    return hasattr(m, "shape") and hasattr(m, "dtype")


def _shapes(tree) -> dict:
    """{"a/b/0": shape} of every array in a (metadata or abstract) tree."""

    def name(key):
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_array)[0]
    return {"/".join(map(name, path)): tuple(m.shape) for path, m in leaves if _is_array(m)}


def tree_difference(saved, target) -> str | None:
    """The first array in which two train states differ (missing, extra or of another shape), or
    None when they have the same arrays and shapes."""
    a, b = _shapes(saved), _shapes(target)
    for path in sorted(set(a) | set(b)):
        if path not in a:
            return f"{path} is not in the checkpoint"
        if path not in b:
            return f"the checkpoint has {path}, this run has not"
        if a[path] != b[path]:
            return f"{path} has shape {a[path]} there, {b[path]} here"
    return None


def _read_step(workdir: str, step: int, abstract_state):
    """(step, state, data) of one checkpoint, read without Orbax's barriers: every process
    reads its part and the processes agree on the outcome afterwards (see restore_latest)."""
    step_dir = epath.Path(checkpoint_dir(workdir)) / str(step)
    if jax.process_index() == 0:  # the others act on its verdict (_agree)
        verify(str(step_dir))
    saved = _saved_tree(str(step_dir / "state"))
    target = _as_saved(abstract_state, set(saved.keys()))
    difference = tree_difference(saved, target)
    if difference:
        raise TreeMismatch(difference)
    handler = ocp.StandardCheckpointHandler()
    try:
        state = handler.restore(step_dir / "state", args=ocp.args.StandardRestore(target))
    finally:
        handler.close()
    data = ocp.JsonCheckpointHandler().restore(step_dir / "data", args=ocp.args.JsonRestore())
    return step, _current_names(dict(state)), dict(data or {})


def _agree(kind: int) -> tuple[int, int]:
    """(the worst verdict over all processes, the first process that gave it): any failure beats
    OK, and any cause that keeps the checkpoint beats CORRUPT."""
    if jax.process_count() == 1:
        return kind, 0
    kinds = np.asarray(multihost_utils.process_allgather(np.asarray(kind, np.int32))).ravel()
    worst = int(kinds.max())
    return worst, int(np.argmax(kinds == worst))


def restore_latest(manager, workdir: str, abstract_state, log=print):
    """Restores the newest readable checkpoint against `abstract_state` (ShapeDtypeStructs with
    the shardings of THIS run's mesh, so a checkpoint written on another mesh restores here).

    Returns (step, state, data) or None when the workdir holds no checkpoint. A corrupt step is
    moved aside and the previous one tried; any other failure is a UsageError naming its cause,
    with every checkpoint left in place (module docstring).
    """
    directory = checkpoint_dir(workdir)
    steps = [s for s in sorted(manager.all_steps(), reverse=True) if _is_step(f"{directory}/{s}")]
    if not steps:
        return None
    for step in steps:
        kind, reason, restored = OK, "", None
        try:
            with _quiet_orbax():
                restored = _read_step(workdir, step, abstract_state)
        except Exception as e:  # classified below; only a corrupt step is moved
            kind, reason = classify(e), _reason(e)
        agreed, process = _agree(kind)
        if agreed == OK:
            return restored
        if agreed != kind or not reason:
            reason = f"reported by process {process}"
        where = os.path.join(checkpoint_dir(workdir), str(step))
        if agreed != CORRUPT:
            raise UsageError(f"checkpoint {where} " + _STOP[agreed].format(reason=reason))
        moved = _quarantine(workdir, step)
        manager.reload()  # forget the moved step, so that it can be written again
        log(
            f"checkpoint at step {step} is unreadable ({reason}); moved it to {moved} "
            f"and trying the previous one"
        )
    raise UsageError(
        f"{checkpoint_dir(workdir)}: held checkpoints but none could be restored (see the "
        f"messages above; they are in {corrupt_dir(workdir)}); rerun with --restart to start "
        "again from step 0, or use another --workdir"
    )


def save_failed(workdir: str, step: int | None, error: BaseException) -> str:
    """The one-line message of a failed save."""
    which = f"the checkpoint of step {step}" if step is not None else "a checkpoint"
    text = str(error)
    codes = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO)
    cause = next((os.strerror(c) for c in codes if os.strerror(c) in text), None)
    reason = f"{cause}: {_reason(error)}" if cause else _reason(error)
    return (
        f"{checkpoint_dir(workdir)}: saving {which} failed ({reason}); the checkpoints "
        f"saved before it are intact: fix the cause (permissions, free space) and rerun"
    )


def corrupt_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints_corrupt")


def _quarantine(workdir: str, step: int) -> str:
    """Moves a bad step out of the manager's sight so that the step can be written again."""
    src = os.path.join(checkpoint_dir(workdir), str(step))
    dst = os.path.join(corrupt_dir(workdir), f"{step}-{int(time.time())}")
    if jax.process_index() == 0 and os.path.exists(src):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.move(src, dst)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"quarantine checkpoint {step}")
    return dst


def _saved_tree(state_dir: str):
    """The tree metadata of a saved train state (leaves have .shape and .dtype)."""
    with ocp.StandardCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(state_dir)
    tree = getattr(metadata, "item_metadata", metadata)
    tree = getattr(tree, "tree", tree)
    if not hasattr(tree, "keys"):
        raise Unreadable(f"{state_dir}: no readable metadata")
    return tree


def _as_saved(state: dict, saved: set) -> dict:
    """`state` with today's keys under the names the checkpoint used."""
    old = {new: name for name, new in LEGACY_NAMES.items() if name in saved and new not in saved}
    return {old.get(key, key): value for key, value in state.items()}


def _current_names(state: dict) -> dict:
    return {LEGACY_NAMES.get(key, key): value for key, value in state.items()}


def _resolve_checkpoint(path: str) -> str:
    """A workdir, its checkpoints/ dir or one step dir -> the step dir to read."""
    path = os.path.abspath(path)
    if os.path.isdir(os.path.join(path, "checkpoints")):
        path = os.path.join(path, "checkpoints")
    if os.path.isdir(os.path.join(path, "state")):
        return path
    if os.path.isdir(path):
        steps = [int(d) for d in os.listdir(path) if _is_step(os.path.join(path, d))]
        if steps:
            return os.path.join(path, str(max(steps)))
    raise UsageError(f"{path}: not a workdir or checkpoint (no checkpoints/<step>/state inside)")


def run_summary(path: str) -> dict | None:
    """The summary.json of the run whose checkpoint `path` names (a workdir, its checkpoints/
    dir or one step's dir), or None when it has none (still running, preempted)."""
    step_dir = _resolve_checkpoint(path)
    summary = os.path.normpath(os.path.join(step_dir, "..", "..", "summary.json"))
    if not os.path.isfile(summary):
        return None
    found = files.read_json(summary, "it records how the run ended: restore it, or remove it")
    return found if isinstance(found, dict) else None


def _int_keys(tree):
    """Orbax returns dict keys as strings; nnx pure dicts index list entries by int."""
    if isinstance(tree, dict):
        return {
            (int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v)
            for k, v in tree.items()
        }
    return tree


def load_params(workdir_or_checkpoint_path: str):
    """Reads the parameters of the newest checkpoint for fine-tuning.

    `workdir_or_checkpoint_path`: a run's workdir, its checkpoints/ dir, or one step's dir.
    Returns (params, config): params is a nested dict of numpy arrays in the layout of
    `nnx.to_pure_dict(nnx.state(model, nnx.Param))` (list entries under int keys; the classifier
    under "head"); config is the run's config.json as a dict, or None when it is absent.
    Batch statistics and the optimiser state are in `load_train_state`.
    """
    step_dir = _resolve_checkpoint(workdir_or_checkpoint_path)
    state = load_train_state(step_dir)
    config = None
    config_path = os.path.normpath(os.path.join(step_dir, "..", "..", "config.json"))
    if os.path.isfile(config_path):
        config = files.read_json(
            config_path, "it is the record of the run's config: restore it, or remove it"
        )
    return state["params"], config


def _restore_on_host(step_dir: str):
    tree = _saved_tree(os.path.join(step_dir, "state"))
    with ocp.StandardCheckpointer() as checkpointer:
        target = jax.tree.map(
            lambda m: np.zeros(m.shape, m.dtype),
            tree,
            is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
        )
        return checkpointer.restore(os.path.join(step_dir, "state"), target)


def load_train_state(workdir_or_checkpoint_path: str) -> dict:
    """The whole saved train state (params, model_state, opt_state, step) as numpy, on the host
    (a checkpoint of an earlier version too: its "extra" reads as model_state)."""
    step_dir = _resolve_checkpoint(workdir_or_checkpoint_path)
    try:
        verify(step_dir)
        with _quiet_orbax():
            state = _restore_on_host(step_dir)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(
            f"{step_dir}: cannot read this checkpoint ({_reason(e)}); name another step's "
            f"folder, or the pre-training's workdir once that step is moved aside"
        ) from None
    return _current_names(_int_keys(jax.tree.map(np.asarray, state)))
