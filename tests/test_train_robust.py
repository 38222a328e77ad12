"""A run never loses work or writes nonsense: a non-finite loss stops it and keeps the last finite
checkpoint; a restore failure that is not corruption leaves every checkpoint in place; a workdir
that cannot be written, a torn state file, a bad config value or a changed schedule is one line
(a UsageError), with nothing written."""

import json
import math
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_sources import BlobImages, NumpyBatches, tiny_config

from synth_jax import files
from synth_jax.errors import UsageError
from synth_jax.fractals import export
from synth_jax.train import checkpoint, metrics, optim, prepare, trainer
from synth_jax.train import step as step_lib
from synth_jax.train import workdir as workdir_lib
from synth_jax.transfer import runs
from synth_jax.weights import export as export_model

STEPS = 8  # checkpoints at 4, 6, 8 (every 2 steps, keep 3)


def config_of(steps=STEPS, **overrides):
    config = tiny_config(steps, **overrides)
    config.optim.schedule = "cosine"  # so that the number of steps shapes the learning rate
    return config


def snapshot(workdir) -> dict:
    """{relative path: bytes} of every file in the workdir."""
    found = {}
    for root, _, names in os.walk(workdir):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, workdir)] = f.read()
    return found


def strict_json(path):
    with open(path) as f:
        return json.loads(f.read(), parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))


def strict_rows(path):
    with open(path) as f:
        return [
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))
            for line in f
        ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("finished"))
    summary, _ = trainer.train(config_of(), workdir, BlobImages(), num_classes=4)
    return workdir, summary


def copy_of(finished, tmp_path) -> str:
    workdir = str(tmp_path / "run")
    shutil.copytree(finished[0], workdir)
    return workdir


# ---------------------------------------------- 1. non-finite loss


class NanAt(NumpyBatches):
    """Host-fed float images; the batch of step `bad_step` (1-based) holds a NaN image."""

    def __init__(self, bad_step, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bad_step = bad_step

    def __next__(self):
        batch = super().__next__()
        image = batch["image"].astype(np.float32) / 255.0
        if self.position == self.bad_step:
            image[0] = np.nan
        return {"image": image, "label": batch["label"]}


def test_a_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    with pytest.raises(trainer.TrainingDiverged, match="^step 5: the loss or a gradient"):
        trainer.train(config_of(), workdir, NanAt(5, 16), num_classes=4)
    # No checkpoint of the non-finite state; the good ones stay.
    assert checkpoint.steps_on_disk(workdir) == [2, 4]
    state = checkpoint.load_train_state(workdir)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))
    summary = strict_json(os.path.join(workdir, "summary.json"))
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 5
    assert summary["last_checkpoint"] == 4 and summary["steps"] == 4
    assert [r["step"] for r in strict_rows(os.path.join(workdir, "metrics.jsonl"))] == [1, 2, 3, 4]
    # A fine-tune from it feeds no results row; nor is it exported.
    with pytest.raises(UsageError, match="stopped at step 5 on a non-finite loss"):
        runs.pretrain_columns(workdir)
    out = str(tmp_path / "exported")
    with pytest.raises(UsageError, match="stopped at step 5 on a non-finite loss"):
        export_model.main(["--from", workdir, "--out", out])
    assert not os.path.exists(out)


def test_the_step_guard_never_commits_a_non_finite_update():
    old = dict(params=jnp.ones(3), step=jnp.asarray(4))
    good = dict(params=jnp.full(3, 2.0), step=jnp.asarray(5))
    bad = dict(params=jnp.asarray([2.0, jnp.nan, 2.0]), step=jnp.asarray(5))
    kept = step_lib.keep_if_finite(old, good, jnp.float32(1.0), jnp.float32(1.0))
    assert int(kept["step"]) == 5 and float(kept["params"][0]) == 2.0
    for new, loss, norm in [(bad, 1.0, 1.0), (good, jnp.nan, 1.0), (good, 1.0, jnp.inf)]:
        kept = step_lib.keep_if_finite(old, new, jnp.float32(loss), jnp.float32(norm))
        assert int(kept["step"]) == -5 and float(kept["params"][1]) == 1.0
        # and the state stays marked at the first bad step, whatever follows
        later = dict(params=jnp.full(3, 3.0), step=jnp.asarray(-4))
        after = step_lib.keep_if_finite(kept, later, jnp.float32(1.0), jnp.float32(1.0))
        assert int(after["step"]) == -5 and float(after["params"][1]) == 1.0


