"""`synth-jax finetune --config configs/finetune/NAME.py --workdir DIR`: transfer to real data.

Modes (`config.mode`):
    full          end-to-end fine-tuning on the training split, or a class-stratified
                  `fraction` of it (Mikami et al.'s fine-tuning size)
    fewshot       end-to-end fine-tuning on `shots` examples per class, drawn without replacement
    linear_probe  frozen backbone, features computed once (cached in the workdir), L2-regularised
                  logistic regression on them (`shots` or `fraction` select the examples too)
    bridged       stage 1 on a synthetic dataset of the target classes (with mixup), stage 2 on the
                  real data (see synth_jax.transfer.bridged)
`init_from` is a pre-training workdir or checkpoint path, or '' for from-scratch training (the
baseline every comparison needs); the backbone is loaded, the head re-initialised.
`seeds` repeats the run (new draw of the examples, new head, new batch order) and reports the
mean and standard deviation; each repeat lives in `DIR/seed_<s>/`.

Training runs through the one trainer (`synth_jax.train.trainer.train`) with the Grain host
source, so checkpointing and exact resume are those of pre-training: re-running the command
resumes. Every finished run appends one row to `config.results_csv` (see results.py) and writes
`result.json` (top-1, top-5, per-class accuracy on the test split) next to its checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import jax
import ml_collections
import numpy as np
from flax import nnx

from synth_jax import files
from synth_jax.config import config_from_argv, config_to_dict, require_keys
from synth_jax.data import pipeline, preprocess, tfds_source
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.transfer import evaluate, fewshot, init, linear_probe, results

MODES = ("full", "fewshot", "linear_probe", "bridged")


def finetune_config(**overrides) -> ml_collections.ConfigDict:
    """Defaults of a fine-tuning config: the trainer's keys plus the transfer keys below."""
    from synth_jax.train import trainer

    config = trainer.train_config()
    config.update(
        dict(
            data=pipeline.data_config(),
            init_from="",  # pre-training workdir or checkpoint; '' = from scratch
            dont_load=("head/.*",),  # regexes of parameters NOT loaded (re-initialised)
            mode="full",
            fraction=1.0,  # share of the training split (full / linear_probe)
            shots=0,  # examples per class (fewshot / linear_probe); 0 = use fraction
            seeds=(),  # repeats; () = just config.seed
            results_csv="",  # '' = WORKDIR/results.csv
            eval_batch_size=256,
            linear_probe=ml_collections.ConfigDict(dict(l2=1e-4, steps=500)),
            bridged=ml_collections.ConfigDict(
                dict(
                    name="",  # TFDS name of the synthetic dataset of the target classes
                    data_dir="",  # its TFDS data_dir ('' = data.data_dir)
                    folder="",  # or an image folder SPLIT/CLASS/*.png, imported once
                    split="train",
                    total_steps=100,
                    lr=0.0,  # 0 = optim.lr
                    mixup=0.8,  # Beta(alpha, alpha) mixup in stage 1
                    reinit_head=True,  # stage 2 starts with a fresh head ("bridged transfer++")
                )
            ),
        )
    )
    config.update(overrides)
    return config


def _allowed_keys() -> dict:
    from synth_jax.train import trainer

    allowed = dict(trainer.TRAIN_KEYS)
    defaults = finetune_config()
    for key in defaults:
        if key not in allowed:
            value = defaults[key]
            allowed[key] = (
                {k: None for k in value} if isinstance(value, ml_collections.ConfigDict) else None
            )
    return allowed


