"""Checkpoints with Orbax: async saves every N steps, keep K, exact resume, corrupt-latest fallback.

A checkpoint of step t (t steps done) lives in `WORKDIR/checkpoints/<t>/` with two items:
    state  the train state {params, model_state, opt_state, step} (arrays, saved sharded);
           model_state is the model's non-parameter state (batch statistics, fixed embeddings)
    data   JSON: the host-fed iterator's state, the config digest
Orbax writes a step to a temporary directory and renames it when complete, so a save killed
half-way never replaces a good checkpoint. A step that fails to restore (corrupt files) is moved
to `WORKDIR/checkpoints_corrupt/` with a message, and the previous one is tried; if every
checkpoint fails, the run stops rather than silently starting from scratch.

Checkpoints of earlier versions named model_state "extra"; they restore under today's name
(`LEGACY_NAMES`), so a run started before resumes and an old pre-training still fine-tunes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from synth_jax.errors import UsageError

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


def restore_latest(manager, workdir: str, abstract_state, log=print):
    """Restores the newest readable checkpoint against `abstract_state` (ShapeDtypeStructs with
    the shardings of THIS run's mesh, so a checkpoint written on another mesh restores here).

    Returns (step, state, data) or None when the workdir holds no checkpoint.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        return None
    for step in steps:
        try:
            saved = _saved_keys(os.path.join(checkpoint_dir(workdir), str(step), "state"))
            target = _as_saved(abstract_state, saved)
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
                ),
            )
            return step, _current_names(dict(restored["state"])), dict(restored["data"] or {})
        except Exception as e:  # any failure to read means this step cannot be trusted
            reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            newer_bad = _quarantine(workdir, step)
            manager.reload()  # forget the moved step, so that it can be written again
            log(
                f"checkpoint at step {step} is unreadable ({reason}); moved it to {newer_bad} "
                f"and trying the previous one"
            )
    raise UsageError(
        f"{checkpoint_dir(workdir)}: holds checkpoints but none could be restored (see the "
        "messages above); move the directory away to start from scratch"
    )


def _quarantine(workdir: str, step: int) -> str:
    """Moves a bad step out of the manager's sight so that the step can be written again."""
    src = os.path.join(checkpoint_dir(workdir), str(step))
    dst = os.path.join(
        os.path.abspath(workdir), "checkpoints_corrupt", f"{step}-{int(time.time())}"
    )
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
    return getattr(tree, "tree", tree)


def _saved_keys(state_dir: str) -> set:
    """The top-level keys of a saved train state; empty when its metadata cannot be read (the
    restore then fails and says why)."""
    try:
        return set(_saved_tree(state_dir).keys())
    except Exception:  # a corrupt step: restore_latest reports it
        return set()


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
        steps = [int(d) for d in os.listdir(path) if d.isdigit()]
        if steps:
            return os.path.join(path, str(max(steps)))
    raise UsageError(f"{path}: not a workdir or checkpoint (no checkpoints/<step>/state inside)")


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
    config_path = os.path.join(step_dir, "..", "..", "config.json")
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config = json.load(f)
    return state["params"], config


def load_train_state(workdir_or_checkpoint_path: str) -> dict:
    """The whole saved train state (params, model_state, opt_state, step) as numpy, on the host
    (a checkpoint of an earlier version too: its "extra" reads as model_state)."""
    step_dir = _resolve_checkpoint(workdir_or_checkpoint_path)
    try:
        tree = _saved_tree(os.path.join(step_dir, "state"))
        with ocp.StandardCheckpointer() as checkpointer:
            target = jax.tree.map(
                lambda m: np.zeros(m.shape, m.dtype),
                tree,
                is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
            )
            state = checkpointer.restore(os.path.join(step_dir, "state"), target)
    except UsageError:
        raise
    except Exception as e:
        print(f"{step_dir}: {type(e).__name__}: {e}", file=sys.stderr)
        raise UsageError(f"{step_dir}: cannot read this checkpoint ({type(e).__name__})") from e
    return _current_names(_int_keys(jax.tree.map(np.asarray, state)))
