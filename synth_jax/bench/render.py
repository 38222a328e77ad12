"""`synth-jax bench render [--size 224 --points 100000 --batch B]`: renderer throughput.

Renders a batch of sigma-factor systems with the jitted, vmapped renderer (median of repeats after
a warm-up, `block_until_ready`), and the NumPy sequential reference on the same run, and prints
one JSON line: images_per_sec, points_per_sec, device, reference_points_per_sec, ...

`synth-jax bench render --config configs/data/<family>.py [--config.KEY=VALUE ...]` times a
whole family instead: index -> image through `FractalDataset.render` (table built first, not
timed), fresh indices each repeat; JSON: family, images_per_sec, batch, size, mean_fill, ...;
for the families with a sequential reference (visualatom, rcdb, dead_leaves, spectrum) also
reference_images_per_sec, timed on the same indices.
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
from synth_jax.fractals import FractalDataset
from synth_jax.fractals.engine import ifs, render
from synth_jax.fractals.families import sigma
from synth_jax.fractals.references import chaos_game as reference
from synth_jax.fractals.references import contours as reference_contours
from synth_jax.fractals.references import noise as reference_noise


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
    return {
        "compile_and_first_s": round(compile_s, 3),
        "batch_s_median": round(median, 5),
        "batch_s_min": round(min(times), 5),
    }


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


# -- families rendered through their dataset (contours, noise) ---------------------------------
def _reference_visualatom(dataset, rng, index):
    row = {k: v[index // dataset.images_per_category] for k, v in dataset.table.arrays.items()}
    cfg = dataset.config
    return reference_contours.visualatom_image(row, rng, cfg.canvas_size, cfg.image_size)


def _reference_rcdb(dataset, rng, index):
    row = {k: v[index // dataset.images_per_category] for k, v in dataset.table.arrays.items()}
    return reference_contours.rcdb_image(row, rng, dataset.config)


def _reference_dead_leaves(dataset, rng, index):
    cfg = dataset.config
    return reference_noise.dead_leaves_image(rng, cfg.image_size, cfg.shapes, cfg.max_shapes)


def _reference_spectrum(dataset, rng, index):
    cfg = dataset.config
    return reference_noise.spectrum_image(
        rng, cfg.image_size, (cfg.min_slope, cfg.max_slope), cfg.anisotropy
    )


# family -> fn(dataset, rng, index): one image of its sequential reference
FAMILY_REFERENCES = {
    "visualatom": _reference_visualatom,
    "rcdb": _reference_rcdb,
    "dead_leaves": _reference_dead_leaves,
    "spectrum": _reference_spectrum,
}


def bench_family(config, batch: int, repeats: int, reference_images: int = 0) -> dict:
    """Median seconds per batch of a family's render(seed, indices), indices walking the epoch;
    with `reference_images` > 0, the images/s of its sequential reference (where it has one) on
    the first batch's indices."""
    dataset = FractalDataset(config, progress=True)
    fn = jax.jit(dataset.render_with_info)
    steps = jax.jit(lambda s: dataset.indices_for_step(0, s, batch))
    t0 = time.perf_counter()
    _, _, info = jax.block_until_ready(fn(0, steps(0)))
    compile_s = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        indices = jax.block_until_ready(steps(r + 1))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(0, indices))
        times.append(time.perf_counter() - t0)
    result = {
        "family": config.family,
        "num_classes": dataset.num_classes,
        "compile_and_first_s": round(compile_s, 3),
        "batch_s_median": round(statistics.median(times), 5),
        "batch_s_min": round(min(times), 5),
        "mean_fill": round(float(np.mean(info["fill"])), 4),
        "degenerate": int(np.sum(info["degenerate"])),
    }
    for key in ("canvas_size", "stroke_samples", "shapes", "max_shapes"):
        if key in config:
            result[key] = config[key]
    if "overflow" in info:
        result["overflow"] = int(np.sum(info["overflow"]))
    make = FAMILY_REFERENCES.get(config.family)
    if make is not None and reference_images > 0:
        first = np.asarray(steps(0))
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for k in range(reference_images):
            make(dataset, rng, int(first[k % batch]))
        result["reference_images_per_sec"] = round(reference_images / (time.perf_counter() - t0), 3)
    return result


def main_family(config, argv: list[str]) -> int:
    """`bench render --config ...`: one family's images/s (JSON line)."""
    parser = ArgumentParser(
        prog="synth-jax bench render --config FILE.py", description="a family's render throughput"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="images per call (default: 32 on CPU, 256 on accelerators)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--reference_images",
        type=int,
        default=4,
        help="images for the sequential reference timing (families that have "
        "one: visualatom, rcdb, dead_leaves, spectrum); 0: skip it",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.batch is not None and args.batch < 1):
        raise UsageError("--batch and --repeats must be positive")
    if args.reference_images < 0:
        raise UsageError("--reference_images must be 0 or more")
    device = jax.devices()[0]
    batch = args.batch or (32 if device.platform == "cpu" else 256)
    timing = bench_family(config, batch, args.repeats, args.reference_images)
    images_per_sec = batch / timing["batch_s_median"]
    result = {
        "bench": "render",
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "size": int(config.image_size),
        "batch": batch,
        "images_per_sec": round(images_per_sec, 2),
        "repeats": args.repeats,
        **timing,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    ref = timing.get("reference_images_per_sec")
    if ref:
        result["speedup_vs_reference"] = round(images_per_sec / ref, 1)
    print(json.dumps(result))
    return 0


def main(argv: list[str]) -> int:
    config, argv = config_from_argv(argv, required=False)
    if config is not None:
        return main_family(config, argv)
    parser = ArgumentParser(prog="synth-jax bench render", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224, help="image size in pixels")
    parser.add_argument("--points", type=int, default=100_000, help="points per image")
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="images per call (default: 32 on CPU, 1024 on accelerators)",
    )
    parser.add_argument("--chains", type=int, default=1024, help="parallel chains per image")
    parser.add_argument("--burn_in", type=int, default=24)
    parser.add_argument("--patch", choices=("point", "stamp", "none"), default="point")
    parser.add_argument("--colour", choices=("gray", "hsv"), default="gray")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--reference_points",
        type=int,
        default=20_000,
        help="points for the (slow) NumPy reference timing",
    )
    args = parser.parse_args(argv)
    if not 32 <= args.size <= 512:
        raise UsageError(f"--size {args.size}: expected 32..512")
    for flag in ("points", "chains", "repeats", "reference_points"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} {getattr(args, flag)}: expected a positive integer")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch {args.batch}: expected a positive integer")
    if args.burn_in < 0:
        raise UsageError(f"--burn_in {args.burn_in}: expected a non-negative integer")
    device = jax.devices()[0]
    batch = args.batch or (32 if device.platform == "cpu" else 1024)
    spec = render.RenderSpec(
        image_size=args.size,
        points=args.points,
        chains=min(args.chains, args.points),
        burn_in=args.burn_in,
        patch=args.patch,
        colour=args.colour,
    )
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