def check_config(config: ml_collections.ConfigDict) -> None:
    """Everything that can be checked before data is opened or anything compiles."""
    require_keys(config, _allowed_keys())
    if config.mode not in MODES:
        raise UsageError(f"mode={config.mode!r}: one of {', '.join(MODES)}")
    if not 0.0 < config.fraction <= 1.0:
        raise UsageError(f"fraction={config.fraction}: a share of the training set in (0, 1]")
    if config.shots < 0:
        raise UsageError(f"shots={config.shots}: must be >= 0")
    if config.mode == "fewshot" and config.shots < 1:
        raise UsageError("mode=fewshot needs shots >= 1 (examples per class)")
    if config.mode in ("full", "bridged") and config.shots:
        raise UsageError(f"shots={config.shots} applies to mode fewshot or linear_probe")
    if config.shots and config.fraction != 1.0:
        raise UsageError("set shots or fraction, not both")
    if config.mode == "linear_probe" and config.linear_probe.l2 <= 0:
        raise UsageError(f"linear_probe.l2={config.linear_probe.l2}: must be > 0")
    from synth_jax.train import mesh as mesh_lib

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
    if config.mode == "linear_probe":
        from synth_jax.models import check_model_config

        check_model_config(config.model, config.image_size)
    else:  # the trainer's own checks (model, optimiser, durations), before any data is read
        from synth_jax.train import trainer

        trainer.validate(config, num_images=1, data_image_size=config.image_size)


def pretrain_columns(init_from: str) -> dict:
    """The pretrain_* and init_from cells of every row of runs starting from `init_from`."""
    info = results.pretrain_info(init_from or None)
    return {**info, "init_from": os.path.abspath(init_from) if init_from else None}


def results_path(config, workdir: str) -> str:
    return config.results_csv or os.path.join(workdir, "results.csv")


def select_examples(config, labels: np.ndarray, seed: int) -> np.ndarray | None:
    """Training indices for this repeat: k per class, a fraction, or None (all)."""
    if config.shots:
        return fewshot.k_per_class(labels, config.shots, seed)
    if config.fraction < 1.0:
        return fewshot.fraction_subset(labels, config.fraction, seed)
    return None


def _on_mesh(config, fn):
    """Wraps a jitted `fn(images)`: this host's uint8 rows go in batch-sharded over the mesh,
    and this host's rows of the output come back as numpy."""
    from jax.sharding import PartitionSpec as P

    from synth_jax.train import mesh as mesh_lib

    mesh = mesh_lib.make_mesh(config.mesh)
    sharding = mesh_lib.batch_sharding(mesh, 4)

    def run(images):
        out = fn(jax.make_array_from_process_local_data(sharding, np.asarray(images)))
        if jax.process_count() == 1:
            return np.asarray(out)
        from jax.experimental import multihost_utils

        spec = P(mesh_lib.BATCH_AXES, *([None] * (out.ndim - 1)))
        return np.asarray(multihost_utils.global_array_to_host_local_array(out, mesh, spec))

    return run


def _predict_fn(config, model):
    """images uint8[B, H, W, C] -> top-5 classes int32[B, 5], deterministic eval transform."""
    graphdef, state = nnx.split(model)
    size, mean, std = config.image_size, config.augment.mean, config.augment.std

    @jax.jit
    def predict(state, images):
        x = preprocess.eval_images(images, size, mean, std)
        return evaluate.top5_predictions(nnx.merge(graphdef, state)(x, train=False))

    return _on_mesh(config, lambda images: predict(state, images))


def _features_fn(config, model):
    """images uint8[B, H, W, C] -> the frozen backbone's features float32[B, D]."""
    graphdef, state = nnx.split(model)
    size, mean, std = config.image_size, config.augment.mean, config.augment.std

    @jax.jit
    def features(state, images):
        x = preprocess.eval_images(images, size, mean, std)
        return nnx.merge(graphdef, state).features(x, train=False).astype(jax.numpy.float32)

    return _on_mesh(config, lambda images: features(state, images))


def _row(config, workdir, run_workdir, seed, metrics, mode, pretrain) -> dict:
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


