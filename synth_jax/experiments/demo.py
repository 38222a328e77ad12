"""`synth-jax demo [--workdir DIR] [--quick]`: the whole story on a laptop CPU, offline.

1. imports scikit-learn's bundled handwritten digits (1,797 8x8 images; no download) as a TFDS
   dataset, through the same importer and Grain pipeline as any real dataset;
2. runs the sweep `configs/sweep/demo.py`: pre-trains a tiny ViT on 1p-frac at three sizes,
   fine-tunes each on the digits, and a from-scratch baseline with the same recipe, every
   setting with the same seeds;
3. compares each size with scratch seed by seed, fits the transfer scaling law and writes
   `DIR/report.md` (figures: 1p-frac and FractalDB samples, pre-training curves, the learning
   curve with per-size means and seed error bars, the fitted law and its bootstrap band),
   `DIR/report.json` and `DIR/summary.csv`;
4. prints where the report is and the verdict: pre-trained minus scratch error with its
   interval, "no detectable difference at this budget" when the interval holds 0.

Re-running the same command resumes where it stopped. `--quick` (the `:quick` config) is the
reduced setting CI runs. Any `--config.KEY=VALUE` override of the sweep config works too.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np

from synth_jax import files
from synth_jax.config import apply_overrides, load_config_file, split_config_args
from synth_jax.data.importer import import_dataset
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.experiments import sweep
from synth_jax.files import atomic_path, workdir_arg
from synth_jax.scaling.compare import NO_DIFFERENCE

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


def add_baselines(workdir: str) -> dict:
    """Adds the pixel baselines on the demo's split to DIR/report.json ("baselines":
    {"logistic_regression": err, "nearest_neighbour": err}) and DIR/report.md, and says when the
    from-scratch recipe loses to them (a recipe problem, not a finding about pre-training)."""
    from synth_jax.experiments.lab import pixel_baselines

    d = digits_arrays()
    base = pixel_baselines(d["train_images"], d["train_labels"], d["test_images"], d["test_labels"])
    path = os.path.join(workdir, "report.json")
    with open(path) as f:
        numbers = json.load(f)
    scratch = [g["scratch"]["mean"] for g in numbers["groups"] if g["scratch"]["mean"] is not None]
    worse = [name for name, err in base.items() if scratch and scratch[0] > err]
    numbers["baselines"] = base
    numbers["recipe_problem"] = bool(worse)
    files.write_json(path, numbers)
    lines = [
        "",
        "## Baselines on raw pixels (the same split)",
        "",
        f"- logistic regression (scikit-learn, standardised pixels): error "
        f"{base['logistic_regression']:.4f}",
        f"- 1-nearest-neighbour: error {base['nearest_neighbour']:.4f}",
    ]
    if worse:
        lines += [
            "",
            f"**Recipe problem:** the from-scratch model (error {scratch[0]:.4f}) loses to "
            f"{' and '.join(n.replace('_', ' ') for n in worse)} on raw pixels; its comparisons "
            "say nothing about pre-training. See docs/protocol_search.md for a recipe that wins.",
        ]
    md = os.path.join(workdir, "report.md")
    with open(md) as f:
        text = f.read()
    marker = "\n## Baselines on raw pixels"
    files.write_text(md, text.split(marker)[0].rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    return numbers


def headline(workdir: str) -> list[str]:
    """The lines the demo ends with: the report's numbers in words, each with its interval."""
    with open(os.path.join(workdir, "report.json")) as f:
        numbers = json.load(f)
    y = numbers["law"]["y"]
    base = numbers.get("baselines")
    pct = f"{100 * numbers['law']['ci']:.0f}%"
    lines = []

    def size_line(name: str, summary: dict) -> str:
        ci = summary.get("ci")
        span = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else " (one run: no interval)"
        return f"  {name:<24} {y} {summary['mean']:.4f}{span} ({summary['runs']} runs)"

    for group in numbers["groups"]:
        if group["scratch"]["mean"] is not None:
            lines.append(size_line("from scratch:", group["scratch"]))
        if base:
            lines.append(
                f"  baselines on pixels: logistic regression {base['logistic_regression']:.4f}, "
                f"1-NN {base['nearest_neighbour']:.4f}"
                + (
                    "; the from-scratch recipe loses to them: a RECIPE PROBLEM, see "
                    "docs/protocol_search.md"
                    if numbers.get("recipe_problem")
                    else ""
                )
            )
        source = ", ".join(group.get("sources") or ["pre-trained"])
        for summary in group.get("per_size") or []:
            lines.append(size_line(f"{source}, {int(summary['size'])} images:", summary))
        vs = group.get("vs_scratch")
        if vs:
            best, pooled = vs["best"], vs["pooled"]
            lines.append(
                f"  verdict ({y}, pre-trained minus scratch, {pct} intervals over seeds): best "
                f"size ({int(best['size'])} images) {best['text']}: {_verdict(best['verdict'])}; "
                f"all sizes pooled {pooled['text']}: {_verdict(pooled['verdict'])}"
            )
        fit = group.get("fit")
        if fit:
            params = ", ".join(
                f"{k} = {v:.3g}"
                + (f" [{fit['ci'][k][0]:.3g}, {fit['ci'][k][1]:.3g}]" if k in fit["ci"] else "")
                for k, v in fit["params"].items()
                if v is not None
            )
            flags = "" if fit["converged"] else f"; NOT CONVERGED ({fit['status']})"
            if fit["hit_bounds"]:
                flags += f"; at a bound: {', '.join(fit['hit_bounds'])}"
            lines.append(f"  law {fit['formula']}: {params}; R^2 {fit['r2']:.3f}{flags}")
            if fit.get("ci_method"):
                lines.append(f"    ({fit['ci_method']})")
        elif group.get("error"):
            lines.append(f"  law not fitted: {group['error']}")
        plan = group.get("plan") or {}
        if plan.get("summary"):
            lines.append(f"  planner: {plan['summary']}")
    return lines


