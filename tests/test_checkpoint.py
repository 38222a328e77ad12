"""Checkpoints: SIGKILL at any step and SIGTERM both resume bit-exactly; a corrupt latest
checkpoint falls back to the previous one and says so; a host-fed source resumes its batches."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from test_train_sources import (
    BlobImages,
    NumpyBatches,
    child_env,
    tiny_config,
)

from synth_jax.errors import UsageError
from synth_jax.evaluators import eval_config
from synth_jax.models import model_config
from synth_jax.train import checkpoint, prepare, trainer

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_train_sources.py")
STEPS = 24


def assert_params_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def logged_steps(workdir) -> list[int]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line)["step"] for line in f if line.strip()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    summary, _ = trainer.train(tiny_config(STEPS), workdir, BlobImages(), num_classes=4)
    return workdir, summary, checkpoint.load_params(workdir)[0]


def start_child(workdir):
    return subprocess.Popen(
        [sys.executable, CHILD, workdir, str(STEPS)],
        env=child_env(4),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_step(proc, workdir, step, timeout=240):
    """Returns once the run has logged `step` and is still running."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before step {step}: {proc.stderr.read()[-2000:]}")
        if any(s >= step for s in logged_steps(workdir)):
            return
        time.sleep(0.01)
    pytest.fail(f"no step {step} within {timeout}s")


