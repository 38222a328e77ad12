"""`synth-jax bench suite`: the whole benchmark suite in one command, written as a table.

    synth-jax bench suite --out bench_out            # on a GPU: the settings below, ~10-15 min
    synth-jax bench suite --quick --out bench_out    # tiny settings: checks the suite on a CPU

It first measures the device's two ceilings (a large bf16 matrix product: FLOP/s; a large
device-to-device copy: bytes/s read+written), so every number below can be read against its floor.
Then it runs each benchmark in a fresh process (`synth-jax bench render|train ...`: device memory
is released between them and one failure does not hide the others) and writes
`OUT/suite.json` (every result) and `OUT/suite.md` (the table for BENCHMARKS.md), and prints
the table.

The full settings follow the targets in BENCHMARKS.md: the renderer at 224 px / 100k points
(sigma-factor), FractalDB's 362 px / 200k points (and the time to render all 1M FractalDB-1k
images), 1p-frac at 512 px and 224 px, VisualAtom and RCDB at 224 px (strokes on the 512
canvas), dead leaves and Spectrum at 128 px; ViT-Ti/16 with rendering inside the step vs a
fixed batch (the data-stall ratio), ViT-B/16 bf16 MFU, ResNet-50; and whole families (index ->
image: multi-instance fractals, OFDB, a mixture) through `synth-jax bench render --config`.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.files import write_json, write_text

# (label, args of `synth-jax bench render`)
RENDER_FULL = [
    ("sigma 224px 100k pts", ["--size", "224", "--points", "100000", "--patch", "stamp"]),
    ("FractalDB 362px 200k pts", ["--size", "362", "--points", "200000", "--patch", "point"]),
    ("1p-frac 512px 100k pts", ["--size", "512", "--points", "100000", "--patch", "point"]),
    ("1p-frac 224px 100k pts", ["--size", "224", "--points", "100000", "--patch", "point"]),
]
RENDER_QUICK = [
    (
        "sigma 64px 10k pts",
        "--size 64 --points 10000 --batch 8 --repeats 2 --reference_points 2000".split(),
    ),
]
# (label, args of `synth-jax bench train`)
TRAIN_FULL = [
    ("ViT-Ti/16 224px", ["--model", "Ti/16", "--image-size", "224", "--batch", "256"]),
    # the same step rendering 32 images at a time (what the pod configs do to compile faster)
    (
        "ViT-Ti/16 224px, render chunk 32",
        ["--model", "Ti/16", "--image-size", "224", "--batch", "256", "--render-chunk", "32"],
    ),
    ("ViT-B/16 224px", ["--model", "B/16", "--image-size", "224", "--batch", "256"]),
    ("ResNet-50 224px", ["--model", "ResNet-50", "--image-size", "224", "--batch", "256"]),
]
TRAIN_QUICK = [
    (
        "ViT-mu/4 32px",
        (
            "--model mu/4 --image-size 32 --batch 8 --steps "
            "8 --classes 10 --points 2000 --dtype float32"
        ).split(),
    ),
]
# (label, args of `synth-jax bench render --config ...`): whole families, index -> image; fewer
# classes than published (the table build is not timed; a family's images/s does not depend on it).
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "configs")
MIXTURE_SMALL = [
    "--config.components.fractaldb.num_classes=64",
    "--config.components.ofdb.num_classes=32",
    "--config.components.sigma.num_classes=32",
    "--config.num_classes=128",
]
FAMILY_FULL = [
    # Anderson & Farrell's multi-instance images, OFDB, a mixture of three families
    (
        "multi_instance 224px, 1-5 x 100k pts",
        ["--config", f"{CONFIGS}/data/multi_instance_1k.py", "--config.num_classes=100"],
    ),
    ("OFDB 362px 200k pts", ["--config", f"{CONFIGS}/data/ofdb_1k.py", "--config.num_classes=64"]),
    (
        "mixture FractalDB/OFDB/sigma 224px",
        ["--config", f"{CONFIGS}/data/mixture.py", *MIXTURE_SMALL],
    ),
    # the contour and noise families at their training sizes (orbits: strokes on the 512 canvas)
    (
        "VisualAtom 224px",
        [
            "--config",
            f"{CONFIGS}/data/visualatom1k.py",
            "--config.image_size=224",
            "--batch",
            "256",
        ],
    ),
    (
        "RCDB 224px",
        ["--config", f"{CONFIGS}/data/rcdb1k.py", "--config.image_size=224", "--batch", "256"],
    ),
    ("dead leaves 128px", ["--config", f"{CONFIGS}/data/dead_leaves.py", "--batch", "256"]),
    ("Spectrum 128px", ["--config", f"{CONFIGS}/data/spectrum.py", "--batch", "256"]),
]
FAMILY_QUICK = [
    (
        "OFDB 64px 10k pts",
        [
            "--config",
            f"{CONFIGS}/data/ofdb_1k.py",
            "--config.num_classes=4",
            "--config.image_size=64",
            "--config.points=10000",
            "--config.search_points=8192",
            "--config.search_size=64",
            "--config.fill_threshold=0.05",
            "--batch",
            "8",
            "--repeats",
            "2",
        ],
    ),
]
# 32 px, one sequential reference image each; the orbit families on a 128 canvas
QUICK = ["--batch", "4", "--repeats", "2", "--reference_images", "1"]
ORBITS_QUICK = ["--config.canvas_size=128", "--config.stroke_samples=16384"]
FAMILY_QUICK += [
    (
        "VisualAtom 32px",
        [
            "--config",
            f"{CONFIGS}/data/visualatom1k.py",
            "--config.image_size=32",
            *ORBITS_QUICK,
            *QUICK,
        ],
    ),
    (
        "RCDB 32px",
        ["--config", f"{CONFIGS}/data/rcdb1k.py", "--config.image_size=32", *ORBITS_QUICK, *QUICK],
    ),
    (
        "dead leaves 32px",
        ["--config", f"{CONFIGS}/data/dead_leaves.py", "--config.image_size=32", *QUICK],
    ),
    (
        "Spectrum 32px",
        ["--config", f"{CONFIGS}/data/spectrum.py", "--config.image_size=32", *QUICK],
    ),
]
FRACTALDB_1K_IMAGES = 1_000_000


def _time(fn, repeats: int) -> float:
    """Median seconds of fn() (which blocks until its result is ready), after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_ceilings(quick: bool) -> dict:
    """The device's bf16 matrix-product rate and copy bandwidth, measured (not the datasheet)."""
    n = 512 if quick else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)  # random, never zeros
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    matmul = jax.jit(lambda a, b: a @ b)
    t_mm = _time(lambda: matmul(a, b).block_until_ready(), 5 if quick else 20)
    words = (1 << 22) if quick else (1 << 28)  # 1 GiB of float32 on a GPU
    x = jax.random.normal(jax.random.key(2), (words,), jnp.float32)
    copy = jax.jit(lambda x: x * 1.0001)  # reads and writes every element once, not elided
    t_cp = _time(lambda: copy(x).block_until_ready(), 5 if quick else 20)
    return {
        "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
        "jax": jax.__version__,
        "matmul_n": n,
        "bf16_matmul_tflops": round(2 * n**3 / t_mm / 1e12, 2),
        "copy_bytes": 8 * words,
        "copy_gb_per_s": round(8 * words / t_cp / 1e9, 1),
    }