def _finish(config, workdir, run_workdir, seed, metrics, mode, pretrain, extra) -> dict:
    """Writes result.json and appends the results row (once per finished run)."""
    row = _row(config, workdir, run_workdir, seed, metrics, mode, pretrain)
    result = dict(row=row, per_class=metrics["per_class"].tolist(), top5=metrics["top5"], **extra)
    if jax.process_index() == 0:
        results.append_row(results_path(config, workdir), row)
        files.write_json(os.path.join(run_workdir, "result.json"), result)
    return result


def _done(run_workdir: str) -> dict | None:
    path = os.path.join(run_workdir, "result.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def train_and_evaluate(
    config, workdir, run_workdir, seed, mode, pretrain, indices=None, train_data=None
):
    """One fine-tuning run through the trainer, then the test-split evaluation and the row.

    `train_data` (a data config; default `config.data`) is what it trains on; the evaluation is
    always `config.data.eval_split`.

    Returns the result dict, or None when the run was preempted (re-run to resume).
    """
    from synth_jax.train import trainer

    done = _done(run_workdir)
    if done is not None:
        return done
    run_config = ml_collections.ConfigDict(config_to_dict(config))
    run_config.seed = seed
    train_data = train_data or config.data
    source = pipeline.make_source(
        train_data, train_data.train_split, config.batch_size, seed, True, indices
    )
    init_params = init_extra = None
    if config.init_from:
        init_params, init_extra, _ = init.load_pretrained(config.init_from)
    summary, model = trainer.train(
        run_config,
        run_workdir,
        source,
        num_classes=source.num_classes,
        init_params=init_params,
        init_extra=init_extra,
        dont_load=tuple(config.dont_load),
        extra_summary=dict(train_examples=source.num_examples),
    )
    source.close()
    if summary["status"] != "done":
        return None
    metrics = _evaluate_model(config, model, source.num_classes)
    extra = dict(train_examples=source.num_examples, steps=summary["steps"])
    return _finish(config, workdir, run_workdir, seed, metrics, mode, pretrain, extra)


def _evaluate_model(config, model, num_classes):
    eval_source = pipeline.make_source(
        config.data, config.data.eval_split, config.eval_batch_size, 0, False
    )
    if eval_source.num_classes != num_classes:
        raise UsageError(
            f"data.eval_split has {eval_source.num_classes} classes, the training split "
            f"{num_classes}"
        )
    try:
        return evaluate.evaluate(_predict_fn(config, model), eval_source, num_classes)
    finally:
        eval_source.close()


def _probe_digest(config, indices) -> str:
    """Names the feature cache after everything the features depend on."""
    key = json.dumps(
        [
            config.init_from,
            config_to_dict(config.model),
            config.image_size,
            config_to_dict(config.data),
            list(config.augment.mean),
            list(config.augment.std),
        ],
        default=str,
    ).encode()
    key += b"" if indices is None else np.asarray(indices, np.int64).tobytes()
    return hashlib.sha1(key).hexdigest()[:12]


