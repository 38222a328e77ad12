"""`synth-jax bench WHAT`: benchmarks that print JSON (and are recorded in BENCHMARKS.md).

Each benchmark is a module here with `main(argv) -> int`: render, train, fit, suite.
"""

from __future__ import annotations

import importlib
import time

import numpy as np

from synth_jax.errors import UsageError

BENCHES = {
    "render": "fractal renderer: images/s and points/s, beside the NumPy reference",
    "train": "training step: images/s, step time, MFU, data-stall ratio",
    "fit": "scaling-law fitter: bootstrap fits/s, beside a SciPy loop",
    "suite": "all of the above at the published settings, with the device's ceilings, as a table",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: synth-jax bench {" + "|".join(BENCHES) + "} [args]")
        for name, help_ in BENCHES.items():
            print(f"  {name:<7} {help_}")
        return 0
    what, rest = argv[0], argv[1:]
    if what not in BENCHES:
        raise UsageError(f"unknown benchmark {what!r}; one of: {', '.join(BENCHES)}")
    return int(importlib.import_module(f"synth_jax.bench.{what}").main(rest) or 0)


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall seconds, median process CPU seconds (all threads) and the last result. On a
    shared machine wall time stretches with the load while CPU time does not."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus)), out