def _verdict(verdict: str) -> str:
    return {
        "lower": "pre-training LOWERS the error",
        "higher": "pre-training RAISES the error",
        NO_DIFFERENCE: f"{NO_DIFFERENCE} at this budget",
        "no interval": "no interval (one seed)",
    }[verdict]


def main(argv: list[str]) -> int:
    spec, overrides, rest = split_config_args(argv)
    parser = ArgumentParser(prog="synth-jax demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", default="runs/demo", type=workdir_arg, help="where everything goes"
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
        raise UsageError(
            "--quick selects configs/sweep/demo.py:quick; with --config, pick the "
            "variant yourself (--config path.py:quick)"
        )
    config = load_config_file(spec)
    apply_overrides(config, overrides)

    t0, cpu0 = time.perf_counter(), time.process_time()
    workdir = os.path.abspath(args.workdir)
    seeds = len(config.finetune.seeds) or 1
    print(
        f"demo: pre-train a tiny ViT on 1p-frac at "
        f"{len(config.axes[0]['pretrain.data.num_classes'])} sizes, fine-tune each and a "
        f"from-scratch baseline on handwritten digits with {seeds} seed(s), compare them, fit "
        f"the scaling law, write the report.\n"
        f"demo: workdir {workdir} (re-run the same command to resume)",
        flush=True,
    )
    # Runs with the same shapes (every seed, every size's fine-tuning) compile the same
    # programs: the persistent cache compiles each once, and a re-run not at all.
    jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "jax_cache"))
    data_dir = import_digits(os.path.join(workdir, "data", "tfds"))
    if not config.finetune.data.data_dir:
        config.finetune.data.data_dir = data_dir

    result = sweep.run(config, workdir)
    if result["preempted"]:
        return 143
    add_baselines(workdir)
    minutes = (time.perf_counter() - t0) / 60
    cpu = (time.process_time() - cpu0) / 60
    print(
        f"\ndemo: finished in {minutes:.1f} min ({cpu:.1f} min of CPU time). "
        f"Report: {result['report']}"
    )
    print("\n".join(headline(workdir)))
    print(f"demo: figures in {os.path.join(workdir, 'figures')}; numbers in report.json")
    return 0
