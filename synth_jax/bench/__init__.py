"""`synth-jax bench WHAT`: benchmarks that print JSON (and are recorded in BENCHMARKS.md).

Each benchmark is a module here with `main(argv) -> int`: render, train, fit, suite.
"""

from __future__ import annotations

import importlib

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
