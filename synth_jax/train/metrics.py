"""Training metrics: JSONL rows and TensorBoard event files in the workdir, and a progress line.

The trainer hands over each step's metrics (device scalars) one step late, so that fetching them
never makes the host wait for the device: when step t is dispatched, step t-1 has finished.
Each row is appended in one write and holds no NaN (null instead: JSON has none); a last line
cut short (a kill during the write, a full disk) is dropped with a note when the run resumes.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from synth_jax.files import append_line, finite_json, write_text
from synth_jax.progress import Progress

# Dense bf16 peak FLOP/s per device, for MFU (vendor data sheets; no sparsity).
PEAK_BF16_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
}


def peak_flops_per_device() -> float | None:
    """The bf16 peak of this device kind, or None when unknown (CPUs)."""
    kind = jax.devices()[0].device_kind
    for name in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if name.lower() in kind.lower():
            return PEAK_BF16_FLOPS[name]
    return None


def read_rows(path: str) -> tuple[list[dict], int]:
    """(the rows of a metrics JSONL file, the number of lines that are not a JSON object: a
    write cut short). Never raises on the file's content."""
    rows, bad = [], 0
    if not os.path.exists(path):
        return rows, bad
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:  # also UnicodeDecodeError
                row = None
            if isinstance(row, dict) and isinstance(row.get("step", 0), int):
                rows.append(row)
            else:
                bad += 1
    return rows, bad


def truncate_jsonl(path: str, last_step: int, log=print):
    """Drops rows after `last_step` (a resumed run rewrites them, so the file has no duplicates)
    and lines that are not rows (a last line cut short), saying so; the file is rewritten
    whole (atomically), so that the next row starts on a line of its own."""
    if not os.path.exists(path):
        return
    rows, bad = read_rows(path)
    kept = [r for r in rows if r.get("step", 0) <= last_step]
    if bad:
        log(f"{path}: dropped {bad} unreadable line(s) (a write cut short)")
    with open(path, "rb") as f:
        whole = f.read()
    if bad or len(kept) != len(rows) or (whole and not whole.endswith(b"\n")):
        write_text(path, "".join(json.dumps(finite_json(r)) + "\n" for r in kept))


class MetricWriter:
    """Writes one row per logged step to metrics.jsonl and TensorBoard; only process 0 writes."""

    def __init__(
        self, workdir: str, total_steps: int, start_step: int, label: str = "train", log=print
    ):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if self.active:
            truncate_jsonl(self.path, start_step, log)
            try:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:  # TensorBoard files are a convenience; JSONL is the record
                self.tb = None
            self.progress = Progress(total_steps, label, unit="steps", start=start_step)
        self.last_row: dict = {}

    def write(self, step: int, metrics: dict, extra: str = ""):
        row = {"step": int(step)}
        for k, v in metrics.items():
            v = np.asarray(v).item() if not isinstance(v, (int, float, str)) else v
            row[k] = v
        row = finite_json(row)
        self.last_row = row
        if not self.active:
            return
        append_line(self.path, json.dumps(row, allow_nan=False))
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and v == v:
                    self.tb.add_scalar(k, v, step)
        shown = [k for k in ("loss", "accuracy", "lr") if isinstance(row.get(k), float)]
        shown += [k for k in row if k.endswith("/top1") and isinstance(row[k], float)]
        show = " ".join(f"{k}={row[k]:.4g}" for k in shown)
        self.progress.update(step, (show + " " + extra).strip())

    def close(self):
        if self.active:
            if self.progress.tty:  # a non-TTY log already has its last line
                self.progress.close()
            if self.tb is not None:
                self.tb.close()


class Throughput:
    """Images/s and MFU between two log points, from wall time and the compiled step's FLOPs."""

    def __init__(self, images_per_step: int, flops_per_device_step: float | None):
        self.images_per_step = images_per_step
        self.flops_per_step = flops_per_device_step  # the partitioned program runs on each device
        self.peak = peak_flops_per_device()
        self.t = time.perf_counter()
        self.step = None

    def exclude(self, seconds: float) -> None:
        """Leaves `seconds` of host work (an evaluation) out of the next interval."""
        self.t += seconds

    def measure(self, step: int) -> dict:
        now = time.perf_counter()
        out = {}
        if self.step is not None and step > self.step:
            dt = (now - self.t) / (step - self.step)
            out["step_time_s"] = dt
            out["images_per_s"] = self.images_per_step / dt
            if self.flops_per_step and self.peak:
                out["mfu"] = self.flops_per_step / dt / self.peak
        self.t, self.step = now, step
        return out
