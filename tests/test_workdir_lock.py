"""One run per workdir: two runs started on one workdir, one refuses in one line and the other's
files are intact; a lock left by a killed process is taken over, and says so."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from test_train_sources import child_env

from synth_jax import cli
from synth_jax.errors import UsageError
from synth_jax.train import checkpoint, lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = os.path.join(REPO, "tests", "test_train_sources.py")
CPU_TINY = os.path.join(REPO, "configs", "pretrain", "cpu_tiny.py") + ":mu"
STEPS = 24

HOLDER = textwrap.dedent(
    """
    import sys, time
    from synth_jax.train import lock
    lock.acquire(sys.argv[1])
    print("held", flush=True)
    time.sleep(120)
    """
)


def test_two_runs_racing_on_one_workdir_one_refuses_the_other_finishes(tmp_path):
    workdir = str(tmp_path / "run")
    procs = [
        subprocess.Popen(
            [sys.executable, CHILD, workdir, str(STEPS)],
            env=child_env(4),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes[0] == 0 and codes[1] != 0, outcomes
    refused = next(err for code, err in outcomes if code != 0)
    assert "in use by" in refused and "run.lock" in refused, refused[-2000:]
    # The run that went on has its own, whole record: each step logged once, a summary.
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == list(range(1, STEPS + 1))
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["status"] == "done" and summary["steps"] == STEPS
    assert checkpoint.steps_on_disk(workdir)[-1] == STEPS
    assert not os.path.exists(os.path.join(workdir, lock.NAME))


@pytest.fixture
def held_elsewhere(tmp_path):
    """A workdir whose lock another live process holds."""
    workdir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "held"
    (workdir / "config.json").write_text('{"from": "the run that holds it"}\n')
    yield workdir, proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("verb", ["pretrain", "finetune"])
def test_a_held_workdir_is_refused_in_one_line_before_anything_is_written(
    held_elsewhere, verb, capsys
):
    workdir, proc = held_elsewhere
    before = sorted(os.listdir(workdir)), (workdir / "config.json").read_text()
    config = CPU_TINY if verb == "pretrain" else os.path.join(REPO, "configs/finetune/cifar10.py")
    code = cli.main([verb, "--config", config, "--workdir", str(workdir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "in use by synth-jax" in err[0] and f"pid {proc.pid}" in err[0], err
    assert (sorted(os.listdir(workdir)), (workdir / "config.json").read_text()) == before


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    workdir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    assert proc.stdout.readline().strip() == "held"
    proc.kill()  # SIGKILL: run.lock stays, its holder is gone
    proc.wait()
    assert os.path.exists(workdir / lock.NAME)
    lines = []
    lock.acquire(str(workdir), log=lines.append)
    try:
        assert len(lines) == 1 and f"pid {proc.pid}" in lines[0] and "taking it over" in lines[0]
        with open(workdir / lock.NAME) as f:
            assert json.load(f)["pid"] == os.getpid()
    finally:
        lock.release(str(workdir))
    assert os.listdir(workdir) == []


def test_a_lock_of_another_host_is_refused_naming_it(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    info = dict(holder="synth-jax pretrain", host="elsewhere-1", pid=1, started="yesterday")
    (workdir / lock.NAME).write_text(json.dumps(info))
    assert socket.gethostname() != "elsewhere-1"
    with pytest.raises(UsageError, match="elsewhere-1.*delete run.lock if it is gone"):
        lock.acquire(str(workdir))
    assert sorted(os.listdir(workdir)) == [lock.NAME]


def test_the_lock_is_reentrant_and_removed_with_the_folder_it_created(tmp_path):
    workdir = str(tmp_path / "new")
    with lock.held(workdir):
        lock.acquire(workdir)  # the trainer inside a fine-tune
        lock.release(workdir)
        assert os.path.exists(os.path.join(workdir, lock.NAME))
    assert not os.path.exists(workdir)
