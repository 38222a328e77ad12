"""`synth-jax bench render [--size 224 --points 100000 --batch B]`: renderer throughput.

Renders a batch of sigma-factor systems with the jitted, vmapped renderer (median of repeats after
a warm-up, `block_until_ready`), and the NumPy sequential reference on the same run, and prints
one JSON line: images_per_sec, points_per_sec, device, reference_points_per_sec, ...

`synth-jax bench render --config configs/data/<family>.py [--config.KEY=VALUE ...]` times a
whole family instead: index -> image through `FractalDataset.render` (table built first, not
timed), fresh indices each repeat; JSON: family, images_per_sec, batch, size, ...
"""

from __future__ import annotations

import json
import os
import statistics
import time

import jax
import numpy as np

from synth_jax.config import config_from_argv
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.fractals import FractalDataset, ifs, reference, render, sigma


def _systems(batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            ifs.pad_maps(sigma.sample_sigma_system(rng, int(rng.integers(2, 5))))
            for _ in range(batch)
        ]
    ).astype(np.float32)


def bench_device(spec: render.RenderSpec, batch: int, repeats: int, seed: int = 0) -> dict:
    """Median seconds per batch of the full render (chaos game, rasterise, patches, colour)."""
    params = jax.device_put(_systems(batch, seed))
    keys = jax.random.split(jax.random.key(seed), batch)
    flips = jax.numpy.zeros(batch, jax.numpy.int32)
    fn = jax.jit(lambda p, k: render.render_batch(p, k, k, flips, spec))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(params, keys))
    compile_s = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        keys = jax.random.split(jax.random.key(seed + 1 + r), batch)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(params, keys))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"compile_and_first_s": round(compile_s, 3), "batch_s_median": round(median, 5),
            "batch_s_min": round(min(times), 5)}  # fmt: skip


def bench_reference(size: int, points: int, repeats: int = 3) -> float:
    """Points per second of the NumPy sequential chaos game + rasteriser (one image)."""
    params = _systems(1, 0)[0].astype(np.float64)
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        pts = reference.chaos_game(params, points, np.random.default_rng(r))
        reference.occupancy(pts, size, 6)
        rates.append(points / (time.perf_counter() - t0))
    return statistics.median(rates)


def bench_family(config, batch: int, repeats: int) -> dict:
    """Median seconds per batch of a family's render(seed, indices), indices walking the epoch."""
    dataset = FractalDataset(config, progress=True)
    fn = jax.jit(dataset.render)
    steps = jax.jit(lambda s: dataset.indices_for_step(0, s, batch))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(0, steps(0)))
    compile_s = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        indices = jax.block_until_ready(steps(r + 1))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(0, indices))
        times.append(time.perf_counter() - t0)
    return {"family": config.family, "num_classes": dataset.num_classes,
            "compile_and_first_s": round(compile_s, 3),
            "batch_s_median": round(statistics.median(times), 5),
            "batch_s_min": round(min(times), 5)}  # fmt: skip


def main_family(config, argv: list[str]) -> int:
    """`bench render --config ...`: one family's images/s (JSON line)."""
    parser = ArgumentParser(prog="synth-jax bench render --config FILE.py",
                            description="a family's render throughput")  # fmt: skip
    parser.add_argument("--batch", type=int, default=None, help="images per call (default: 32 "
                        "on CPU, 256 on accelerators)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.batch is not None and args.batch < 1):
        raise UsageError("--batch and --repeats must be positive")
    device = jax.devices()[0]
    batch = args.batch or (32 if device.platform == "cpu" else 256)
    timing = bench_family(config, batch, args.repeats)
    result = {
        "bench": "render",
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "size": int(config.image_size),
        "batch": batch,
        "images_per_sec": round(batch / timing["batch_s_median"], 2),
        "repeats": args.repeats,
        **timing,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


def main(argv: list[str]) -> int:
    config, argv = config_from_argv(argv, required=False)
    if config is not None:
        return main_family(config, argv)
    parser = ArgumentParser(prog="synth-jax bench render", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224, help="image size in pixels")
    parser.add_argument("--points", type=int, default=100_000, help="points per image")
    parser.add_argument("--batch", type=int, default=None, help="images per call (default: 32 "
                        "on CPU, 1024 on accelerators)")  # fmt: skip
    parser.add_argument("--chains", type=int, default=1024, help="parallel chains per image")
    parser.add_argument("--burn_in", type=int, default=24)
    parser.add_argument("--patch", choices=("point", "stamp", "none"), default="point")
    parser.add_argument("--colour", choices=("gray", "hsv"), default="gray")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference_points", type=int, default=20_000,
                        help="points for the (slow) NumPy reference timing")  # fmt: skip
    args = parser.parse_args(argv)
    if not 32 <= args.size <= 512:
        raise UsageError(f"--size {args.size}: expected 32..512")
    if args.points < 1 or args.repeats < 1:
        raise UsageError("--points and --repeats must be positive")
    device = jax.devices()[0]
    batch = args.batch or (32 if device.platform == "cpu" else 1024)
    spec = render.RenderSpec(
        image_size=args.size, points=args.points, chains=min(args.chains, args.points),
        burn_in=args.burn_in, patch=args.patch, colour=args.colour,
    )  # fmt: skip
    timing = bench_device(spec, batch, args.repeats)
    images_per_sec = batch / timing["batch_s_median"]
    ref = bench_reference(args.size, args.reference_points)
    points_per_sec = images_per_sec * args.points
    result = {
        "bench": "render",
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "size": args.size,
        "points": args.points,
        "batch": batch,
        "chains": spec.chains,
        "burn_in": spec.burn_in,
        "patch": spec.patch,
        "colour": spec.colour,
        "images_per_sec": round(images_per_sec, 2),
        "points_per_sec": round(points_per_sec),
        "reference_points_per_sec": round(ref),
        "speedup_vs_reference": round(points_per_sec / ref, 1),
        "repeats": args.repeats,
        **timing,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0
