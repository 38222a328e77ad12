"""Accelerator chips: dense bf16 peak, HBM capacity and HBM bandwidth per chip, from the vendors'
data sheets, exact per chip kind (an H100 PCIe is not an H100 SXM).

    chip = chip_for_device_kind(jax.devices()[0].device_kind)   # None for CPUs
    chip.peak_bf16_flops, chip.hbm_bytes, chip.hbm_bytes_per_s

Used for MFU (model FLOPs/s over the peak) and by `synth-jax compile` (fits in HBM? roofline
step time). Peaks are dense (no 2:4 sparsity): NVIDIA's data sheets print the sparse figure with
an asterisk, twice the dense one. Capacities are the printed figures read as GiB, which is what
they are (an "80GB" H100 shows 79.6 GiB to programs, a "141GB" H200 140.4 GiB, a "16 GB" TPU
v5e 16 GiB), less what the runtime keeps for itself. A JAX device kind maps to a chip by the
patterns below; TPU kinds are matched whole, since "TPU v5" (v5p) begins "TPU v5 lite" (v5e).
"""

from __future__ import annotations

import dataclasses
import re

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    peak_bf16_flops: float  # dense, per chip
    hbm_bytes: float
    hbm_bytes_per_s: float
    source: str

    def row(self) -> str:
        return (
            f"{self.name:<16} {self.peak_bf16_flops / 1e12:7.1f} TFLOP/s  "
            f"{self.hbm_bytes / GIB:6.1f} GiB  {self.hbm_bytes_per_s / 1e12:5.2f} TB/s"
        )


def _sheet(product: str) -> str:
    return f"NVIDIA {product} data sheet, nvidia.com/en-us/data-center/{product.lower()}"


def _tpu(version: str) -> str:
    return f"Cloud TPU {version} system architecture, cloud.google.com/tpu/docs/{version}"


CHIPS = {
    c.name: c
    for c in [
        Chip("H100 SXM", 989.4e12, 80 * GIB, 3.35e12, _sheet("H100")),
        Chip("H100 PCIe", 756.5e12, 80 * GIB, 2.0e12, _sheet("H100")),
        Chip("H100 NVL", 835.5e12, 94 * GIB, 3.9e12, _sheet("H100")),
        Chip("H200 SXM", 989.4e12, 141 * GIB, 4.8e12, _sheet("H200")),
        Chip("H200 NVL", 835.5e12, 141 * GIB, 4.8e12, _sheet("H200")),
        Chip("GH200", 989.4e12, 96 * GIB, 4.0e12, _sheet("GH200")),
        Chip("A100 SXM 80GB", 312e12, 80 * GIB, 2.039e12, _sheet("A100")),
        Chip("A100 SXM 40GB", 312e12, 40 * GIB, 1.555e12, _sheet("A100")),
        Chip("A100 PCIe 80GB", 312e12, 80 * GIB, 1.935e12, _sheet("A100")),
        Chip("A100 PCIe 40GB", 312e12, 40 * GIB, 1.555e12, _sheet("A100")),
        Chip("L4", 121e12, 24 * GIB, 0.3e12, _sheet("L4")),
        Chip("TPU v4", 275e12, 32 * GIB, 1.2e12, _tpu("v4")),
        Chip("TPU v5e", 197e12, 16 * GIB, 0.819e12, _tpu("v5e")),
        Chip("TPU v5p", 459e12, 95 * GIB, 2.765e12, _tpu("v5p")),
        Chip("TPU v6e", 918e12, 32 * GIB, 1.64e12, _tpu("v6e")),
    ]
}

# JAX device_kind (regex, case-insensitive, searched) -> chip name; the first match wins.
_KINDS = [
    (r"H100.*PCIe", "H100 PCIe"),
    (r"H100.*NVL", "H100 NVL"),
    (r"H100", "H100 SXM"),  # "NVIDIA H100 80GB HBM3" is the SXM part
    (r"GH200", "GH200"),  # the 96 GB HBM3 part; its 144 GB HBM3e sibling is faster
    (r"H200.*NVL", "H200 NVL"),
    (r"H200", "H200 SXM"),
    (r"A100.*PCIE.*40GB", "A100 PCIe 40GB"),
    (r"A100.*80GB.*PCIe|A100.*PCIE.*80GB", "A100 PCIe 80GB"),
    (r"A100.*40GB", "A100 SXM 40GB"),
    (r"A100", "A100 SXM 80GB"),
    (r"\bL4\b", "L4"),
    (r"^TPU v4$", "TPU v4"),
    (r"^TPU v5( lite|e)$", "TPU v5e"),
    (r"^TPU v5p?$", "TPU v5p"),
    (r"^TPU v6( lite|e)$", "TPU v6e"),
]


def chip_for_device_kind(kind: str) -> Chip | None:
    """The chip of a JAX `device_kind` string, or None (CPUs, unknown accelerators)."""
    for pattern, name in _KINDS:
        if re.search(pattern, kind, re.IGNORECASE):
            return CHIPS[name]
    return None


def table() -> str:
    """The chip table as text, one chip per line, with its source."""
    return "\n".join(f"{c.row()}  {c.source}" for c in CHIPS.values())
