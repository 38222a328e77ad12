"""What the transfer modes share: one fine-tuning run through the trainer and its test-split
evaluation, the record of a finished run (result.json and its results row), and repeats over
seeds. Every mode module imports this one; it imports no mode.

A rerun of a finished run returns its result when the config is the same (up to
RERUN_FREE_KEYS) and refuses with one line when it is not: never the old result for a new config.
result.json is written before the row is appended, and appending is idempotent, so a crash in
between costs nothing: the rerun appends the row once.
"""

from __future__ import annotations

import json
import math
import os

import jax
import ml_collections
import numpy as np

from synth_jax import evaluators, files, weights
from synth_jax.config import config_to_dict
from synth_jax.data import pipeline, tfds_source
from synth_jax.errors import UsageError
from synth_jax.train import checkpoint, trainer
from synth_jax.transfer import fewshot, results
from synth_jax.transfer.pretrained import load_pretrained


def results_path(config, workdir: str) -> str:
    return config.results_csv or os.path.join(workdir, "results.csv")


def pretrain_columns(init_from: str) -> dict:
    """The pretrain_* and init_from cells of every row of runs starting from `init_from`.
    A pre-training that stopped on a non-finite loss is refused: it feeds no row."""
    if init_from and not weights.is_weights_file(init_from):
        summary = checkpoint.run_summary(init_from) or {}
        if summary.get("status") == "diverged":
            raise UsageError(
                f"init_from={init_from}: that pre-training stopped at step "
                f"{summary.get('diverged_at_step')} on a non-finite loss (its summary.json); "
                f"fine-tune from a pre-training that finished"
            )
    info = results.pretrain_info(init_from or None)
    return {**info, "init_from": os.path.abspath(init_from) if init_from else None}


def training_labels(config) -> np.ndarray | None:
    """The labels of the training split when the runs draw examples (shots or a fraction)."""
    if not (config.shots or config.fraction < 1.0):
        return None
    opened = tfds_source.open_split(
        config.data.name, config.data.train_split, config.data.data_dir or None
    )
    return tfds_source.read_labels(opened)


def select_examples(config, labels: np.ndarray | None, seed: int) -> np.ndarray | None:
    """Training indices for this repeat: k per class, a fraction, or None (all)."""
    if labels is None:
        return None
    if config.shots:
        return fewshot.k_per_class(labels, config.shots, seed)
    return fewshot.fraction_subset(labels, config.fraction, seed)


def row(config, workdir, run_workdir, seed, metrics, mode, pretrain) -> dict:
    """The results row (synth_jax.transfer.results.COLUMNS) of a finished run; a run whose
    test-split scores are not finite has none (a NaN would feed the fits)."""
    scores = {k: float(metrics[k]) for k in ("top1", "top1_error", "top5_error")}
    if not all(math.isfinite(v) for v in scores.values()):
        raise UsageError(
            f"{run_workdir}: the test-split scores are not finite ({scores}); no results row "
            f"was written"
        )
    return dict(
        run_id=os.path.relpath(run_workdir, os.path.dirname(os.path.abspath(workdir))),
        **pretrain,
        model=config.model.name,
        dataset=config.data.name,
        mode=mode,
        fraction=config.fraction if not config.shots else None,
        shots=config.shots or None,
        seed=seed,
        top1=round(metrics["top1"], 6),
        top1_error=round(metrics["top1_error"], 6),
        top5_error=round(metrics["top5_error"], 6),
        workdir=os.path.abspath(run_workdir),
        timestamp=results.timestamp(),
    )


# Keys that say where a run writes, how it logs, or how fast it reads, not what it computes: a
# finished run is the same run when only these differ (`seeds` lists the repeats; each run's own
# seed is compared).
RERUN_FREE_KEYS = (
    "seeds",
    "results_csv",
    "log_every_steps",
    "eval_batch_size",
    "checkpoint.",
    "mesh.",
    "evals.",
    "data.num_threads",
    "data.num_workers",
    "data.prefetch",
)


def run_record(config, seed: int) -> dict:
    """The config a finished run records in its result.json: the mode's config with its seed."""
    record = config_to_dict(config)
    record["seed"] = int(seed)
    return json.loads(json.dumps(record, default=str))


def finish(config, workdir, run_workdir, seed, metrics, mode, pretrain, fields) -> dict:
    """Writes result.json (the record of a finished run: its results row, per-class accuracy,
    top-5 and its config); returns the result {row, per_class, top5, config, **fields}. The row
    goes into the table afterwards (`record_row`), so that a crash in between is mended by the
    rerun, which finds result.json and appends the row then, once."""
    record = row(config, workdir, run_workdir, seed, metrics, mode, pretrain)
    per_class = np.asarray(metrics["per_class"], np.float64).tolist()
    result = dict(
        row=record, per_class=per_class, top5=metrics["top5"], config=run_record(config, seed)
    )
    result.update(fields)
    if jax.process_index() == 0:
        files.write_json(os.path.join(run_workdir, "result.json"), result)
    return result


