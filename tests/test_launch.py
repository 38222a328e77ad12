"""The launch scripts: syntax, shellcheck, input checks, and what --dry-run says they will do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["launch/local.sh", "launch/slurm.sbatch", "launch/tpu_pod.sh"]


def run(*args, env=None, timeout=60):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        ["bash", *args], cwd=ROOT, capture_output=True, text=True, env=full_env, timeout=timeout
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
    result = run("-n", script)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    result = subprocess.run(
        ["shellcheck", "--shell=bash", script], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_local_dry_run_prints_one_process_per_rank_with_its_env():
    result = run(
        "launch/local.sh",
        "--processes",
        "3",
        "--cpu-devices",
        "2",
        "--port",
        "23456",
        "--dry-run",
        "--",
        sys.executable,
        "-m",
        "synth_jax",
        "pretrain",
        "--workdir",
        "runs/x",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith("process")]
    assert len(lines) == 3
    for rank, line in enumerate(lines):
        assert "SYNTH_JAX_COORDINATOR=127.0.0.1:23456" in line
        assert "SYNTH_JAX_NUM_PROCESSES=3" in line
        assert f"SYNTH_JAX_PROCESS_ID={rank} " in line
        assert "--xla_force_host_platform_device_count=2" in line
        assert line.endswith(f"runs/x/logs/process_{rank}.log")  # logs default to the workdir
    assert "dry run, nothing started" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--processes", "0", "--", "true"], "--processes must be a positive integer"),
        (["--port", "80", "--", "true"], "--port must be a number in 1024..65535"),
        (["--", "no-such-command-xyz"], "is not on PATH"),
        (["--bogus", "--", "true"], "unknown option '--bogus'"),
        ([], "no command given"),
    ],
)
def test_local_rejects_bad_input(args, message):
    result = run("launch/local.sh", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_local_runs_processes_and_reports_a_failure(tmp_path):
    # Rank 1 fails: the script must stop rank 0 (which would otherwise sleep) and return 3.
    script = 'if [ "$SYNTH_JAX_PROCESS_ID" = 1 ]; then exit 3; fi; echo rank0 ok; sleep 60'
    result = run("launch/local.sh", "--log-dir", str(tmp_path), "--", "bash", "-c", script)
    assert result.returncode == 3
    assert "stopping the others" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["process_0.log", "process_1.log"]


def test_slurm_dry_run_prints_srun_with_rank_setup():
    result = run("launch/slurm.sbatch", "--dry-run", "synth-jax", "pretrain", "--workdir", "/s/x")
    assert result.returncode == 0, result.stderr
    assert "srun --kill-on-bad-exit=1" in result.stdout
    assert "SYNTH_JAX_PROCESS_ID" in result.stdout and "SLURM_PROCID" in result.stdout
    assert "JAX_LOCAL_DEVICE_IDS" in result.stdout and "SLURM_LOCALID" in result.stdout
    assert "synth-jax pretrain --workdir /s/x" in result.stdout


def two_node_job(tmp_path) -> dict:
    """The environment of a Slurm job on two nodes of 8 GPUs; a fake scontrol stands in for
    Slurm's and names the job's nodes."""
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\nprintf 'gpu-a17\\ngpu-a18\\n'\n")
    scontrol.chmod(0o755)
    return {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_NODELIST": "gpu-a[17-18]",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NTASKS": "16",
    }


def test_slurm_dry_run_inside_a_job_names_the_head_node(tmp_path):
    # the coordinator is the job's first node
    env = two_node_job(tmp_path)
    result = run("launch/slurm.sbatch", "--dry-run", "synth-jax", "sweep", env=env)
    assert result.returncode == 0, result.stderr
    assert "SYNTH_JAX_COORDINATOR=gpu-a17:12355 SYNTH_JAX_NUM_PROCESSES=16" in result.stdout


def test_slurm_outside_a_job_refuses_to_run():
    env = {"SLURM_JOB_ID": ""}
    result = run("launch/slurm.sbatch", "synth-jax", "pretrain", env=env)
    assert result.returncode == 2
    assert "submit with sbatch" in result.stderr


def test_tpu_pod_dry_run_prints_create_install_mount_run_delete():
    result = run(
        "launch/tpu_pod.sh",
        "--name",
        "frac-v4-32",
        "--zone",
        "us-central2-b",
        "--accelerator",
        "v4-32",
        "--bucket",
        "gs://my-bucket",
        "--delete",
        "--dry-run",
        "--no-preflight",
        "--",
        "synth-jax",
        "pretrain",
        "--config",
        "configs/pretrain/x.py",
        "--workdir",
        "/mnt/gcs/my-bucket/runs/x",
    )
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    where = "frac-v4-32 --zone us-central2-b"
    assert steps[0] == (
        f"+ gcloud compute tpus tpu-vm create {where} --accelerator-type v4-32 "
        "--version tpu-ubuntu2204-base"
    )
    assert any("tpu-vm scp" in s and "--worker=all" in s for s in steps)
    ssh = [s for s in steps if f"tpu-vm ssh {where} --worker=all --command" in s]
    assert len(ssh) == 3  # install, mount, run
    assert "pip install" in ssh[0]
    assert "gcsfuse --implicit-dirs my-bucket /mnt/gcs/my-bucket" in ssh[1]
    assert "synth-jax pretrain --config configs/pretrain/x.py" in ssh[2]
    assert "SYNTH_JAX_DISTRIBUTED=auto" in ssh[2]
    assert steps[-1] == f"+ gcloud compute tpus tpu-vm delete {where} --quiet"
    assert "warning" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--zone", "us-central2-b", "--accelerator", "v4-8"], "--name is required"),
        (["--name", "Bad_Name", "--zone", "us-central2-b", "--accelerator", "v4-8"], "--name"),
        (["--name", "ok", "--zone", "central", "--accelerator", "v4-8"], "--zone 'central'"),
        (["--name", "ok", "--zone", "us-central2-b", "--accelerator", "a100"], "not a TPU type"),
        (["--name", "ok", "--zone", "us-central2-b", "--accelerator", "v4-8"], "nothing to do"),
    ],
)
def test_tpu_pod_rejects_bad_input(args, message):
    result = run("launch/tpu_pod.sh", *args, "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr


def test_tpu_pod_warns_when_the_workdir_is_not_on_the_bucket():
    result = run(
        "launch/tpu_pod.sh",
        "--name",
        "ok",
        "--zone",
        "us-central2-b",
        "--accelerator",
        "v4-8",
        "--bucket",
        "b-1",
        "--dry-run",
        "--no-preflight",
        "--",
        "synth-jax",
        "pretrain",
        "--workdir",
        "runs/x",
    )
    assert result.returncode == 0
    assert "warning" in result.stderr and "/mnt/gcs/b-1" in result.stderr


def fake_synth_jax(tmp_path, status: int) -> dict:
    """An environment whose `synth-jax` records its arguments and exits with `status` (the
    pre-flight's verdict: 0 fits, 1 does not fit)."""
    fake = tmp_path / "synth-jax"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\nexit {status}\n')
    fake.chmod(0o755)
    return {"PATH": f"{tmp_path}:{os.environ['PATH']}"}


POD = (
    "launch/tpu_pod.sh --name frac --zone us-central2-b --accelerator v5p-128 --dry-run "
    "-- synth-jax pretrain --config "
    "configs/c.py:arg --config.batch_size=4096 --workdir /mnt/gcs/b/runs/x"
).split()


def test_tpu_pod_dry_run_compiles_the_config_for_the_slice_first(tmp_path):
    result = run(*POD, env=fake_synth_jax(tmp_path, 0))
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert steps[0].startswith("+ synth-jax compile --topology v5p-128 --out ") and steps[
        0
    ].endswith("--config configs/c.py:arg --config.batch_size=4096")
    assert "tpu-vm create" in steps[1]
    args = (tmp_path / "args").read_text().split()
    assert args[:3] == ["compile", "--topology", "v5p-128"] and "--workdir" not in args


def test_tpu_pod_stops_before_creating_anything_when_the_config_does_not_fit(tmp_path):
    result = run(*POD, env=fake_synth_jax(tmp_path, 1))
    assert result.returncode == 1
    assert "pre-flight failed" in result.stderr and "nothing was created" in result.stderr
    assert "tpu-vm create" not in result.stdout
    skipped = run(*POD[:-8], "--no-preflight", *POD[-8:], env=fake_synth_jax(tmp_path, 1))
    assert skipped.returncode == 0 and "tpu-vm create" in skipped.stdout


def test_slurm_dry_run_shows_the_preflight_for_the_node(tmp_path):
    result = run(
        "launch/slurm.sbatch",
        "--dry-run",
        "synth-jax",
        "pretrain",
        "--config",
        "c.py",
        "--config.mesh.fsdp=2",
        "--workdir",
        "/s/x",
    )
    assert result.returncode == 0, result.stderr
    assert (
        "pre-flight on this node: synth-jax compile --topology local --config c.py "
        "--config.mesh.fsdp=2" in result.stdout
    )


def test_slurm_preflight_of_a_two_node_job_compiles_one_nodes_share(tmp_path):
    env = two_node_job(tmp_path)
    result = run(
        "launch/slurm.sbatch",
        "--dry-run",
        "synth-jax",
        "pretrain",
        "--config",
        "c.py",
        "--workdir",
        "/s/x",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "pre-flight on this node: synth-jax compile --topology local --config c.py "
        "--nodes 2" in result.stdout
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_two_processes_run_a_tiny_pretraining(tmp_path):
    """A real run: two processes over 127.0.0.1, each with 2 CPU devices, one 4-device mesh."""
    workdir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    result = subprocess.run(
        [
            "bash",
            "launch/local.sh",
            "--processes",
            "2",
            "--cpu-devices",
            "2",
            "--port",
            str(_free_port()),
            "--",
            sys.executable,
            "-m",
            "synth_jax",
            "pretrain",
            "--config",
            "configs/pretrain/cpu_tiny.py:mu",
            "--workdir",
            str(workdir),
            "--config.total_steps=6",
            "--config.log_every_steps=3",
            "--config.checkpoint.every_steps=6",
            "--config.data.num_classes=4",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    logs = {
        name: (workdir / "logs" / name).read_text()
        for name in ("process_0.log", "process_1.log")
        if (workdir / "logs" / name).exists()
    }
    assert result.returncode == 0, result.stderr[-2000:] + "".join(logs.values())[-3000:]
    assert len(logs) == 2
    assert "over 4 devices (2 processes" in logs["process_0.log"]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "done" and summary["steps"] == 6