def run_bench(kind: str, args: list[str], timeout_s: int) -> dict:
    """Runs `synth-jax bench KIND ARGS` in a fresh process; returns its JSON or the error."""
    cmd = [sys.executable, "-m", "synth_jax", "bench", kind, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def _fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: dict) -> str:
    c = results["ceilings"]
    lines = [
        f"Device: {c['device']}, JAX {c['jax']}, {results['date']}, `{results['command']}`",
        "",
        f"Ceilings (measured): bf16 matmul {c['bf16_matmul_tflops']} TFLOP/s (n={c['matmul_n']}), "
        f"copy {c['copy_gb_per_s']} GB/s (read+write)",
        "",
        "| renderer | images/s | points/s | sequential reference (points/s) | speed-up |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, r in results["render"]:
        if "error" in r:
            lines.append(f"| {label} | error: {r['error']} | | | |")
            continue
        lines.append(
            f"| {label} | {_fmt(r['images_per_sec'])} | {r['points_per_sec']:.3g} | "
            f"{r['reference_points_per_sec']:.3g} | {_fmt(r['speedup_vs_reference'])}x |"
        )
    fdb = dict(results["render"]).get(RENDER_FULL[1][0])
    if fdb and "images_per_sec" in fdb:
        minutes = FRACTALDB_1K_IMAGES / fdb["images_per_sec"] / 60
        lines += ["", f"All 1M FractalDB-1k images (362 px, 200k points): {minutes:.1f} min."]
    if results.get("families"):
        lines += [
            "",
            "| family renderer (index -> image) | images/s | batch | size | "
            "sequential reference (images/s) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for label, r in results["families"]:
            if "error" in r:
                lines.append(f"| {label} | error: {r['error']} | | | |")
                continue
            lines.append(
                f"| {label} | {_fmt(r['images_per_sec'])} | {r['batch']} | {r['size']} | "
                f"{_fmt(r.get('reference_images_per_sec'), 2)} |"
            )
    lines += [
        "",
        "| training step | images/s (rendering in step) | images/s (fixed batch) | "
        "data-stall ratio | step time s | MFU |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, r in results["train"]:
        if "error" in r:
            lines.append(f"| {label} | error: {r['error']} | | | | |")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "-"
        lines.append(
            f"| {label} (batch {r['batch']}, {r['dtype']}) | {_fmt(r['images_per_s'])} | "
            f"{_fmt(r['images_per_s_fixed_batch'])} | {r['data_stall_ratio']:.3f} | "
            f"{r['step_time_s']:.4f} | {mfu} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="synth-jax bench suite", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for suite.json and suite.md")
    parser.add_argument("--quick", action="store_true", help="tiny settings (a CPU check)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per benchmark")
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: exists and is not a folder")
    command = "synth-jax bench suite" + (" --quick" if args.quick else "")
    results = {
        "date": datetime.date.today().isoformat(),
        "command": command,
        "ceilings": measure_ceilings(args.quick),
        "render": [],
        "families": [],
        "train": [],
    }
    print(json.dumps({"ceilings": results["ceilings"]}), flush=True)
    plan = [
        ("render", RENDER_QUICK if args.quick else RENDER_FULL),
        ("families", FAMILY_QUICK if args.quick else FAMILY_FULL),
        ("train", TRAIN_QUICK if args.quick else TRAIN_FULL),
    ]
    total = sum(len(settings) for _, settings in plan)
    done = 0
    for kind, settings in plan:
        for label, bench_args in settings:
            done += 1
            print(f"[{done}/{total}] bench {kind}: {label}", file=sys.stderr, flush=True)
            result = run_bench("render" if kind == "families" else kind, bench_args, args.timeout)
            results[kind].append((label, result))
            print(json.dumps({"label": label, **result}), flush=True)
    text = table(results)
    write_json(os.path.join(args.out, "suite.json"), results)
    write_text(os.path.join(args.out, "suite.md"), text)
    print(text)
    failed = [label for kind, _ in plan for label, r in results[kind] if "error" in r]
    return 1 if failed else 0