def run_linear_probe(config, workdir, run_workdir, seed, pretrain, indices=None):
    """Frozen backbone -> cached features -> logistic regression -> test metrics and row.

    Returns the result dict; `result["backbone"]` is the model used (its non-head parameters are
    exactly the pre-trained ones).
    """
    from synth_jax.models import create_model

    done = _done(run_workdir)
    if done is not None:
        return done
    if jax.process_index() == 0:
        files.write_json(os.path.join(run_workdir, "config.json"), config_to_dict(config))
    train_source = pipeline.make_source(
        config.data, config.data.train_split, config.eval_batch_size, seed, False, indices
    )
    num_classes = train_source.num_classes
    model = create_model(config.model, num_classes, config.image_size, nnx.Rngs(params=seed))
    if config.init_from:
        init.load_into(model, config.model, config.init_from, tuple(config.dont_load))
    features_fn = _features_fn(config, model)
    digest = _probe_digest(config, indices)
    train_x, train_y = linear_probe.extract_features(
        features_fn, train_source, os.path.join(run_workdir, f"features_train_{digest}.npz")
    )
    eval_source = pipeline.make_source(
        config.data, config.data.eval_split, config.eval_batch_size, 0, False
    )
    test_x, test_y = linear_probe.extract_features(
        features_fn, eval_source, os.path.join(run_workdir, f"features_test_{digest}.npz")
    )
    w, b = linear_probe.fit_logistic_regression(
        train_x, train_y, num_classes, config.linear_probe.l2, config.linear_probe.steps
    )
    top = np.asarray(evaluate.top5_predictions(test_x @ w + b))
    metrics = evaluate.classification_metrics(top, test_y, num_classes)
    if jax.process_index() == 0:
        with files.atomic_path(os.path.join(run_workdir, "head.npz")) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, kernel=np.asarray(w), bias=np.asarray(b))
    extra = dict(train_examples=len(train_y), l2=config.linear_probe.l2)
    result = _finish(config, workdir, run_workdir, seed, metrics, "linear_probe", pretrain, extra)
    return {**result, "backbone": model}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every repeat of the configured mode; returns the summary (rows, mean, std).

    The summary's `row` is the (last) results row, as the shared contract asks; `rows` holds one
    per seed, `top1_mean` / `top1_std` summarise them.
    """
    check_config(config)
    if config.mode == "bridged":
        from synth_jax.transfer import bridged

        return bridged.run(config, workdir)
    workdir = os.path.abspath(workdir)
    csv_path = results_path(config, workdir)
    results.check_table(csv_path)
    pretrain = pretrain_columns(config.init_from)
    seeds = list(config.seeds) or [int(config.seed)]
    labels = None
    if config.shots or config.fraction < 1.0:
        opened = tfds_source.open_split(
            config.data.name, config.data.train_split, config.data.data_dir or None
        )
        labels = tfds_source.read_labels(opened)
    mode = config.mode
    rows, preempted = [], False
    for seed in seeds:
        run_workdir = os.path.join(workdir, f"seed_{seed}") if len(seeds) > 1 else workdir
        indices = select_examples(config, labels, seed) if labels is not None else None
        if mode == "linear_probe":
            result = run_linear_probe(config, workdir, run_workdir, seed, pretrain, indices)
        else:
            result = train_and_evaluate(config, workdir, run_workdir, seed, mode, pretrain, indices)
        if result is None:
            preempted = True
            break
        rows.append(result["row"])
    top1 = [float(r["top1"]) for r in rows]
    summary = dict(
        status="preempted" if preempted else "done",
        mode=mode,
        rows=rows,
        row=rows[-1] if rows else None,
        results_csv=csv_path,
    )
    if top1:
        summary["top1_mean"], summary["top1_std"] = fewshot.mean_std(top1)
    if not preempted and len(seeds) > 1 and jax.process_index() == 0:
        files.write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def main(argv: list[str]) -> int:
    """Exit codes: 0 done, 2 bad input, 143 stopped by SIGTERM after a checkpoint (rerun it)."""
    from synth_jax.train.pretrain import EXIT_PREEMPTED

    config, rest = config_from_argv(argv, required=not ({"-h", "--help"} & set(argv)))
    parser = ArgumentParser(
        prog="synth-jax finetune",
        description="Fine-tune, linear-probe or few-shot a model on real data: --config "
        "configs/finetune/NAME.py[:cpu] --workdir DIR [--config.KEY=VALUE ...]",
    )
    parser.add_argument("--workdir", required=True, help="run folder (re-run to resume)")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0, for multi-process runs")
    parser.add_argument("--num-processes", type=int, help="number of processes in the run")
    parser.add_argument("--process-id", type=int, help="this process's index, 0..N-1")
    args = parser.parse_args(rest)
    from synth_jax.train import mesh

    # Before anything touches a device: every process must agree on the device list.
    mesh.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
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
    print(f"results appended to {summary['results_csv']}")
    return 0
