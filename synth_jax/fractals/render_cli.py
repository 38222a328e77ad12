"""`synth-jax render --config configs/data/<family>.py --num 64 --out grid.png`: a labelled
preview grid of a family (image k shows category k mod C)."""

from __future__ import annotations

import json
import sys

import numpy as np

from synth_jax.config import config_from_argv
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.fractals.dataset import FractalDataset
from synth_jax.fractals.preview import preview_indices, render_images, save_grid


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="synth-jax render",
        description="Write a labelled preview grid: --config configs/data/<family>.py",
    )
    parser.add_argument("--num", type=int, default=64, help="images in the grid")
    parser.add_argument("--out", required=True, help="PNG path")
    parser.add_argument("--seed", type=int, default=None, help="image seed (default config.seed)")
    if any(a in ("-h", "--help") for a in argv):
        parser.print_help()
        return 0
    config, rest = config_from_argv(argv)
    args = parser.parse_args(rest)
    if not 1 <= args.num <= 4096:
        raise UsageError(f"--num {args.num}: expected 1..4096")
    if not args.out.lower().endswith(".png"):
        raise UsageError(f"--out {args.out}: expected a .png path")
    dataset = FractalDataset(config, progress=True)
    seed = config.seed if args.seed is None else args.seed
    images, labels, info = render_images(dataset, preview_indices(dataset, args.num), seed)
    save_grid(args.out, images, labels)
    summary = {
        "out": args.out,
        "family": config.family,
        "images": int(len(images)),
        "classes_shown": int(
            np.sum(labels.sum(0) > 0) if labels.ndim == 2 else len(np.unique(labels))
        ),
        "mean_fill": round(float(info["fill"].mean()), 4),
        "degenerate": int(info["degenerate"].sum()),
        "table": dataset.table.stats,
    }
    print(json.dumps(summary), file=sys.stdout)
    return 0
