"""The one trainer: pre-training on on-device fractals, supervised pre-training on real data, and
fine-tuning all run through `train(...)`.

    summary, model = train(config, workdir, source, num_classes=C)

Data sources (the only interface between data and trainer):
  * on-device: an object with
        render(seed, indices int32[B]) -> (images uint8|bfloat16[B,H,W,3], labels int32[B]
            or multi-hot int32[B, C])
        indices_for_step(seed, step, batch_size) -> int32[B]
        num_images, image_size
    (synth_jax.fractals.FractalDataset). Both functions are pure and jittable; the batch of step t
    is rendered inside the jitted step from (config.seed, t), already sharded over the batch axes.
  * host-fed: an iterator yielding {"image": np[b,H,W,3] uint8|float, "label": np int32[b]
    or int32[b, C]}
    where b = global batch / process count (each process feeds its own slice), with
        get_state() -> JSON-able, set_state(state)
    and optionally `num_images` (for `total_epochs`). Its state is saved with every checkpoint,
    so a resumed run sees the same batches.

Objective (the loss seam, synth_jax.train.objective; config.objective.type picks one,
synth_jax.train.objectives): supervised by default, softmax cross-entropy for class ids; for
multi-hot labels (several classes per image), Anderson & Farrell's weighted binary
cross-entropy, and the logged `accuracy` is then top-1-in-positives (see
synth_jax.train.losses). `simclr` (contrastive, synth_jax.train.simclr) and `mae` (masked
autoencoder of a ViT, synth_jax.train.mae) pre-train without the labels.

Fine-tuning: `init_params` (a nested dict as returned by checkpoint.load_params) replaces the
fresh parameters except those matching `dont_load` regexes (e.g. ("head/.*",)); the model module
adapts what differs (synth_jax.models: a ViT resamples a position embedding of another grid);
`init_model_state` (the checkpoint's non-parameter state: batch-norm statistics) is loaded the
same way. `config.optim.trainable` trains only the parameters it matches; `config.inference_mode`
runs the model as at evaluation while it trains (no dropout or drop-path, batch statistics
frozen): set both for a frozen backbone. A config that lacks a trainer key runs with its default.

Evaluators (`config.evals.<name>`, synth_jax.evaluators) run every `every_steps` steps and at the
end; their metrics share the metrics row of the step.

The workdir receives config.json, metrics.jsonl, tensorboard/, checkpoints/ and, at the end,
summary.json. Re-running with the same workdir resumes from the newest good checkpoint; what a
rerun may change, and what it refuses (another experiment, a changed schedule without `extend`,
a start from step 0 in a workdir that had checkpoints without `restart`), is
synth_jax.train.workdir, decided before anything is written.

A non-finite loss or gradient stops the run: the jitted step never commits such an update (it
keeps the previous state and marks it), the host finds the mark before every save, evaluation
and logged row, and the run ends with TrainingDiverged (one line naming the step, exit code 2);
the checkpoints hold finite values only, summary.json says `diverged`.

A run, top to bottom, in named phases (`train` is the short loop that calls them):
  prepare    synth_jax.train.prepare: the config's checks and resolved durations, and what the
             workdir allows, before anything compiles or is written
  step       synth_jax.train.step: the step program (model, shardings, the loss seam of
             synth_jax.train.objective, the update with accumulation and the finite guard)
  evaluators `open_evaluators`: opened before anything is written (a missing dataset stops)
  restore    `restore_or_init`: the newest good checkpoint, or a fresh state (created sharded);
             then the on-device step is compiled (step.compile_with_flops)
  loop       `run_loop`: steps, and after each the hooks on their schedules
             (synth_jax.train.hooks: log, evaluate, checkpoint, preemption, divergence)
  summary    `summarise`: summary.json
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from synth_jax import evaluators, files
from synth_jax.errors import UsageError
from synth_jax.models import flops as flops_lib
from synth_jax.train import checkpoint as ckpt
from synth_jax.train import hooks as hooks_lib
from synth_jax.train import lock
from synth_jax.train import mesh as mesh_lib
from synth_jax.train import metrics as metrics_lib
from synth_jax.train import step as step_lib
from synth_jax.train import workdir as workdir_lib
from synth_jax.train.metrics import log_line
from synth_jax.train.prepare import Run, prepare, train_config, validate
from synth_jax.train.step import StepProgram, build_step

# The trainer's interface; the phases live in the modules the docstring names.
__all__ = ["TrainingDiverged", "StepProgram", "build_step", "train", "train_config", "validate"]


class TrainingDiverged(UsageError):
    """The loss or a gradient became NaN or infinite: the run stopped at that step (one line,
    exit code 2); its checkpoints hold the finite state before it."""

    def __init__(self, step: int, last_checkpoint: int | None):
        kept = f"step {last_checkpoint}" if last_checkpoint is not None else "none"
        super().__init__(
            f"step {step}: the loss or a gradient is not finite; stopped without keeping that "
            f"update (last checkpoint: {kept}, finite): lower optim.lr, set "
            f"optim.grad_clip_norm, or check the data"
        )


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    source,
    *,
    num_classes: int,
    init_params: dict | None = None,
    init_model_state: dict | None = None,
    dont_load: tuple[str, ...] = (),
    extra_summary: dict | None = None,
    extend: bool | None = None,
    restart: bool = False,
):
    """Runs (or resumes) a training run; returns (summary dict, trained nnx model).

    `extend`: a rerun may change the learning-rate schedule (total_steps / total_epochs) and
    continues under the new one (recorded in extensions.json); None where the command offers no
    --extend (fine-tunes), so the refusal does not suggest it. `restart`: a workdir that had
    checkpoints and has none left may start again from step 0. Raises UsageError (one line) for
    what it refuses, TrainingDiverged when the loss or a gradient is not finite.

    One run per workdir: process 0 holds WORKDIR/run.lock (synth_jax.train.lock) from the
    workdir's check to the end; a second run there is refused in one line."""
    run = prepare(config, workdir, source, extend=extend, restart=restart)
    try:
        return _train(
            run, source, num_classes, init_params, init_model_state, dont_load, extra_summary
        )
    finally:
        if jax.process_index() == 0:
            lock.release(run.workdir)


