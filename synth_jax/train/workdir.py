"""Whether a run may start in its workdir, decided before anything is written there.

A workdir holds one run: config.json (its config), checkpoints/, metrics.jsonl, summary.json
(written at the end, removed when the run goes on), extensions.json (each change of schedule
that a rerun made with --extend). `check` reads what is there and refuses, with one line:
  * a workdir (or its checkpoints/) that cannot be written;
  * a config.json that is not JSON beside checkpoints (it is the record of what they hold);
  * another experiment beside checkpoints (the trainer's same-run check);
  * a changed learning-rate schedule (`total_steps`, `total_epochs`) unless `extend`, which then
    continues under the new schedule and records the change in extensions.json;
  * a workdir that had checkpoints and has none left (moved to checkpoints_corrupt/ or deleted),
    unless `restart`: such a run never starts again from step 0 by itself.
A workdir without checkpoints holds nothing to resume: its config.json is replaced. `commit`
writes config.json once the run is about to start. In a multi-process run process 0 decides and
every process raises the same error (`agree`), so no process trains while another has stopped.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from typing import NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils

from synth_jax import files
from synth_jax.errors import UsageError
from synth_jax.train import checkpoint as ckpt
from synth_jax.train import optim as optim_lib

CONFIG, SUMMARY, METRICS, EXTENSIONS = (
    "config.json",
    "summary.json",
    "metrics.jsonl",
    "extensions.json",
)


class Plan(NamedTuple):
    """What `check` found: `resume` (checkpoints to resume from), the schedule change to record
    (or None) and notes to print."""

    resume: bool
    extension: dict | None
    notes: tuple[str, ...]


def agree(decide):
    """Runs `decide()` on process 0 and returns its result there (None elsewhere); when it raises
    a UsageError, every process raises the same one."""
    message, result = "", None
    if jax.process_index() == 0:
        try:
            result = decide()
        except UsageError as e:
            message = str(e)
    if jax.process_count() > 1:
        codes = np.zeros(2048, np.int32)
        encoded = np.frombuffer(message.encode()[: codes.size], np.uint8)
        codes[: encoded.size] = encoded
        codes = np.asarray(multihost_utils.broadcast_one_to_all(codes))
        message = bytes(codes[codes > 0].astype(np.uint8)).decode(errors="replace")
    if message:
        raise UsageError(message)
    return result


def check_writable(workdir: str) -> None:
    """The workdir (or the folder that will hold it) and its checkpoints/ accept new files:
    probed by creating one, so that a read-only folder stops the run before Orbax's background
    saves fail (and wait for each other) in it."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UsageError(f"--workdir {workdir}: is a file; name a directory")
    probe = workdir
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    for directory in (probe, ckpt.checkpoint_dir(workdir)):
        if not os.path.isdir(directory):
            continue
        try:
            fd, path = tempfile.mkstemp(dir=directory, prefix=".write-probe-")
            os.close(fd)
            os.remove(path)
        except OSError as e:
            raise UsageError(
                f"{directory}: cannot write there ({e.strerror}); fix its permissions (or free "
                f"space) or use another --workdir"
            ) from None


def read_config(workdir: str, has_checkpoints: bool) -> dict | None:
    """The workdir's config.json, or None when absent. Not JSON beside checkpoints: an error
    (it is the record of what they hold); without checkpoints: None (it will be replaced)."""
    path = os.path.join(workdir, CONFIG)
    if not os.path.exists(path):
        return None
    if not has_checkpoints:
        try:
            return files.read_json(path, "")
        except UsageError:
            return None
    old = files.read_json(
        path,
        "it records the config of the checkpoints beside it: restore it from a copy, or delete "
        "it to resume without comparing configs (the checkpoints are still checked against "
        "the model)",
    )
    if not isinstance(old, dict):
        raise UsageError(f"{path}: not a config (a JSON object); restore it or delete it")
    return old


def had_checkpoints(workdir: str, every_steps: int) -> str | None:
    """What shows that a workdir without checkpoints had some, or None."""
    corrupt = ckpt.corrupt_dir(workdir)
    if os.path.isdir(corrupt) and os.listdir(corrupt):
        return f"{corrupt} holds the steps that could not be restored"
    summary = os.path.join(workdir, SUMMARY)
    if os.path.exists(summary):
        try:
            ended = files.read_json(summary, "")
        except UsageError:
            ended = {}
        # a run that diverged before its first checkpoint records last_checkpoint: null
        if not isinstance(ended, dict) or ended.get("last_checkpoint", -1) is not None:
            return f"{SUMMARY} records a run that ended"
    path = os.path.join(workdir, METRICS)
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    step = json.loads(line).get("step", 0)
                except (ValueError, AttributeError):
                    continue
                if isinstance(step, int) and step >= every_steps:
                    return f"{METRICS} logs step {step}, past the first checkpoint"
    return None


def planned_steps(config: dict, steps_per_epoch: float) -> int:
    """A config's resolved number of steps (as trainer.validate resolves it)."""
    if config.get("total_steps", 0) > 0:
        return int(config["total_steps"])
    epochs = config.get("total_epochs", 0.0)
    return max(1, int(math.ceil(epochs * steps_per_epoch))) if epochs > 0 else 0


