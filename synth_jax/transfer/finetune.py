"""`synth-jax finetune --config configs/finetune/NAME.py --workdir DIR`: transfer to real data.

Modes (`config.mode`), one module each in the table `MODES`:
    full          end-to-end fine-tuning on the training split, or a class-stratified
                  `fraction` of it (Mikami et al.'s fine-tuning size)      (transfer/full.py)
    fewshot       end-to-end fine-tuning on `shots` examples per class, drawn without
                  replacement                                               (transfer/full.py)
    linear_probe  frozen backbone, features computed once (cached in the workdir), L2-regularised
                  logistic regression on them (`shots` or `fraction` select the examples too)
    bridged       stage 1 on a synthetic dataset of the target classes (with mixup), stage 2 on the
                  real data
`init_from` is a pre-training workdir or checkpoint path, or '' for from-scratch training (the
baseline every comparison needs); the backbone is loaded, the head re-initialised.
`seeds` repeats the run (new draw of the examples, new head, new batch order) and reports the
mean and standard deviation; each repeat lives in `DIR/seed_<s>/`.

Training runs through the one trainer (`synth_jax.train.trainer.train`) with the Grain host
source, so checkpointing and exact resume are those of pre-training: re-running the command
resumes. The test split is evaluated by the run's evaluator `evals.test` (synth_jax.evaluators;
add others under other names). Every finished run appends one row to `config.results_csv` (see
results.py) and writes `result.json` (top-1, top-5, per-class accuracy on the test split, its
config) next to its checkpoints. Re-running a finished run with the same config returns its
result and appends nothing; with another config it is refused (one line naming the key).

Adding a mode is one module and one table entry: the module defines

    DEFAULTS: dict            optional: finetune-config keys it adds (a section named after the
                              mode, e.g. {"linear_probe": dict(l2=1e-4, steps=500)})
    validate(config)          raises synth_jax.errors.UsageError naming the bad key, before any
                              data is opened (the keys every mode shares are checked here)
    run(config, workdir) -> dict
                              the summary {status: "done" | "preempted", mode, rows, row,
                              results_csv, ...}; synth_jax.transfer.runs has the shared pieces
                              (train_and_evaluate, finish, repeat_over_seeds)

and is registered with `MODES.register("name", module)` (see docs/extending.md).
"""

from __future__ import annotations

import os
import re
import sys

import jax
import ml_collections

from synth_jax.config import allowed_keys, check, config_from_argv, replace_keys, require_keys
from synth_jax.data import pipeline
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.files import workdir_arg
from synth_jax.registry import Registry
from synth_jax.train import lock, trainer
from synth_jax.train import mesh as mesh_lib
from synth_jax.train.metrics import log_line
from synth_jax.train.pretrain import EXIT_PREEMPTED
from synth_jax.transfer import bridged, full, linear_probe

MODES = Registry(
    "transfer mode",
    "mode",
    {"full": full, "fewshot": full, "linear_probe": linear_probe, "bridged": bridged},
    required=("validate", "run"),
)


