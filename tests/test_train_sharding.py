"""The same training run on 1 device, 4 devices (data parallel and FSDP) and 2 processes x 2
devices ends with the same parameters; FSDP splits the state across devices."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from test_train_sources import BlobImages, child_env, tiny_config

from synth_jax.train import checkpoint, trainer

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_train_sources.py")
STEPS = 6


def assert_params_close(a, b):
    # Sums over differently split batches round differently; Adam's normalised steps (up to lr
    # = 1e-3 each) can turn a near-zero gradient's rounding into a visible change.
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """4 devices, data parallel."""
    workdir = tmp_path_factory.mktemp("dp4")
    summary, _ = trainer.train(tiny_config(STEPS), str(workdir), BlobImages(), num_classes=4)
    return summary, checkpoint.load_params(str(workdir))[0]


def test_one_device_equals_four_devices(reference, tmp_path):
    result = subprocess.run(
        [sys.executable, CHILD, str(tmp_path), str(STEPS)],
        env=child_env(1),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "over 1 devices" in result.stderr
    assert_params_close(checkpoint.load_params(str(tmp_path))[0], reference[1])


def test_fsdp_equals_data_parallel_with_a_quarter_of_the_state(reference, tmp_path):
    summary, _ = trainer.train(
        tiny_config(STEPS, data=1, fsdp=4), str(tmp_path), BlobImages(), num_classes=4
    )
    assert summary["mesh"]["fsdp"] == 4
    assert_params_close(checkpoint.load_params(str(tmp_path))[0], reference[1])
    # parameters + Adam moments: each device holds ~1/4 (biases of odd sizes stay replicated)
    ratio = summary["state_bytes_per_device"] / reference[0]["state_bytes_per_device"]
    assert ratio < 0.3, ratio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(reference, tmp_path):
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                CHILD,
                str(tmp_path),
                str(STEPS),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=child_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert "over 4 devices (2 processes" in outputs[0][1]
    assert_params_close(checkpoint.load_params(str(tmp_path))[0], reference[1])
