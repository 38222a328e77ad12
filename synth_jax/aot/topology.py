"""Compile targets: a TPU slice by its usual name, as devices that XLA can compile for from any
machine (libtpu's compile-only devices, through `jax.experimental.topologies`), or this
machine's own devices.

    devices = target_devices("v5p-128")   # 64 compile-only TPU v5p devices (megacore chips)
    devices = target_devices("local")     # jax.devices()

Names: `v4-N` and `v5p-N` count TensorCores (two per chip, one JAX device per chip), `v5litepod-N`
(or `v5e-N`) and `v6e-N` count chips; `2xv5p-128` is two slices (multi-slice, joined over the
data-centre network); `v5e:4x4` or `v5:4x4x4` name libtpu's topology directly. Slice shapes
are the standard ones for power-of-two sizes: v4/v5p chips double the shortest side of a
2x2x1 cube (2x2x2, 2x2x4, 2x4x4, 4x4x4, ...), v5e/v6e chips fill 2-D grids up to 16x16.

libtpu is the `tpu` extra (`pip install 'synth_jax[tpu]'`, pinned to what pairs with JAX).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import math
import os
import re

from synth_jax.errors import UsageError

# slice family -> (libtpu's topology prefix, cores per chip counted in the name, 3-D?)
_FAMILIES = {
    "v4": ("v4", 2, True),
    "v5p": ("v5", 2, True),
    "v5litepod": ("v5e", 1, False),
    "v5e": ("v5e", 1, False),
    "v6e": ("v6e", 1, False),
}
_PREFIXES = {"v4": 3, "v5": 3, "v5p": 3, "v5e": 2, "v6e": 2}  # libtpu name -> dimensions

NAMES_HELP = (
    "a TPU slice such as v4-128, v5p-128, v5litepod-16 (or v5e-16), v6e-256, 2xv5p-128 "
    "(two slices), a libtpu topology such as v5e:4x4, or 'local' (this machine's devices)"
)


@dataclasses.dataclass(frozen=True)
class Target:
    name: str  # as given
    topology: str  # libtpu's name, e.g. "v5:4x4x4"
    chips: int  # per slice
    slices: int
    megacore: bool  # v4 / v5p: one device per chip of two TensorCores

    @property
    def devices(self) -> int:
        return self.chips * self.slices


def _grid_3d(chips: int) -> tuple[int, ...]:
    if chips == 4:
        return (2, 2, 1)
    dims = [2, 2, 1]
    while math.prod(dims) < chips:
        dims.sort()
        dims[0] *= 2
    return tuple(sorted(dims))


def _grid_2d(chips: int) -> tuple[int, ...]:
    dims = [1, 1]
    while math.prod(dims) < chips:
        dims.sort()
        dims[0] *= 2
    return tuple(sorted(dims))


def parse_target(name: str) -> Target:
    """A slice name -> Target; raises UsageError naming what is wrong."""
    text = name.strip()
    slices = 1
    multi = re.fullmatch(r"(\d+)x(v.+)", text)
    if multi:
        slices, text = int(multi.group(1)), multi.group(2)
        if slices < 1:
            raise UsageError(f"--topology {name!r}: the number of slices must be positive")
    direct = re.fullmatch(r"(v4|v5p?|v5e|v6e):(\d+(?:x\d+)*)", text)
    if direct:
        prefix, dims = direct.group(1), tuple(int(d) for d in direct.group(2).split("x"))
        if len(dims) != _PREFIXES[prefix] or min(dims) < 1:
            raise UsageError(
                f"--topology {name!r}: a {prefix} topology has {_PREFIXES[prefix]} dimensions"
            )
        prefix = "v5" if prefix == "v5p" else prefix
        return Target(
            name,
            f"{prefix}:{direct.group(2)}",
            math.prod(dims),
            slices,
            megacore=_PREFIXES[prefix] == 3,
        )
    match = re.fullmatch(r"(v4|v5p|v5litepod|v5e|v6e)-(\d+)", text)
    if not match:
        raise UsageError(f"--topology {name!r} is not a known target; use {NAMES_HELP}")
    family, count = match.group(1), int(match.group(2))
    prefix, cores_per_chip, three_d = _FAMILIES[family]
    chips = count // cores_per_chip
    largest = 8192 if three_d else 256
    if count % cores_per_chip or chips < (4 if three_d else 1) or chips > largest:
        raise UsageError(
            f"--topology {name!r}: {family}-N counts "
            f"{'TensorCores (2 per chip), N >= 8' if three_d else f'chips, N <= {largest}'}"
        )
    if chips & (chips - 1):
        raise UsageError(
            f"--topology {name!r}: only power-of-two sizes have a standard shape; name the "
            f"shape instead, e.g. {prefix}:{'4x4x12' if three_d else '8x12'}"
        )
    dims = _grid_3d(chips) if three_d else _grid_2d(chips)
    return Target(name, f"{prefix}:{'x'.join(map(str, dims))}", chips, slices, three_d)


# PCI device ids of TPU chips (vendor 0x1ae0, Google; its other devices, such as gVNIC, are not
# TPUs): v3, v4, v5p, v5e, v6e, 7x.
_TPU_PCI_IDS = {"0x0027", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"}


def attached_tpu_chips() -> int:
    """The TPU chips on this machine's PCI bus (0 on a machine without TPUs)."""
    count = 0
    for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(vendor) as f:
                if f.read().strip() != "0x1ae0":
                    continue
            with open(os.path.join(os.path.dirname(vendor), "device")) as f:
                count += f.read().strip() in _TPU_PCI_IDS
        except OSError:
            continue
    return count


def _libtpu_missing() -> UsageError:
    return UsageError(
        "compiling for a TPU slice needs libtpu: pip install 'synth_jax[tpu]' (any Linux "
        "machine; no TPU needed)"
    )


@contextlib.contextmanager
def _quiet_stderr():
    """libtpu writes start-up warnings meant for TPU VMs (no accelerator type, no worker
    hostnames) straight to file descriptor 2; a compile-only target has neither. Its errors
    reach the caller as exceptions."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def target_devices(name: str) -> list:
    """The devices of a target: compile-only TPU devices for a slice, or jax.devices()."""
    import jax

    if name == "local":
        return jax.devices()
    target = parse_target(name)
    try:
        import libtpu  # noqa: F401  (the tpu extra)
    except ImportError:
        raise _libtpu_missing() from None
    from jax.experimental import topologies

    if not attached_tpu_chips():
        # libtpu lets one process at a time load it (a lock file), to share a TPU VM's chips;
        # compile-only devices use no chip, so compiles may run side by side.
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    kwargs = {"num_slices": target.slices} if target.slices > 1 else {}
    if target.megacore:
        kwargs["chip_config_name"] = "megacore"
    dims = [int(d) for d in target.topology.split(":")[1].split("x")]
    if math.prod(dims) < 4:  # a host holds 2x2 chips unless the slice is smaller
        kwargs["chips_per_host_bounds"] = tuple(dims) + (1,) * (3 - len(dims))
    try:
        with _quiet_stderr():
            topology = topologies.get_topology_desc(
                platform="tpu", topology_name=target.topology, **kwargs
            )
    except Exception as e:  # libtpu's own message names the problem
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"--topology {name!r} ({target.topology}): {message}") from None
    return list(topology.devices)