def _train(run: Run, source, num_classes, init_params, init_model_state, dont_load, extra_summary):
    """`train` after `prepare`: build, restore, compile, loop, summarise."""
    t_start = time.perf_counter()

    # ------------------------------------------------------------------ the step program
    mesh = mesh_lib.make_mesh(run.config.mesh)
    program = build_step(
        run.config,
        run.resolved,
        source,
        num_classes=num_classes,
        mesh=mesh,
        init_params=init_params,
        init_model_state=init_model_state,
        dont_load=dont_load,
    )
    evals = open_evaluators(run, program, num_classes)

    # ------------------------------------------------------------------ restore, then compile
    manager = ckpt.make_manager(
        run.workdir,
        run.config.checkpoint.every_steps,
        run.config.checkpoint.keep,
        run.config.checkpoint.async_save,
    )
    try:
        start_step, state, resumed = restore_or_init(manager, run, program, source)
        finished = resumed and workdir_lib.finished_summary(
            run.workdir, run.config_dict, start_step
        )
        if finished:
            log_line(f"{run.workdir}: finished earlier, same config; its summary.json stands")
            manager.close()
            evaluators.close(evals)
            return finished, program.model_of(state)
        workdir_lib.commit(run.workdir, run.config_dict, run.plan)  # the run starts here
        # On-device data: compile now (not inside the loop) and read XLA's FLOPs for HFU.
        # Host-fed batches may be uint8 or float of any size: that step compiles on first call.
        step_fn, hardware_flops = program.step_fn, None
        if run.on_device:
            step_fn, hardware_flops = step_lib.compile_with_flops(program)
    except BaseException:
        manager.close()
        evaluators.close(evals)
        raise
    log_line(f"compiled the train step in {time.perf_counter() - t_start:.1f}s")

    # ------------------------------------------------------------------ the loop and its hooks
    formula_flops = model_flops(run, num_classes, program.objective.forward_images)
    meter = metrics_lib.Throughput(run.global_batch, formula_flops, hardware_flops)
    hooks = make_hooks(run, program, manager, evals, source, start_step, meter)
    next_batch = None if run.on_device else host_batches(source, mesh)
    t_loop = time.perf_counter()
    with hooks:
        outcome = run_loop(step_fn, state, start_step, run.total_steps, next_batch, hooks)
    timing = dict(train_loop_s=time.perf_counter() - t_loop, wall_s=time.perf_counter() - t_start)

    # ------------------------------------------------------------------ summary
    resumed_from = start_step if resumed else None
    summary = summarise(run, program, hooks, outcome, resumed_from, num_classes, timing)
    summary = files.finite_json({**summary, **(extra_summary or {})})
    if outcome.status != "preempted" and jax.process_index() == 0:
        files.write_json(os.path.join(run.workdir, "summary.json"), summary)
    if outcome.diverged_at is not None:
        raise TrainingDiverged(outcome.diverged_at, summary["last_checkpoint"])
    return summary, program.model_of(outcome.state)


