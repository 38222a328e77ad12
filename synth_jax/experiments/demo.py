"""`synth-jax demo [--workdir DIR] [--quick]`: the whole story on a laptop CPU, offline.

1. imports scikit-learn's bundled handwritten digits (1,797 8x8 images; no download) as a TFDS
   dataset, through the same importer and Grain pipeline as any real dataset;
2. runs the sweep `configs/sweep/demo.py`: pre-trains a tiny ViT on 1p-frac at four sizes,
   fine-tunes each on the digits, and a from-scratch baseline with the same recipe;
3. fits the transfer scaling law and writes `DIR/report.md` (figures: 1p-frac and FractalDB
   samples, pre-training curves, the learning curve with the fitted law and its bootstrap band)
   and `DIR/report.json`;
4. prints where the report is and the headline numbers.

Re-running the same command resumes where it stopped. `--quick` (the `:quick` config) is the
reduced setting CI runs. Any `--config.KEY=VALUE` override of the sweep config works too.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from synth_jax.config import apply_overrides, load_config_file, split_config_args
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.files import atomic_path, folder_arg

DATASET = "sklearn_digits"
TEST_IMAGES = 497  # of 1,797: a fixed, seeded split leaves 1,300 for training


def default_config_path() -> str:
    """configs/sweep/demo.py of this checkout (the package is installed from it, `pip -e`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "configs", "sweep", "demo.py"))


def digits_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's digits as uint8 arrays for the `.npz` importer: train/test images
    uint8[N, 8, 8] (0..16 ink levels scaled to 0..255) and labels int64[N], split by a seeded
    permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    test, train = order[:TEST_IMAGES], order[TEST_IMAGES:]
    return {
        "train_images": images[train],
        "train_labels": labels[train],
        "test_images": images[test],
        "test_labels": labels[test],
        "class_names": np.array([str(d) for d in range(10)]),
    }


def import_digits(data_dir: str, out=None) -> str:
    """Imports the digits into `data_dir` as TFDS dataset `sklearn_digits` (once)."""
    from synth_jax.data.importer import import_dataset

    out = out or sys.stdout
    if os.path.isdir(os.path.join(data_dir, DATASET)):
        print(f"demo: digits already imported in {data_dir}", file=out, flush=True)
        return data_dir
    npz = os.path.join(os.path.dirname(data_dir), "sklearn_digits.npz")
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **digits_arrays())
    import_dataset(DATASET, npz, data_dir)
    print(
        f"demo: imported scikit-learn's digits (1,300 train / {TEST_IMAGES} test, 8x8) as TFDS "
        f"dataset {DATASET} in {data_dir}",
        file=out,
        flush=True,
    )
    return data_dir


def headline(workdir: str) -> list[str]:
    """The lines the demo ends with: the report's numbers in words."""
    with open(os.path.join(workdir, "report.json")) as f:
        numbers = json.load(f)
    lines = []
    y = numbers["law"]["y"]
    for group in numbers["groups"]:
        x, err = np.array(group["x"]), np.array(group["y"])
        for size in np.unique(x):
            lines.append(f"  1p-frac, {int(size):>5} images: {y} {err[x == size].mean():.4f}")
        if group["scratch"]["mean"] is not None:
            lines.append(f"  from scratch:          {y} {group['scratch']['mean']:.4f}")
            gain = group.get("gain_over_scratch")
            if gain is not None:
                verdict = "lowers" if gain > 0 else "raises"
                lines.append(
                    f"  the best pre-training {verdict} the error by {abs(gain):.4f} "
                    f"({100 * abs(gain):.1f} points of top-1)"
                )
        fit = group.get("fit")
        if fit:
            params = ", ".join(f"{k} = {v:.3g}" for k, v in fit["params"].items() if v is not None)
            lines.append(f"  law {fit['formula']}: {params}; R^2 {fit['r2']:.3f}")
        elif group.get("error"):
            lines.append(f"  law not fitted: {group['error']}")
        plan = group.get("plan") or {}
        if plan.get("summary"):
            lines.append(f"  planner: {plan['summary']}")
    return lines


def main(argv: list[str]) -> int:
    spec, overrides, rest = split_config_args(argv)
    parser = ArgumentParser(prog="synth-jax demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", default="runs/demo", type=folder_arg, help="where everything goes"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the reduced CI setting (~3 min on 2 cores)"
    )
    args = parser.parse_args(rest)

    if spec is None:
        spec = default_config_path()
        if not os.path.exists(spec):
            raise UsageError(
                f"the demo config {spec} is missing (install from a checkout: pip install -e .); "
                "or pass --config path/to/configs/sweep/demo.py"
            )
        if args.quick:
            spec += ":quick"
    elif args.quick:
        raise UsageError("--quick selects configs/sweep/demo.py:quick; with --config, pick the "
                         "variant yourself (--config path.py:quick)")  # fmt: skip
    config = load_config_file(spec)
    apply_overrides(config, overrides)

    t0 = time.perf_counter()
    workdir = os.path.abspath(args.workdir)
    print(
        f"demo: pre-train a tiny ViT on 1p-frac at "
        f"{len(config.axes[0]['pretrain.data.num_classes'])} sizes, fine-tune each and a "
        f"from-scratch baseline on handwritten digits, fit the scaling law, write the report.\n"
        f"demo: workdir {workdir} (re-run the same command to resume)",
        flush=True,
    )
    data_dir = import_digits(os.path.join(workdir, "data", "tfds"))
    if not config.finetune.data.data_dir:
        config.finetune.data.data_dir = data_dir

    from synth_jax.experiments import sweep

    result = sweep.run(config, workdir)
    if result["preempted"]:
        return 143
    minutes = (time.perf_counter() - t0) / 60
    print(f"\ndemo: finished in {minutes:.1f} min. Report: {result['report']}")
    print("\n".join(headline(workdir)))
    print(f"demo: figures in {os.path.join(workdir, 'figures')}; numbers in report.json")
    return 0