@pytest.mark.parametrize("key", ["optim.lr", "optim.weight_decay", "augment.mixup"])
def test_a_non_finite_config_number_is_refused_before_anything_is_written(tmp_path, key):
    config = config_of()
    section, name = key.split(".")
    config[section][name] = math.nan
    with pytest.raises(UsageError, match=f"'{key}'=nan: expected a finite number"):
        trainer.train(config, str(tmp_path / "run"), BlobImages(), num_classes=4)
    assert not os.path.exists(tmp_path / "run")


def test_json_state_files_never_hold_nan(tmp_path):
    path = str(tmp_path / "s.json")
    files.write_json(path, files.finite_json({"a": [1.0, math.nan], "b": {"c": -math.inf}}))
    assert strict_json(path) == {"a": [1.0, None], "b": {"c": None}}


# ---------------------------------------------- 2. restore failures


@pytest.mark.parametrize(
    "error, kind",
    [
        (PermissionError(13, "Permission denied"), checkpoint.PERMISSION),
        (MemoryError(), checkpoint.MEMORY),
        (RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 4 GiB"), checkpoint.MEMORY),
        (checkpoint.TreeMismatch("head/kernel has shape (8, 4) there"), checkpoint.MISMATCH),
        (OSError(5, "Input/output error"), checkpoint.IO),
        (ValueError("DATA_LOSS: Truncated file"), checkpoint.CORRUPT),
        (json.JSONDecodeError("Expecting value", "", 0), checkpoint.CORRUPT),
        (FileNotFoundError(2, "No such file"), checkpoint.CORRUPT),
        (checkpoint.Unreadable("no metadata"), checkpoint.CORRUPT),
    ],
)
def test_restore_failures_are_classified(error, kind):
    assert checkpoint.classify(error) == kind
    wrapped = ValueError("restore failed")
    wrapped.__cause__ = error  # Orbax and TensorStore wrap the original error
    assert checkpoint.classify(wrapped) == kind


def test_a_checkpoint_of_another_model_is_left_in_place(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    os.remove(os.path.join(workdir, "config.json"))  # no config to compare: the tree is compared
    os.remove(os.path.join(workdir, "summary.json"))
    before = snapshot(workdir)
    with pytest.raises(UsageError, match="does not fit this run's model.*left in place"):
        trainer.train(config_of(), workdir, BlobImages(num_classes=5), num_classes=5)
    assert snapshot(workdir) == before
    assert not os.path.exists(os.path.join(workdir, "checkpoints_corrupt"))


def test_an_unreadable_checkpoint_is_left_in_place(finished, tmp_path, monkeypatch):
    workdir = copy_of(finished, tmp_path)
    before = snapshot(workdir)

    def denied(*args):
        raise PermissionError(13, "Permission denied", "state/manifest.ocdbt")

    monkeypatch.setattr(checkpoint, "_read_step", denied)
    with pytest.raises(UsageError, match="permission denied.*left in place: fix the perm"):
        trainer.train(config_of(), workdir, BlobImages(), num_classes=4)
    assert snapshot(workdir) == before


def test_a_workdir_whose_checkpoints_are_gone_needs_restart(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    os.rename(
        os.path.join(workdir, "checkpoints"), os.path.join(workdir, "checkpoints_corrupt")
    )  # as after every step failed to restore
    before = snapshot(workdir)
    with pytest.raises(UsageError, match="had checkpoints .* rerun with --restart"):
        trainer.train(config_of(), workdir, BlobImages(), num_classes=4)
    assert snapshot(workdir) == before  # metrics.jsonl and summary.json kept
    plan = workdir_lib.check(
        workdir,
        config_of().to_dict(),
        total_steps=STEPS,
        steps_per_epoch=4.0,
        optim=config_of().optim,
        every_steps=2,
        same_run=prepare.check_same_run,
        restart=True,
    )
    assert not plan.resume


# ---------------------------------------------- 3. a workdir that cannot be written


def test_a_read_only_checkpoint_dir_is_one_line(finished, tmp_path, monkeypatch):
    workdir = copy_of(finished, tmp_path)
    os.remove(os.path.join(workdir, "summary.json"))
    before = snapshot(workdir)
    real = workdir_lib.tempfile.mkstemp

    def mkstemp(dir, **kwargs):  # as for a folder this user may not write (root may write all)
        if dir == checkpoint.checkpoint_dir(workdir):
            raise PermissionError(13, "Permission denied")
        return real(dir=dir, **kwargs)

    monkeypatch.setattr(workdir_lib.tempfile, "mkstemp", mkstemp)
    with pytest.raises(UsageError, match="checkpoints: cannot write there .Permission denied."):
        trainer.train(config_of(), workdir, BlobImages(), num_classes=4)
    assert snapshot(workdir) == before


def test_a_save_that_fails_mid_run_stops_with_one_line(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    real = checkpoint.save

    def save(manager, step, *args, **kwargs):
        if step == 6:
            raise OSError(28, "No space left on device")
        return real(manager, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", save)
    with pytest.raises(UsageError, match="saving the checkpoint of step 6 failed .*No space"):
        trainer.train(config_of(), workdir, BlobImages(), num_classes=4)
    assert checkpoint.steps_on_disk(workdir) == [2, 4]
    assert not os.path.exists(os.path.join(workdir, "summary.json"))


STUCK_CHILD = """
import sys, threading
from synth_jax import cli
threading.Thread(target=threading.Event().wait).start()  # as Orbax's after a failed save
sys.argv = ["synth-jax", "pretrain", "--workdir", "x"]  # no --config: a UsageError
sys.exit(cli.main())
"""


def test_an_error_exits_even_when_background_threads_are_stuck():
    proc = subprocess.run(
        [sys.executable, "-c", STUCK_CHILD], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == "synth-jax pretrain: error: --config path/to/config.py is required"
    )


# ---------------------------------------------- 4. torn state files


def test_a_garbage_config_json_beside_checkpoints_is_one_line(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write('{"seed": 0, "optim": {"lr"')
    before = snapshot(workdir)
    with pytest.raises(UsageError, match=r"config.json: not valid JSON at line 1; it records"):
        trainer.train(config_of(), workdir, BlobImages(), num_classes=4)
    assert snapshot(workdir) == before


def test_a_torn_export_manifest_is_one_line(tmp_path):
    (tmp_path / "export.json").write_text('{"family": "fra')
    with pytest.raises(UsageError, match=r"export.json: not valid JSON .* export again"):
        export._check_manifest(str(tmp_path), {"family": "fractaldb"})


def test_a_torn_result_json_is_one_line(tmp_path):
    (tmp_path / "result.json").write_text('{"row": {"top1": 0.5')
    with pytest.raises(UsageError, match=r"result.json: not valid JSON .* evaluate again"):
        runs.done(str(tmp_path), config_of(), 0)


def test_a_torn_last_metrics_line_is_dropped_with_a_note(tmp_path, capsys):
    path = str(tmp_path / "metrics.jsonl")
    with open(path, "w") as f:
        f.write('{"step": 1, "loss": 1.5}\n{"step": 2, "loss": 1.25}\n{"step": 3, "lo')
    assert [r["step"] for r in metrics.read_rows(path)[0]] == [1, 2]
    metrics.truncate_jsonl(path, 2, log=print)
    assert "dropped 1 unreadable line(s)" in capsys.readouterr().out
    with open(path) as f:
        assert f.read() == '{"step": 1, "loss": 1.5}\n{"step": 2, "loss": 1.25}\n'


# ---------------------------------------------- 5. nothing written before validation


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("seed", -1, "'seed'=-1: expected an integer in \\[0, 2\\*\\*32\\)"),
        ("checkpoint.every_steps", 0, "'checkpoint.every_steps'=0: expected an integer >= 1"),
        ("checkpoint.keep", 0, "'checkpoint.keep'=0: expected an integer >= 1"),
    ],
)
def test_a_bad_value_is_refused_before_the_workdir_is_written(tmp_path, key, value, message):
    config = config_of()
    *sections, name = key.split(".")
    target = config
    for section in sections:
        target = target[section]
    target[name] = value
    with pytest.raises(UsageError, match=message):
        trainer.train(config, str(tmp_path / "run"), BlobImages(), num_classes=4)
    assert not os.path.exists(tmp_path / "run")


def test_the_config_of_a_run_that_never_saved_is_replaced(tmp_path):
    # An attempt that failed after config.json and before its first checkpoint holds nothing to
    # resume: the corrected rerun replaces its config.json instead of being refused.
    workdir = str(tmp_path)
    other = config_of()
    other.optim.lr = 0.5
    files.write_json(os.path.join(workdir, "config.json"), other.to_dict())
    config = config_of()
    plan = workdir_lib.check(
        workdir,
        config.to_dict(),
        total_steps=STEPS,
        steps_per_epoch=4.0,
        optim=config.optim,
        every_steps=2,
        same_run=prepare.check_same_run,
    )
    assert not plan.resume and "replacing the config.json" in plan.notes[0]


# ---------------------------------------------- 7. a changed schedule


@pytest.mark.parametrize("steps", [STEPS + 4, STEPS - 2])
def test_a_changed_schedule_is_refused_without_extend(finished, tmp_path, steps):
    workdir = copy_of(finished, tmp_path)
    before = snapshot(workdir)
    with pytest.raises(UsageError, match=f"scheduled for {STEPS} steps; {steps} changes its"):
        trainer.train(config_of(steps), workdir, BlobImages(), num_classes=4, extend=False)
    # a command without --extend (fine-tuning) does not suggest it
    with pytest.raises(UsageError, match="total_steps back to its earlier value") as info:
        trainer.train(config_of(steps), workdir, BlobImages(), num_classes=4)
    assert "--extend" not in str(info.value)
    assert snapshot(workdir) == before  # config.json too


def test_extend_continues_under_the_new_schedule_and_records_it(finished, tmp_path, capfd):
    workdir = copy_of(finished, tmp_path)
    # and a row cut short by a kill during its write: dropped with a note on resume
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"step": 9, "loss": 0.')
    config = config_of(STEPS + 2)
    summary, _ = trainer.train(config, workdir, BlobImages(), num_classes=4, extend=True)
    err = capfd.readouterr().err
    assert "--extend: the schedule of 8 steps becomes one of 10" in err
    assert "dropped 1 unreadable line(s)" in err
    assert summary["resumed_from"] == STEPS and summary["steps"] == STEPS + 2
    (ext,) = summary["extensions"]
    assert ext["at_step"] == STEPS and (ext["from_total_steps"], ext["to_total_steps"]) == (8, 10)
    assert strict_json(os.path.join(workdir, "extensions.json")) == [ext]
    assert strict_json(os.path.join(workdir, "config.json"))["total_steps"] == STEPS + 2
    rows = strict_rows(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, STEPS + 3))
    # steps 9 and 10 ran at the learning rate of the 10-step schedule
    schedule = optim.learning_rate_schedule(config.optim, STEPS + 2, 4.0)
    for r in rows[STEPS:]:
        assert r["lr"] == pytest.approx(float(schedule(r["step"] - 1)), rel=1e-6)


# ---------------------------------------------- 8. nothing recorded is destroyed


def test_a_rerun_of_a_finished_run_keeps_its_summary(finished, tmp_path, capfd):
    workdir = copy_of(finished, tmp_path)
    before = snapshot(workdir)
    summary, _ = trainer.train(config_of(), workdir, BlobImages(), num_classes=4)
    assert "finished earlier, same config; its summary.json stands" in capfd.readouterr().err
    assert summary == strict_json(os.path.join(workdir, "summary.json"))
    assert summary["final_loss"] is not None and summary["images_per_s"] is not None
    assert snapshot(workdir) == before


@pytest.mark.parametrize("garbage", ["{not json", '{"a": 1}'])
def test_a_garbage_extensions_json_is_refused_before_anything_is_written(
    finished, tmp_path, garbage
):
    workdir = copy_of(finished, tmp_path)
    with open(os.path.join(workdir, "extensions.json"), "w") as f:
        f.write(garbage)
    before = snapshot(workdir)
    with pytest.raises(UsageError, match="extensions.json: not"):
        trainer.train(config_of(STEPS + 2), workdir, BlobImages(), num_classes=4, extend=True)
    assert snapshot(workdir) == before  # config.json too: a rerun still finds the old schedule