def open_evaluators(run: Run, program: StepProgram, num_classes: int) -> list:
    """The run's evaluators, opened now so that a missing dataset stops the run before it
    starts; logs what the step program holds and where it runs."""
    params = len(jax.tree.leaves(program.params_template))
    log_line(
        f"{params} parameter arrays; parameters + optimiser state: "
        f"{program.state_bytes_per_device / 2**20:.1f} MiB per device"
    )
    evals = evaluators.build(
        run.config.evals,
        mesh=program.mesh,
        image_size=run.resolved["image_size"],
        mean=tuple(run.config.augment.mean),
        std=tuple(run.config.augment.std),
        num_classes=num_classes,
        workdir=run.workdir,
    )
    log_line(
        f"mesh {dict(program.mesh.shape)} over {jax.device_count()} devices "
        f"({jax.process_count()} processes, {jax.devices()[0].device_kind}); "
        f"{run.total_steps} steps of {run.global_batch} images"
    )
    if program.loaded is not None:
        log_line(
            f"initialised {len(program.loaded)} of {params} parameter arrays from the given "
            f"parameters"
        )
    return evals


def restore_or_init(manager, run: Run, program: StepProgram, source) -> tuple[int, dict, bool]:
    """(start step, state, resumed): the newest good checkpoint's (and the host-fed source's
    position there), or a fresh state at step 0 holding the given parameters, created sharded."""
    restored = ckpt.restore_latest(manager, run.workdir, program.abstract_state, log=log_line)
    if restored is None:
        init = jax.jit(program.init_state, out_shardings=program.state_shardings)
        return 0, init(program.loaded, program.loaded_model_state), False
    start_step, state, data_state = restored
    if not run.on_device:
        source.set_state(data_state["source"])
    where = ckpt.checkpoint_dir(run.workdir)
    log_line(f"resumed from the checkpoint at step {start_step} in {where}")
    if start_step > run.total_steps:
        raise UsageError(
            f"total_steps: the workdir's checkpoint is at step {start_step}, beyond "
            f"{run.total_steps}; raise total_steps or use another --workdir"
        )
    return start_step, state, True


def model_flops(run: Run, num_classes: int, forward_images: float = 1.0) -> float | None:
    """The model's FLOPs per step by formula (synth_jax.models.flops), or None without one;
    forward_images: images the model sees per row (the objective's; its head or decoder is not
    counted)."""
    per_image = flops_lib.train_flops(run.config.model, run.resolved["image_size"], num_classes)
    return None if per_image is None else per_image * run.global_batch * forward_images


