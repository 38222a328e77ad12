"""`synth-jax pretrain`: pre-train a model on fractal images rendered inside the training step.

    synth-jax pretrain --config configs/pretrain/cpu_tiny.py --workdir runs/tiny
    synth-jax pretrain --config configs/pretrain/onepfrac_vit_tiny.py --workdir runs/1p \\
        --config.batch_size=512 --config.mesh.fsdp=8

Re-running the same command resumes from the newest good checkpoint in the workdir. Several
processes (one per host or GPU) join with --coordinator HOST:PORT --num-processes N
--process-id I (or SYNTH_JAX_COORDINATOR / SYNTH_JAX_NUM_PROCESSES / SYNTH_JAX_PROCESS_ID).
Exit codes: 0 done, 2 bad input, 143 stopped by SIGTERM after saving a checkpoint (rerun it).
"""

from __future__ import annotations

import argparse
import json
import sys

from synth_jax.config import config_from_argv, require_keys
from synth_jax.errors import UsageError

EXIT_PREEMPTED = 143


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="synth-jax pretrain",
        description="Pre-train on on-device fractals: --config FILE.py[:arg] --workdir DIR "
        "[--config.KEY=VALUE ...]",
    )
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics, summary.json")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0, for multi-process runs")
    parser.add_argument("--num-processes", type=int, help="number of processes in the run")
    parser.add_argument("--process-id", type=int, help="this process's index, 0..N-1")
    return parser


def check_config(config) -> None:
    """Validates the whole pre-training config (keys, data, trainer) before anything compiles."""
    from synth_jax.fractals import family
    from synth_jax.train import trainer

    require_keys(config, {**trainer.TRAIN_KEYS, "data": None})
    if "data" not in config:
        raise UsageError("config key 'data' is missing: set config.data = data_config(FAMILY)")
    family.validate(config.data)
    # durations in epochs are checked again once the dataset knows its size
    trainer.validate(config, num_images=1, data_image_size=config.data.image_size)


def run(config, workdir: str) -> dict:
    """Builds the dataset's parameter table and trains; returns the summary (also summary.json)."""
    from synth_jax.fractals import FractalDataset
    from synth_jax.train import trainer

    check_config(config)
    dataset = FractalDataset(config.data, progress=True)
    summary, _ = trainer.train(
        config,
        workdir,
        dataset,
        num_classes=dataset.num_classes,
        extra_summary=dict(
            pretrain_family=config.data.family,
            pretrain_classes=dataset.num_classes,
            pretrain_images=dataset.num_images,
        ),
    )
    return summary


def main(argv: list[str]) -> int:
    config, rest = config_from_argv(argv)
    args = _parser().parse_args(rest)
    from synth_jax.train import mesh

    # Before anything touches a device: a multi-process run must agree on the device list.
    mesh.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    summary = run(config, args.workdir)
    brief = {
        k: summary[k]
        for k in (
            "status",
            "steps",
            "final_loss",
            "final_accuracy",
            "images_per_s",
            "wall_s",
            "workdir",
        )
    }
    import jax

    if jax.process_index() == 0:
        print(json.dumps(brief), file=sys.stdout, flush=True)
    return EXIT_PREEMPTED if summary["status"] == "preempted" else 0