def record_row(config, workdir: str, result: dict) -> bool:
    """Puts a finished run's row into the results table, exactly once (process 0); returns
    whether it was appended now."""
    if jax.process_index() != 0:
        return False
    path = results_path(config, workdir)
    try:
        return results.append_row(path, result["row"])
    except OSError as e:  # e.g. the disk filled up: the result itself is safe in result.json
        raise UsageError(
            f"results_csv {path}: cannot write the row ({e.strerror or e}); the result is in "
            f"{result['row']['workdir']}/result.json: rerun the same command once that is "
            f"fixed and it appends the row"
        ) from None


def _flat(tree, prefix="") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def check_same_finished_run(run_workdir: str, saved: dict, now: dict) -> None:
    """Refuses to return a finished run's result for another config: names the first key that
    differs (keys only one side has are not compared: configs written before a key existed)."""
    old, new = _flat(saved), _flat(now)
    for key in sorted(set(old) & set(new)):
        if key.startswith(RERUN_FREE_KEYS) or key in RERUN_FREE_KEYS:
            continue
        if old[key] != new[key]:
            raise UsageError(
                f"{run_workdir} holds a finished run whose config differs at {key!r} "
                f"({old[key]!r} there, {new[key]!r} now); its result stands: use another "
                f"--workdir for the new config"
            )


def done(run_workdir: str, config, seed: int) -> dict | None:
    """The result of the run that already finished in `run_workdir` (its result.json), or None;
    a UsageError when that run had another config (see check_same_finished_run)."""
    path = os.path.join(run_workdir, "result.json")
    if not os.path.exists(path):
        return None
    result = files.read_json(
        path, "it records the finished run: restore it, or delete it to evaluate again"
    )
    now = run_record(config, seed)
    saved = result.get("config")
    if saved is None:  # written before results recorded their config: the run's config.json
        config_path = os.path.join(run_workdir, "config.json")
        saved = {}
        if os.path.exists(config_path):
            saved = files.read_json(config_path, "it records the run's config: restore it")
        saved.pop("seed", None)  # a linear probe's config.json holds the first seed only
    check_same_finished_run(run_workdir, saved, now)
    return result


def train_and_evaluate(
    config, workdir, run_workdir, seed, mode, pretrain, indices=None, train_data=None
):
    """One fine-tuning run through the trainer, evaluated on the test split by its evaluator
    `evals.test` at the end, and its record.

    `train_data` (a data config; default `config.data`) is what it trains on; the evaluation is
    always `config.data.eval_split`. Returns the result dict, or None when the run was
    preempted (re-run to resume)."""
    finished = done(run_workdir, config, seed)
    if finished is not None:
        return finished
    run_config = ml_collections.ConfigDict(config_to_dict(config))
    run_config.seed = seed
    run_config.evals = ml_collections.ConfigDict(config_to_dict(config.get("evals", {})))
    run_config.evals.test = evaluators.eval_config(
        "classification",
        data=ml_collections.ConfigDict(config_to_dict(config.data)),
        split=config.data.eval_split,
        batch_size=config.eval_batch_size,
    )
    train_data = train_data or config.data
    source = pipeline.make_source(
        train_data, train_data.train_split, config.batch_size, seed, True, indices
    )
    init = load_pretrained(config.init_from) if config.init_from else None
    summary, _ = trainer.train(
        run_config,
        run_workdir,
        source,
        num_classes=source.num_classes,
        init_params=init.params if init else None,
        init_model_state=init.model_state if init else None,
        dont_load=tuple(config.dont_load),
        extra_summary=dict(train_examples=source.num_examples),
    )
    source.close()
    if summary["status"] != "done":
        return None
    metrics = summary["evals"]["test"]
    extra = dict(train_examples=source.num_examples, steps=summary["steps"])
    return finish(config, workdir, run_workdir, seed, metrics, mode, pretrain, extra)


def repeat_over_seeds(config, workdir: str, one_run) -> dict:
    """Runs `one_run(config, workdir, run_workdir, seed, pretrain, indices) -> result or None`
    for each of `config.seeds` (or `config.seed`), each in `workdir/seed_<s>/` when there are
    several, and records each finished run's row; returns the summary {status, mode, rows, row,
    results_csv, appended (rows appended now), top1_mean, top1_std}. A run that returns None was
    preempted: the summary says so and the rest wait for a re-run."""
    workdir = os.path.abspath(workdir)
    csv_path = results_path(config, workdir)
    results.check_table(csv_path)
    pretrain = pretrain_columns(config.init_from)
    seeds = list(config.seeds) or [int(config.seed)]
    labels = training_labels(config)
    rows, preempted, appended = [], False, 0
    for seed in seeds:
        run_workdir = os.path.join(workdir, f"seed_{seed}") if len(seeds) > 1 else workdir
        result = one_run(
            config, workdir, run_workdir, seed, pretrain, select_examples(config, labels, seed)
        )
        if result is None:
            preempted = True
            break
        rows.append(result["row"])
        appended += record_row(config, workdir, result)
    summary = dict(
        status="preempted" if preempted else "done",
        mode=config.mode,
        rows=rows,
        row=rows[-1] if rows else None,
        results_csv=csv_path,
        appended=appended,
    )
    top1 = [float(r["top1"]) for r in rows]
    if top1:
        summary["top1_mean"], summary["top1_std"] = fewshot.mean_std(top1)
    if not preempted and len(seeds) > 1 and jax.process_index() == 0:
        files.write_json(os.path.join(workdir, "summary.json"), summary)
    return summary
