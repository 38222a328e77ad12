"""Training metrics: JSONL rows and TensorBoard event files in the workdir, and a progress line.

The trainer hands over each step's metrics (device scalars) one step late, so that fetching them
never makes the host wait for the device: when step t is dispatched, step t-1 has finished.
Each row is appended in one write and holds no NaN (null instead: JSON has none); a last line
cut short (a kill during the write, a full disk) is dropped with a note when the run resumes.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np

from synth_jax import chips
from synth_jax.files import append_line, finite_json, write_text
from synth_jax.progress import Progress


def log_line(message: str) -> None:
    """One line of the run's log: stderr, on process 0 only."""
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


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
    """Images/s, MFU and HFU between two log points, from wall time.

    MFU = model FLOPs per step (synth_jax.models.flops: the formula, 3 x forward, attention
    included) / step time / the bf16 peak of all the run's chips (synth_jax.chips, exact per
    chip kind). HFU is the same with XLA's count of the step's FLOPs instead (all it executes:
    the renderer, augmentation and optimiser too). Both are None where the peak is unknown
    (CPUs)."""

    def __init__(
        self,
        images_per_step: int,
        model_flops_per_step: float | None,
        hardware_flops_per_step: float | None = None,
        device_kind: str | None = None,
        num_devices: int | None = None,
    ):
        self.images_per_step = images_per_step
        self.model_flops = model_flops_per_step
        self.hardware_flops = hardware_flops_per_step
        chip = chips.chip_for_device_kind(device_kind or jax.devices()[0].device_kind)
        devices = num_devices or jax.device_count()
        self.peak = chip.peak_bf16_flops * devices if chip else None
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
            if self.peak and self.model_flops:
                out["mfu"] = self.model_flops / dt / self.peak
            if self.peak and self.hardware_flops:
                out["hfu"] = self.hardware_flops / dt / self.peak
        self.t, self.step = now, step
        return out
