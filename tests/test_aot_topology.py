"""TPU slice names -> libtpu topologies; bad names are one-line usage errors."""

import importlib.util
import os
import subprocess
import sys

import pytest

from synth_jax.aot import topology
from synth_jax.errors import UsageError

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None


@pytest.mark.parametrize(
    "name, libtpu_name, devices",
    [
        ("v4-8", "v4:2x2x1", 4),
        ("v4-128", "v4:4x4x4", 64),
        ("v5p-16", "v5:2x2x2", 8),
        ("v5p-128", "v5:4x4x4", 64),
        ("v5p-512", "v5:4x8x8", 256),
        ("v5litepod-16", "v5e:4x4", 16),
        ("v5e-8", "v5e:2x4", 8),
        ("v5litepod-256", "v5e:16x16", 256),
        ("v6e-256", "v6e:16x16", 256),
        ("2xv5p-128", "v5:4x4x4", 128),
        ("v5e:4x8", "v5e:4x8", 32),
        ("v5p:4x4x12", "v5:4x4x12", 192),
    ],
)
def test_slice_names(name, libtpu_name, devices):
    target = topology.parse_target(name)
    assert (target.topology, target.devices) == (libtpu_name, devices)


@pytest.mark.parametrize(
    "name, message",
    [
        ("v5p-100", "power-of-two"),
        ("v4-4", "TensorCores"),
        ("v5litepod-512", "N <= 256"),
        ("v7-8", "not a known target"),
        ("h100-8", "not a known target"),
        ("v5e:4x4x4", "2 dimensions"),
    ],
)
def test_bad_names_say_what_to_use(name, message):
    with pytest.raises(UsageError, match=message):
        topology.parse_target(name)


@pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu is not installed (pip install '.[tpu]')")
def test_compile_only_devices_of_a_slice():
    devices = topology.target_devices("v5litepod-16")
    assert len(devices) == 16 and {d.device_kind for d in devices} == {"TPU v5 lite"}
    assert len(topology.target_devices("v5p-16")) == 8  # megacore: one device per chip


@pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu is not installed (pip install '.[tpu]')")
def test_cpu_runs_stay_quiet_with_libtpu_installed():
    # Without a TPU, JAX would start libtpu's runtime at its first device query, which fails
    # after printing warnings; the CLI chooses the CPU first when no accelerator is attached.
    from synth_jax import cli

    if topology.attached_tpu_chips() or any(os.path.exists(n) for n in cli._GPU_NODES):
        pytest.skip("an accelerator is attached")
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "XLA_FLAGS")}
    code = (
        "from synth_jax import cli; cli.choose_cpu_without_accelerators(); import jax; "
        "print(jax.devices()[0].platform)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "cpu"
    assert result.stderr == ""