def schedule_change(optim, old_total: int, new_total: int, steps_per_epoch: float):
    """(first step, old lr, new lr) where the learning rate of a run scheduled for `old_total`
    steps changes when it is scheduled for `new_total`, over the steps both have; None when it
    does not change (a constant schedule, or equal totals)."""
    if old_total == new_total or old_total <= 0:
        return None
    steps = np.arange(min(old_total, new_total))
    old = np.asarray(optim_lib.learning_rate_schedule(optim, old_total, steps_per_epoch)(steps))
    new = np.asarray(optim_lib.learning_rate_schedule(optim, new_total, steps_per_epoch)(steps))
    differ = np.flatnonzero(~np.isclose(old, new, rtol=1e-6, atol=0.0))
    if differ.size == 0:
        return None
    first = int(differ[0])
    return first, float(old[first]), float(new[first])


def check(
    workdir: str,
    config_dict: dict,
    *,
    total_steps: int,
    steps_per_epoch: float,
    optim,
    every_steps: int,
    same_run,
    extend: bool = False,
    restart: bool = False,
    can_extend: bool = True,
) -> Plan:
    """Decides whether this run may start in `workdir` (module docstring); writes nothing.

    `same_run(workdir, config_dict, old)` raises a UsageError when `old` (the config.json) is
    another experiment. Returns the Plan; raises UsageError naming what to do."""
    check_writable(workdir)
    extensions(workdir)  # every state file is read before any is written
    steps = ckpt.steps_on_disk(workdir)
    notes = []
    old = read_config(workdir, has_checkpoints=bool(steps))
    if not steps:
        first_save = (old or {}).get("checkpoint", {}).get("every_steps", every_steps)
        evidence = had_checkpoints(workdir, first_save)
        if evidence and not restart:
            raise UsageError(
                f"{workdir}: had checkpoints ({evidence}) and holds none now; rerun with "
                f"--restart to start again from step 0, or use another --workdir"
            )
        if old is not None and old != json.loads(json.dumps(config_dict, default=str)):
            notes.append(f"{workdir}: replacing the config.json of an earlier attempt")
        return Plan(resume=False, extension=None, notes=tuple(notes))
    if restart:
        raise UsageError(
            f"--restart: {workdir} holds checkpoints (the newest at step {steps[-1]}) and a "
            f"rerun resumes from them; to start over use another --workdir"
        )
    extension = None
    if old is not None:
        same_run(workdir, config_dict, old)
        old_total = planned_steps(old, steps_per_epoch)
        change = schedule_change(optim, old_total, total_steps, steps_per_epoch)
        if change and not extend:
            step, lr_old, lr_new = change
            key = "total_steps" if config_dict.get("total_steps", 0) > 0 else "total_epochs"
            raise UsageError(
                f"{key}: {workdir} holds a run scheduled for {old_total} steps; "
                f"{total_steps} changes its learning rate from step {step} on ({lr_old:.3g} "
                f"-> {lr_new:.3g}); "
                + (
                    "pass --extend to continue under the new schedule, or use another --workdir"
                    if can_extend
                    else f"set {key} back to its earlier value, or use another --workdir"
                )
            )
        if change:
            extension = dict(
                at_step=steps[-1],
                from_total_steps=old_total,
                to_total_steps=total_steps,
                lr_changes_from_step=change[0],
                time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            notes.append(
                f"--extend: the schedule of {old_total} steps becomes one of {total_steps} "
                f"(the learning rate changes from step {change[0]} on); recorded in {EXTENSIONS}"
            )
    if steps[-1] > total_steps:
        raise UsageError(
            f"total_steps: the workdir's checkpoint is at step {steps[-1]}, beyond "
            f"{total_steps}; raise total_steps or use another --workdir"
        )
    return Plan(resume=True, extension=extension, notes=tuple(notes))


def extensions(workdir: str) -> list:
    """The schedule changes recorded in the workdir (oldest first)."""
    path = os.path.join(workdir, EXTENSIONS)
    if not os.path.exists(path):
        return []
    what_to_do = "it records the schedule changes of this run; restore it from a copy"
    found = files.read_json(path, what_to_do)
    if not isinstance(found, list) or not all(isinstance(e, dict) for e in found):
        raise UsageError(f"{path}: not a list of schedule changes; {what_to_do}")
    return found


def commit(workdir: str, config_dict: dict, plan: Plan | None) -> None:
    """Records the run that is about to start (process 0): config.json, the schedule change,
    and no summary.json until the run ends (the one there described the run before)."""
    if jax.process_index() != 0 or plan is None:
        return
    os.makedirs(workdir, exist_ok=True)
    files.write_json(os.path.join(workdir, CONFIG), config_dict)
    if plan.extension is not None:
        files.write_json(os.path.join(workdir, EXTENSIONS), extensions(workdir) + [plan.extension])
    if os.path.exists(os.path.join(workdir, SUMMARY)):
        os.remove(os.path.join(workdir, SUMMARY))


def finished_summary(workdir: str, config_dict: dict, step: int) -> dict | None:
    """The summary.json of a run that finished at `step` under exactly this config, or None: a
    rerun of it changes nothing, and its record (loss, accuracy, throughput) stands as it was."""
    path = os.path.join(workdir, SUMMARY)
    try:
        summary = files.read_json(path, "")
        config = files.read_json(os.path.join(workdir, CONFIG), "")
    except (OSError, UsageError):
        return None
    if not isinstance(summary, dict) or summary.get("status") != "done":
        return None
    if summary.get("steps") != step or summary.get("total_steps") != step:
        return None
    same = config == json.loads(json.dumps(config_dict, default=files._json_default))
    return summary if same else None