def make_hooks(
    run: Run, program, manager, evals, source, start_step: int, meter
) -> hooks_lib.Hooks:
    """The hooks of the loop (synth_jax.train.hooks) over this run's workdir."""
    writer = metrics_lib.MetricWriter(run.workdir, run.total_steps, start_step, log=log_line)
    return hooks_lib.Hooks(
        run.total_steps,
        int(run.config.log_every_steps),
        hooks_lib.MetricRows(writer, meter),
        hooks_lib.Evaluations(evals, run.total_steps, program.model_of, meter),
        hooks_lib.Checkpoints(
            manager,
            run.workdir,
            int(run.config.checkpoint.every_steps),
            None if run.on_device else source,
            int(run.config.seed),
        ),
    )


def host_batches(source, mesh):
    """`next_batch() -> {"image", "label"}`: the host-fed source's next batch as global arrays
    over the batch axes (each process gives its own rows)."""
    image_sharding = mesh_lib.batch_sharding(mesh, 4)
    label_sharding = mesh_lib.batch_sharding(mesh, 1)

    def next_batch():
        item = next(source)
        image = np.asarray(item["image"])
        label = np.asarray(item["label"], np.int32)
        return dict(
            image=jax.make_array_from_process_local_data(image_sharding, image),
            label=jax.make_array_from_process_local_data(label_sharding, label),
        )

    return next_batch


class Outcome(NamedTuple):
    state: dict
    steps: int  # done, with a finite state
    status: str  # done | preempted | diverged
    diverged_at: int | None  # the non-finite step


def run_loop(step_fn, state, step: int, total_steps: int, next_batch, hooks) -> Outcome:
    """Steps from `step` to `total_steps`, the hooks after each (synth_jax.train.hooks).
    next_batch: None for on-device data (the step makes its batch), else host_batches'."""
    preempted = False
    try:
        with jax.transfer_guard("disallow"):  # no silent host-device copy in the hot loop
            while step < total_steps and not preempted:
                if next_batch is None:
                    state, metrics = step_fn(state)
                else:
                    state, metrics = step_fn(state, next_batch())
                step += 1
                preempted = hooks.after_step(step, state, metrics)
        hooks.finish(step, state, preempted)
    except hooks_lib.Diverged as e:  # the state holds the steps before the non-finite one
        return Outcome(state, e.step - 1, "diverged", e.step)
    return Outcome(state, step, "preempted" if preempted else "done", None)


def summarise(run: Run, program, hooks, outcome: Outcome, resumed_from, num_classes, timing):
    """summary.json's fields. resumed_from: the checkpoint's step or None; timing:
    {train_loop_s, wall_s}."""
    last = hooks.rows.writer.last_row
    rates = hooks.rows.rates
    last_checkpoint = ckpt.steps_on_disk(run.workdir)[-1:] or [None]
    return dict(
        status=outcome.status,
        steps=outcome.steps,
        diverged_at_step=outcome.diverged_at,
        last_checkpoint=last_checkpoint[0],
        total_steps=run.total_steps,
        resumed_from=resumed_from,
        images_seen=outcome.steps * run.global_batch,
        final_loss=last.get("loss"),
        final_accuracy=last.get("accuracy"),
        images_per_s=float(np.median(rates)) if rates else None,
        **timing,
        devices=jax.device_count(),
        mesh=dict(program.mesh.shape),
        state_bytes_per_device=program.state_bytes_per_device,
        device_kind=jax.devices()[0].device_kind,
        num_classes=num_classes,
        num_images=run.num_images,
        workdir=run.workdir,
        evals={name: jax.tree.map(_to_json, m) for name, m in hooks.evaluations.results.items()},
        extensions=workdir_lib.extensions(run.workdir) if jax.process_index() == 0 else [],
        config=run.config_dict,
    )


def _to_json(value):
    """A metric as JSON: numpy arrays as lists, numpy scalars as numbers."""
    return value.tolist() if hasattr(value, "tolist") else value
