"""`synth-jax pretrain`: pre-train a model on fractal images rendered inside the training step,
or (the baseline every synthetic source is compared with) supervised on a real TFDS dataset.

    synth-jax pretrain --config configs/pretrain/cpu_tiny.py --workdir runs/tiny
    synth-jax pretrain --config configs/pretrain/real_supervised.py:cpu --workdir runs/real
    synth-jax pretrain --config configs/pretrain/onepfrac_vit_tiny.py --workdir runs/1p \\
        --config.batch_size=512 --config.mesh.fsdp=8

A pre-training config is `pretrain_config(data=...)` (the trainer's keys and a data section) with
the experiment's values. Re-running the same command resumes from the newest good checkpoint in
the workdir. A rerun that changes the learning-rate schedule (total_steps, total_epochs) is
refused unless given --extend (it then continues under the new schedule, recorded in
WORKDIR/extensions.json); a workdir that had checkpoints and has none left (all unreadable and
moved to checkpoints_corrupt/, or deleted) starts again from step 0 only with --restart.
Several processes (one per host or GPU) join with --coordinator HOST:PORT
--num-processes N --process-id I (or SYNTH_JAX_COORDINATOR / SYNTH_JAX_NUM_PROCESSES /
SYNTH_JAX_PROCESS_ID).
Exit codes: 0 done, 2 bad input or a refused rerun (one line) or a NaN/infinite loss (the line
names the step; the checkpoints hold the finite state before it), 143 stopped by SIGTERM or
Ctrl-C after saving a checkpoint (rerun it).
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import ml_collections

from synth_jax.config import allowed_keys, config_from_argv, require_keys
from synth_jax.data import pipeline
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.files import workdir_arg
from synth_jax.fractals import FractalDataset, family
from synth_jax.train import lock, mesh, trainer
from synth_jax.train.metrics import log_line

EXIT_PREEMPTED = 143


def pretrain_config(data=None, **overrides) -> ml_collections.ConfigDict:
    """The defaults every pre-training config starts from: the trainer's keys
    (`trainer.train_config`) and `data`, a family's data config (`synth_jax.fractals.data_config`;
    FractalDB by default) or a real TFDS one (`synth_jax.data.pipeline.tfds_config`).
    `overrides` replace whole keys (a section is given whole)."""
    config = trainer.train_config(**overrides)
    config.data = data if data is not None else family.data_config("fractaldb")
    return config


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="synth-jax pretrain",
        description="Pre-train on on-device fractals: --config FILE.py[:arg] --workdir DIR "
        "[--config.KEY=VALUE ...]",
    )
    parser.add_argument(
        "--workdir", required=True, type=workdir_arg, help="checkpoints, metrics, summary.json"
    )
    parser.add_argument("--coordinator", help="HOST:PORT of process 0, for multi-process runs")
    parser.add_argument("--num-processes", type=int, help="number of processes in the run")
    parser.add_argument("--process-id", type=int, help="this process's index, 0..N-1")
    parser.add_argument(
        "--extend",
        action="store_true",
        help="resume under a changed schedule (total_steps / total_epochs); recorded",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start again from step 0 in a workdir whose checkpoints are gone",
    )
    return parser


def is_real_data(data) -> bool:
    """A real TFDS dataset (`synth_jax.data.pipeline.tfds_config`) rather than a fractal family."""
    return data.get("source", None) == "tfds"


def check_config(config, num_devices: int | None = None) -> None:
    """Validates the whole pre-training config (keys, data, trainer) before anything compiles,
    for a mesh of `num_devices` (default: all devices)."""
    if "data" not in config:
        raise UsageError("config key 'data' is missing: set config.data = data_config(FAMILY)")
    require_keys(
        config,
        allowed_keys(pretrain_config(), open_sections=("model", "evals", "data", "objective")),
    )
    if is_real_data(config.data):
        require_keys(config.data, pipeline.DATA_KEYS, prefix="data.")
        pipeline.check_splits(config.data)
        data_image_size = config.image_size  # real images are resized on the device
    else:
        family.validate(config.data)
        data_image_size = config.data.image_size
    # durations in epochs are checked again once the dataset knows its size
    trainer.validate(config, num_images=1, data_image_size=data_image_size, num_devices=num_devices)


def run(config, workdir: str, *, extend: bool = False, restart: bool = False) -> dict:
    """Builds the data source and trains; returns the summary (also summary.json).

    Fractals: the family's parameter table is built once and images are rendered inside the
    step. Real data: a Grain pipeline over the TFDS dataset feeds the same trainer, whose
    iterator state is checkpointed, so the resume is as exact as with fractals. `extend`,
    `restart`: see the module docstring (trainer.train).
    """
    check_config(config)
    with lock.held(workdir, log=log_line):  # one run per workdir, before any work
        return _run(config, workdir, extend, restart)


def _run(config, workdir: str, extend: bool, restart: bool) -> dict:
    if is_real_data(config.data):
        source = pipeline.make_source(
            config.data, config.data.train_split, config.batch_size, config.seed, True
        )
        name, num_classes, num_images = config.data.name, source.num_classes, source.num_images
    else:
        source = FractalDataset(config.data, progress=True)
        name, num_classes, num_images = config.data.family, source.num_classes, source.num_images
    try:
        summary, _ = trainer.train(
            config,
            workdir,
            source,
            num_classes=num_classes,
            extra_summary=dict(
                pretrain_family=name,
                pretrain_classes=num_classes,
                pretrain_images=num_images,
                pretrain_method=config.objective.type if "objective" in config else "supervised",
            ),
            extend=extend,
            restart=restart,
        )
    finally:
        if hasattr(source, "close"):
            source.close()
    return summary


def main(argv: list[str]) -> int:
    config, rest = config_from_argv(argv)
    args = _parser().parse_args(rest)
    # Before anything touches a device: a multi-process run must agree on the device list.
    mesh.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    summary = run(config, args.workdir, extend=args.extend, restart=args.restart)
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
    if jax.process_index() == 0:
        print(json.dumps(brief, allow_nan=False), file=sys.stdout, flush=True)
    return EXIT_PREEMPTED if summary["status"] == "preempted" else 0