def finetune_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults of a fine-tuning config, the schema of its keys: the trainer's keys, the transfer
    keys below and the sections of the registered modes. `overrides` replace whole keys."""
    config = trainer.train_config()
    config.update(
        dict(
            data=pipeline.tfds_config(),
            init_from="",  # pre-training workdir or checkpoint; '' = from scratch
            dont_load=("head/.*",),  # regexes of parameters NOT loaded (re-initialised)
            mode="full",
            fraction=1.0,  # share of the training split (full / linear_probe)
            shots=0,  # examples per class (fewshot / linear_probe); 0 = use fraction
            seeds=(),  # repeats; () = just config.seed
            results_csv="",  # '' = WORKDIR/results.csv
            eval_batch_size=256,
        )
    )
    for module in {id(m): m for m in MODES.values()}.values():
        for key, value in getattr(module, "DEFAULTS", {}).items():
            config[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
    return replace_keys(config, overrides, "fine-tuning")


def check_config(config: ml_collections.ConfigDict) -> None:
    """Everything that can be checked before data is opened or anything compiles."""
    require_keys(
        config, allowed_keys(finetune_config(), open_sections=("model", "evals", "objective"))
    )
    mode = MODES.lookup(config.mode)
    pipeline.check_splits(config.data)
    check(config, "fraction", lambda v: 0.0 < v <= 1.0, "a share of the training set in (0, 1]")
    check(config, "shots", lambda v: v >= 0, "examples per class, >= 0")
    _check_seeds(config)
    for pattern in config.dont_load:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as e:
            raise UsageError(
                f"dont_load: {pattern!r} is not a regular expression ({e}); write one that "
                f"matches the names of the parameters not to load, e.g. 'head/.*'"
            ) from None
    if config.shots and config.fraction != 1.0:
        raise UsageError("set shots or fraction, not both")
    try:
        shape = mesh_lib.mesh_shape(config.mesh, jax.device_count())
    except ValueError as e:
        raise UsageError(str(e)) from None
    if config.eval_batch_size % (shape["data"] * shape["fsdp"] * jax.process_count()):
        raise UsageError(
            f"eval_batch_size={config.eval_batch_size}: must be a multiple of the data-parallel "
            f"size ({shape['data'] * shape['fsdp']}) and of the number of processes"
        )
    if config.init_from and not os.path.exists(config.init_from):
        raise UsageError(f"init_from={config.init_from}: no such workdir or checkpoint")
    if not config.image_size:
        raise UsageError("image_size: set the model's input size in pixels")
    if "test" in config.evals:
        raise UsageError(
            "config key 'evals.test' is the test-split evaluation every fine-tuning runs; "
            "give yours another name"
        )
    mode.validate(config)


def _check_seeds(config) -> None:
    """`seeds`: distinct integers in [0, 2**32) (a repeated seed repeats the same run)."""
    seeds = list(config.seeds)
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise UsageError(f"seeds={seeds}: {seed!r} is not an integer in [0, 2**32)")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UsageError(
            f"seeds={seeds}: {repeated[0]} appears {seeds.count(repeated[0])} times; each "
            f"repeat needs its own seed"
        )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Checks the config and runs its mode; returns the mode's summary (`row`: the (last)
    results row, `rows`: one per seed, `top1_mean` / `top1_std` over them)."""
    check_config(config)
    with lock.held(workdir, log=log_line):  # one run per workdir, before any work
        return MODES.lookup(config.mode).run(config, workdir)


def main(argv: list[str]) -> int:
    """Exit codes: 0 done, 2 bad input, 143 stopped by SIGTERM or Ctrl-C after a checkpoint
    (rerun it)."""
    config, rest = config_from_argv(argv)
    parser = ArgumentParser(
        prog="synth-jax finetune",
        description="Fine-tune, linear-probe or few-shot a model on real data: --config "
        "configs/finetune/NAME.py[:cpu] --workdir DIR [--config.KEY=VALUE ...]",
    )
    parser.add_argument(
        "--workdir", required=True, type=workdir_arg, help="run folder (re-run to resume)"
    )
    parser.add_argument("--coordinator", help="HOST:PORT of process 0, for multi-process runs")
    parser.add_argument("--num-processes", type=int, help="number of processes in the run")
    parser.add_argument("--process-id", type=int, help="this process's index, 0..N-1")
    args = parser.parse_args(rest)
    # Before anything touches a device: every process must agree on the device list.
    mesh_lib.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    summary = run(config, args.workdir)
    if summary["status"] != "done":
        print("stopped early; run the same command again to resume", file=sys.stderr)
        return EXIT_PREEMPTED
    for row in summary["rows"]:
        print(
            f"{row['run_id']}: {row['dataset']} {row['mode']} top-1 {100 * row['top1']:.2f}% "
            f"(from {row['pretrain_family']})"
        )
    if len(summary["rows"]) > 1 and "top1_mean" in summary:
        print(
            f"top-1 over {len(summary['rows'])} seeds: {100 * summary['top1_mean']:.2f} "
            f"+- {100 * summary['top1_std']:.2f}%"
        )
    rows, appended, table = len(summary["rows"]), summary.get("appended", 0), summary["results_csv"]
    if appended == rows:
        print(f"results appended to {table}")
    elif appended == 0:
        print(f"finished earlier, same config: nothing appended (the rows are in {table})")
    else:
        print(f"{appended} of {rows} rows appended to {table}; the other runs finished earlier")
    return 0