def test_sigterm_saves_and_sigkill_resumes_bit_exactly(uninterrupted, tmp_path):
    workdir = str(tmp_path)
    # 1. SIGTERM (preemption): a checkpoint at the current step, exit code 143, no summary.
    proc = start_child(workdir)
    wait_for_step(proc, workdir, 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM: saving a checkpoint" in err
    saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
    assert 3 <= saved[-1] < STEPS
    assert not os.path.exists(os.path.join(workdir, "summary.json"))
    # 2. The same command resumes; SIGKILL it a few steps later (possibly mid-save).
    proc = start_child(workdir)
    wait_for_step(proc, workdir, saved[-1] + 3)
    proc.kill()
    proc.communicate(timeout=60)
    # 3. And once more, to the end.
    proc = start_child(workdir)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "resumed from the checkpoint at step" in err
    assert_params_equal(checkpoint.load_params(workdir)[0], uninterrupted[2])
    # metrics were rewritten from the resumed step: each step once, in order
    assert logged_steps(workdir) == list(range(1, STEPS + 1))
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["steps"] == STEPS and summary["final_loss"] == uninterrupted[1]["final_loss"]


def test_ctrl_c_saves_like_sigterm_and_a_second_one_does_not_cut_the_save(tmp_path):
    workdir = str(tmp_path)
    proc = start_child(workdir)
    wait_for_step(proc, workdir, 3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # impatience while it saves
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "SIGINT: saving a checkpoint" in err and "Traceback" not in err, err[-2000:]
    saved = checkpoint.steps_on_disk(workdir)
    assert 3 <= saved[-1] < STEPS
    assert checkpoint.verify(os.path.join(workdir, "checkpoints", str(saved[-1])))


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(uninterrupted, tmp_path, capfd):
    workdir = str(tmp_path / "run")
    shutil.copytree(uninterrupted[0], workdir)
    shutil.rmtree(os.path.join(workdir, "summary.json"), ignore_errors=True)
    state_dir = os.path.join(workdir, "checkpoints", str(STEPS), "state")
    for root, _, names in os.walk(state_dir):
        for name in names:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    summary, _ = trainer.train(tiny_config(STEPS), workdir, BlobImages(), num_classes=4)
    err = capfd.readouterr().err
    assert f"checkpoint at step {STEPS} is unreadable" in err
    assert summary["resumed_from"] == STEPS - 2
    assert os.listdir(os.path.join(workdir, "checkpoints_corrupt"))
    assert_params_equal(checkpoint.load_params(workdir)[0], uninterrupted[2])


def _largest_file(directory) -> str:
    found = [os.path.join(r, n) for r, _, names in os.walk(directory) for n in names]
    return max(found, key=os.path.getsize)


def test_a_bit_flipped_checkpoint_is_corrupt_and_the_run_resumes_from_the_one_before(
    uninterrupted, tmp_path, capfd
):
    workdir = str(tmp_path / "run")
    shutil.copytree(uninterrupted[0], workdir)
    step_dir = os.path.join(workdir, "checkpoints", str(STEPS))
    assert os.path.exists(os.path.join(step_dir, checkpoint.MANIFEST))
    target = _largest_file(os.path.join(step_dir, "state"))
    with open(target, "r+b") as f:  # 64 bytes flipped in the middle: still a readable file
        f.seek(os.path.getsize(target) // 2)
        data = f.read(64)
        f.seek(-len(data), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in data))
    summary, _ = trainer.train(tiny_config(STEPS), workdir, BlobImages(), num_classes=4)
    err = capfd.readouterr().err
    assert f"checkpoint at step {STEPS} is unreadable (ChecksumMismatch: state/" in err, err
    assert "Event loop is closed" not in err and "Traceback" not in err
    assert summary["status"] == "done" and summary["resumed_from"] == STEPS - 2
    assert_params_equal(checkpoint.load_params(workdir)[0], uninterrupted[2])


def test_checkpoints_without_a_manifest_still_restore_and_empty_step_folders_are_none(
    uninterrupted, tmp_path
):
    workdir = str(tmp_path / "run")
    shutil.copytree(uninterrupted[0], workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(STEPS)))
    for step in checkpoint.steps_on_disk(workdir):  # as an earlier version saved them
        os.remove(os.path.join(workdir, "checkpoints", str(step), checkpoint.MANIFEST))
    os.mkdir(os.path.join(workdir, "checkpoints", "99"))  # an empty folder is no checkpoint
    assert checkpoint.steps_on_disk(workdir)[-1] == STEPS - 2
    summary, _ = trainer.train(tiny_config(STEPS), workdir, BlobImages(), num_classes=4)
    assert summary["resumed_from"] == STEPS - 2
    assert_params_equal(checkpoint.load_params(workdir)[0], uninterrupted[2])


def test_a_bit_flipped_pretraining_is_refused_in_one_line_by_a_fine_tune(uninterrupted, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(uninterrupted[0], workdir)
    step_dir = os.path.join(workdir, "checkpoints", str(STEPS))
    target = _largest_file(os.path.join(step_dir, "state"))
    with open(target, "r+b") as f:
        f.seek(10)
        data = f.read(8)
        f.seek(10)
        f.write(bytes(b ^ 0x01 for b in data))
    with pytest.raises(UsageError, match=f"{step_dir}: cannot read this checkpoint .*checksum"):
        checkpoint.load_params(workdir)


def test_a_checkpoint_restores_onto_another_mesh(uninterrupted, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(uninterrupted[0], workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(STEPS)))
    config = tiny_config(STEPS, data=1, fsdp=4)  # written data-parallel, resumed fully sharded
    summary, _ = trainer.train(config, workdir, BlobImages(), num_classes=4)
    assert summary["resumed_from"] == STEPS - 2 and summary["mesh"]["fsdp"] == 4
    for x, y in zip(
        jax.tree.leaves(checkpoint.load_params(workdir)[0]), jax.tree.leaves(uninterrupted[2])
    ):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(uninterrupted, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(uninterrupted[0], workdir)
    for step in os.listdir(os.path.join(workdir, "checkpoints")):
        shutil.rmtree(os.path.join(workdir, "checkpoints", step, "state"))
    with pytest.raises(UsageError, match="none could be restored"):
        trainer.train(tiny_config(STEPS), workdir, BlobImages(), num_classes=4)


def test_host_fed_source_resumes_its_batches(tmp_path):
    config = tiny_config(6)
    config.optim.schedule = "constant"  # so that a 3-step and a 6-step run share the schedule
    whole, _ = trainer.train(config, str(tmp_path / "a"), NumpyBatches(16), num_classes=4)
    config.total_steps = 3
    trainer.train(config, str(tmp_path / "b"), NumpyBatches(16), num_classes=4)
    config.total_steps = 6
    source = NumpyBatches(16)
    resumed, _ = trainer.train(config, str(tmp_path / "b"), source, num_classes=4)
    assert resumed["resumed_from"] == 3 and source.position == 6
    assert_params_equal(
        checkpoint.load_params(str(tmp_path / "b"))[0],
        checkpoint.load_params(str(tmp_path / "a"))[0],
    )
    assert whole["final_loss"] == resumed["final_loss"]


def test_a_different_experiment_in_the_same_workdir_is_refused(uninterrupted, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(uninterrupted[0], workdir)
    config = tiny_config(STEPS)
    config.optim.lr = 0.5
    with pytest.raises(UsageError, match="optim.lr"):
        trainer.train(config, workdir, BlobImages(), num_classes=4)


def test_a_config_json_of_an_earlier_version_still_resumes(tmp_path):
    # Earlier versions wrote every model key of every model kind and lacked keys added since.
    config = tiny_config(STEPS)
    old = json.loads(json.dumps(config.to_dict()))
    old["model"]["norm"] = "batch"  # a ResNet key in a ViT config, at its default
    (tmp_path / "config.json").write_text(json.dumps(old))
    prepare.check_same_run(str(tmp_path), config.to_dict())
    # Evaluators only watch a run: adding one to a resumed run is no change.
    config.evals.knn = eval_config("knn")
    prepare.check_same_run(str(tmp_path), config.to_dict())
    old["model"]["norm"] = "group"  # not the default: the runs may differ
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(UsageError, match="model.norm"):
        prepare.check_same_run(str(tmp_path), config.to_dict())


def test_a_checkpoint_of_an_earlier_version_restores(tmp_path):
    # Earlier versions saved the non-parameter state (here batch statistics) as "extra".
    config = tiny_config(4, model=model_config("ResNet-10"))
    config.augment.mixup = 0.0
    new = str(tmp_path / "new")
    trainer.train(config, new, BlobImages(), num_classes=4)
    old = str(tmp_path / "old")
    shutil.copytree(new, old)
    os.remove(os.path.join(old, "summary.json"))
    shutil.rmtree(os.path.join(old, "checkpoints", "4"))
    step2 = os.path.join(old, "checkpoints", "2")
    with ocp.StandardCheckpointer() as checkpointer:
        saved = dict(checkpointer.restore(os.path.join(step2, "state")))
    saved["extra"] = saved.pop("model_state")
    shutil.rmtree(step2)
    manager = checkpoint.make_manager(old, 2, 3, async_save=False)
    checkpoint.save(manager, 2, saved, {"source": None, "seed": 0}, force=True)
    manager.wait_until_finished()
    manager.close()
    assert "extra" in checkpoint._saved_tree(os.path.join(step2, "state")).keys()
    state = checkpoint.load_train_state(step2)
    assert "model_state" in state and "extra" not in state
    means = [k for k in jax.tree_util.tree_flatten_with_path(state["model_state"])[0]]
    assert means  # ResNet batch statistics
    # A run resumes from it and ends where the uninterrupted run did.
    summary, _ = trainer.train(config, old, BlobImages(), num_classes=4)
    assert summary["resumed_from"] == 2
    a, b = checkpoint.load_train_state(old), checkpoint.load_train_state(new)
    assert_params_equal(a["params"], b["params"])
    assert_params_equal(a["model_state"], b["model_state"])
