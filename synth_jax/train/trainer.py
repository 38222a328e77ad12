"""The one trainer: pre-training on on-device fractals, supervised pre-training on real data, and
fine-tuning / linear probing all run through `train(...)`.

    summary, model = train(config, workdir, source, num_classes=C)

Data sources (the only interface between data and trainer):
  * on-device: an object with
        render(seed, indices int32[B]) -> (images uint8|bfloat16[B,H,W,3], labels int32[B])
        indices_for_step(seed, step, batch_size) -> int32[B]
        num_images, image_size
    (synth_jax.fractals.FractalDataset). Both functions are pure and jittable; the batch of step t
    is rendered inside the jitted step from (config.seed, t), already sharded over the batch axes.
  * host-fed: an iterator yielding {"image": np[b,H,W,3] uint8|float, "label": np int32[b]}
    where b = global batch / process count (each process feeds its own slice), with
        get_state() -> JSON-able, set_state(state)
    and optionally `num_images` (for `total_epochs`). Its state is saved with every checkpoint,
    so a resumed run sees the same batches.

Fine-tuning: `init_params` (a nested dict as returned by checkpoint.load_params) replaces the
fresh parameters except those matching `dont_load` regexes (e.g. ("head/.*",)); a position
embedding of another grid size is resampled; `init_extra` (the checkpoint's "extra": batch-norm
statistics) is loaded the same way. `config.optim.trainable` freezes the rest (linear
probe), and then the model runs in inference mode (no dropout, frozen batch statistics).

The workdir receives config.json, metrics.jsonl, tensorboard/, checkpoints/ and, at the end,
summary.json. Re-running with the same workdir resumes from the newest good checkpoint.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from synth_jax import files
from synth_jax.config import config_to_dict
from synth_jax.errors import UsageError
from synth_jax.models import check_model_config, create_model, model_config
from synth_jax.models import flops as flops_lib
from synth_jax.train import augment as augment_lib
from synth_jax.train import checkpoint as ckpt
from synth_jax.train import local_batch
from synth_jax.train import mesh as mesh_lib
from synth_jax.train import metrics as metrics_lib
from synth_jax.train import optim as optim_lib

# Keys the trainer reads; other top-level keys (data, dataset, ...) belong to the caller.
TRAIN_KEYS = {
    "seed": None,
    "batch_size": None,
    "total_steps": None,
    "total_epochs": None,
    "image_size": None,
    "log_every_steps": None,
    "model": {
        k: None
        for k in (
            "name",
            "dtype",
            "pool",
            "posemb",
            "dropout",
            "drop_path",
            "norm",
            "head_zero_init",
        )
    },
    "optim": {k: None for k in optim_lib.OPTIM_KEYS},
    "augment": {k: None for k in augment_lib.AUGMENT_KEYS},
    "mesh": {k: None for k in mesh_lib.MESH_AXES},
    "checkpoint": {"every_steps": None, "keep": None, "async_save": None},
}

# Keys a resumed run may change (extending the run, logging, checkpointing, or moving it to
# another mesh: the state restores onto any mesh); any other change needs a new workdir.
RESUMABLE_CHANGES = ("total_steps", "total_epochs", "log_every_steps", "checkpoint.", "mesh.")


def train_config(**overrides) -> ml_collections.ConfigDict:
    """The trainer's defaults; callers add their own sections (e.g. `data`)."""
    config = ml_collections.ConfigDict(
        dict(
            seed=0,
            batch_size=128,
            total_steps=0,
            total_epochs=0.0,
            image_size=0,  # 0: the data's size
            log_every_steps=10,
            model=model_config("Ti/16"),
            optim=optim_lib.optim_config(),
            augment=augment_lib.augment_config(),
            mesh=ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1)),
            checkpoint=ml_collections.ConfigDict(dict(every_steps=1000, keep=3, async_save=True)),
        )
    )
    config.update(overrides)
    return config


def validate(config, num_images: int | None, data_image_size: int | None) -> dict:
    """Checks the trainer's keys before anything compiles; returns resolved durations.

    Raises UsageError naming the key. Returns {total_steps, steps_per_epoch, image_size,
    mesh_shape}.
    """

    def fail(message):
        raise UsageError(message)

    for section, sub in TRAIN_KEYS.items():
        if isinstance(sub, dict) and section in config:
            unknown = sorted(set(config[section].keys()) - set(sub))
            if unknown:
                fail(
                    f"config key '{section}.{unknown[0]}' is unknown; known keys here: "
                    f"{', '.join(sorted(sub))}"
                )
    image_size = int(config.get("image_size", 0) or data_image_size or 0)
    if image_size <= 0:
        fail("image_size: set it (the model's input size in pixels)")
    for check in (
        check_model_config(config.model, image_size),
        optim_lib.check_optim_config(config.optim),
        augment_lib.check_augment_config(config.augment),
    ):
        if check:
            fail(check)
    try:
        shape = mesh_lib.mesh_shape(config.mesh, jax.device_count())
    except ValueError as e:
        fail(str(e))
    dp = shape["data"] * shape["fsdp"]
    batch = int(config.batch_size)
    if batch <= 0 or batch % dp:
        fail(
            f"batch_size={batch}: the global batch must be a positive multiple of the "
            f"data-parallel size {dp} (mesh data x fsdp)"
        )
    accum = int(config.optim.accum_steps)
    if batch % accum or (batch // accum) % dp:
        fail(
            f"optim.accum_steps={accum}: batch_size {batch} must split into {accum} "
            f"micro-batches that are each a multiple of the data-parallel size {dp}"
        )
    per_device = batch // dp
    if (config.augment.mixup > 0 or config.augment.cutmix > 0) and per_device % 2:
        fail(
            f"batch_size={batch}: with mixup or cutmix each device's share of the batch must be "
            f"even (it mixes neighbouring images on one device), not {per_device} (data x fsdp "
            f"= {dp}); change batch_size or the mesh"
        )
    if batch % jax.process_count():
        fail(f"batch_size={batch}: must be a multiple of the process count {jax.process_count()}")
    steps_per_epoch = num_images / batch if num_images else float("nan")
    if config.total_steps > 0 and config.total_epochs > 0:
        fail("total_steps and total_epochs are both set; set one (the other to 0)")
    if config.total_steps > 0:
        total = int(config.total_steps)
    elif config.total_epochs > 0:
        if not num_images:
            fail("total_epochs needs a source with num_images; set total_steps instead")
        total = max(1, int(math.ceil(config.total_epochs * steps_per_epoch)))
    else:
        fail("total_steps: set total_steps or total_epochs to a positive number")
    if config.optim.warmup_epochs and not num_images:
        fail("optim.warmup_epochs needs a source with num_images; use optim.warmup_steps")
    if config.log_every_steps < 1:
        fail(f"log_every_steps={config.log_every_steps}: must be >= 1")
    return dict(
        total_steps=total, steps_per_epoch=steps_per_epoch, image_size=image_size, mesh_shape=shape
    )


def _xla_flops(lowered) -> float | None:
    """XLA's FLOPs of a lowered program (all devices; a loop's body counted once), or None."""
    try:
        cost = lowered.cost_analysis()
    except Exception:  # cost analysis is optional on some backends
        return None
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0)) or None


def _log(message: str):
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


def _flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_same_run(workdir: str, config_dict: dict):
    """A resumed workdir must hold the same experiment: name the first key that differs."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    import json

    with open(path) as f:
        old = _flatten(json.load(f))
    new = _flatten(json.loads(json.dumps(config_dict, default=files._json_default)))
    for key in sorted(set(old) | set(new)):
        if key.startswith(RESUMABLE_CHANGES) or key in RESUMABLE_CHANGES:
            continue
        if old.get(key) != new.get(key):
            raise UsageError(
                f"{workdir} holds a run whose config differs at {key!r} "
                f"({old.get(key)!r} there, {new.get(key)!r} now); use another --workdir"
            )


def resample_posemb(posemb: np.ndarray, num_tokens: int) -> np.ndarray:
    """Bilinear resampling of a learned position embedding [1, g*g, D] to [1, num_tokens, D]."""
    old = int(round(math.sqrt(posemb.shape[1])))
    new = int(round(math.sqrt(num_tokens)))
    grid = np.asarray(posemb, np.float32).reshape(old, old, -1)
    grid = jax.image.resize(grid, (new, new, grid.shape[-1]), "bilinear")
    return np.asarray(grid).reshape(1, new * new, -1)


def select_init_params(abstract_params, init_params, dont_load=()) -> dict:
    """{path: array} of the loaded parameters to use, checked against this model's shapes."""
    loaded = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(init_params)[0]:
        loaded[optim_lib.param_path(path)] = leaf
    patterns = [re.compile(p) for p in dont_load]
    chosen = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_params)[0]:
        name = optim_lib.param_path(path)
        if any(p.fullmatch(name) for p in patterns) or name not in loaded:
            continue
        value = np.asarray(loaded[name])
        if value.shape != leaf.shape:
            if name.endswith("posemb") and value.ndim == 3 and value.shape[2] == leaf.shape[2]:
                value = resample_posemb(value, leaf.shape[1])
            else:
                raise UsageError(
                    f"initial parameter {name!r} has shape {value.shape} but the model needs "
                    f"{leaf.shape}; add it to dont_load or use a matching model"
                )
        chosen[name] = value.astype(leaf.dtype)
    if not chosen:
        raise UsageError("no initial parameter matches the model's parameter names")
    return chosen


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    source,
    *,
    num_classes: int,
    init_params: dict | None = None,
    init_extra: dict | None = None,
    dont_load: tuple[str, ...] = (),
    extra_summary: dict | None = None,
):
    """Runs (or resumes) a training run; returns (summary dict, trained nnx model)."""
    # ------------------------------------------------------------------ validate, before compiling
    on_device = hasattr(source, "render") and hasattr(source, "indices_for_step")
    if not on_device and not (hasattr(source, "get_state") and hasattr(source, "set_state")):
        raise TypeError(
            "source: a FractalDataset-like object or an iterator with get_state()/set_state()"
        )
    num_images = getattr(source, "num_images", None)
    resolved = validate(config, num_images, getattr(source, "image_size", None))
    total_steps, image_size = resolved["total_steps"], resolved["image_size"]
    seed, global_batch = int(config.seed), int(config.batch_size)
    accum = int(config.optim.accum_steps)
    workdir = os.path.abspath(workdir)
    config_dict = config_to_dict(config)
    _check_same_run(workdir, config_dict)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        files.write_json(os.path.join(workdir, "config.json"), config_dict)
    t_start = time.perf_counter()

    # ------------------------------------------------------------------ mesh
    mesh = mesh_lib.make_mesh(config.mesh)
    image_sharding = mesh_lib.batch_sharding(mesh, 4)
    label_sharding = mesh_lib.batch_sharding(mesh, 1)
    repl = mesh_lib.replicated(mesh)
    _log(
        f"mesh {dict(mesh.shape)} over {jax.device_count()} devices "
        f"({jax.process_count()} processes, {jax.devices()[0].device_kind}); "
        f"{total_steps} steps of {global_batch} images"
    )

    # ------------------------------------------------------------------ model and optimiser
    def fresh_model():
        return create_model(config.model, num_classes, image_size, nnx.Rngs(params=seed))

    abstract_model = nnx.eval_shape(fresh_model)
    graphdef, abstract_params, abstract_extra = nnx.split(abstract_model, nnx.Param, ...)
    params_template = nnx.to_pure_dict(abstract_params)
    tx, schedule = optim_lib.make_optimizer(
        config.optim, params_template, total_steps, resolved["steps_per_epoch"]
    )
    # Linear probing: the frozen backbone runs in inference mode.
    model_train_mode = not config.optim.trainable

    def apply_model(params, extra, images, train_mode, rng):
        """(pure params, pure extra, images) -> (logits, updated extra)."""
        p = jax.tree.map(lambda x: x, abstract_params)
        e = jax.tree.map(lambda x: x, abstract_extra)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(e, extra)
        model = nnx.merge(graphdef, p, e)
        logits = model(images, train=train_mode, rng=rng)
        return logits, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))

    # ------------------------------------------------------------------ shard and create the state
    param_shardings = mesh_lib.param_shardings(abstract_params, mesh)
    extra_template = nnx.to_pure_dict(abstract_extra)
    abstract_opt = jax.eval_shape(tx.init, params_template)
    opt_shardings = mesh_lib.optimizer_shardings(tx, abstract_opt, param_shardings, mesh)
    state_shardings = dict(
        params=param_shardings,
        extra=jax.tree.map(lambda _: repl, extra_template),
        opt_state=opt_shardings,
        step=repl,
    )

    loaded = None
    if init_params is not None:
        loaded = select_init_params(params_template, init_params, dont_load)
        _log(
            f"initialised {len(loaded)} of {len(jax.tree.leaves(params_template))} parameter "
            f"arrays from the given parameters"
        )

    # Batch-norm statistics travel with the parameters they normalise for (ResNets).
    loaded_extra = None
    if init_extra and jax.tree.leaves(extra_template):
        loaded_extra = select_init_params(extra_template, init_extra, dont_load)

    def init_state(loaded, loaded_extra):
        _, params, extra = nnx.split(fresh_model(), nnx.Param, ...)
        params, extra = nnx.to_pure_dict(params), nnx.to_pure_dict(extra)
        for chosen, tree in ((loaded, params), (loaded_extra, extra)):
            if chosen:
                tree.update(
                    jax.tree_util.tree_map_with_path(
                        lambda path, x, chosen=chosen: chosen.get(optim_lib.param_path(path), x),
                        tree,
                    )
                )
        return dict(
            params=params,
            extra=extra,
            opt_state=tx.init(params),
            step=jnp.zeros((), jnp.int32),
        )

    abstract_state = jax.eval_shape(init_state, loaded, loaded_extra)
    abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        state_shardings,
    )
    state_bytes = mesh_lib.bytes_per_device(abstract_state, state_shardings)
    _log(
        f"{len(jax.tree.leaves(params_template))} parameter arrays; parameters + optimiser "
        f"state: {state_bytes / 2**20:.1f} MiB per device"
    )

    # ------------------------------------------------------------------ update step
    def loss_and_metrics(params, extra, images, targets, labels, rng):
        logits, extra = apply_model(params, extra, images, model_train_mode, rng)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32).sum()
        return loss, (extra, correct)

    grad_fn = jax.value_and_grad(loss_and_metrics, has_aux=True)

    make_batch = local_batch.batch_fn(
        mesh,
        source if on_device else None,
        seed=seed,
        global_batch=global_batch,
        num_classes=num_classes,
        image_size=image_size,
        augment_config=config.augment,
    )

    def train_step(state, batch=None):
        step = state["step"]
        rng = jax.random.fold_in(jax.random.key(seed), step)
        k_aug, k_model = jax.random.split(rng)
        # Each device renders (batch is None) and augments the rows of its own batch shard.
        images, targets, labels = make_batch(step, k_aug, batch)
        params, extra = state["params"], state["extra"]
        if accum == 1:
            (loss, (extra, correct)), grads = grad_fn(
                params, extra, images, targets, labels, k_model
            )
        else:
            # Micro-batch j takes rows j, j+A, j+2A, ...: each keeps the batch sharding.
            def micro(x):
                x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1)
                spec = P(None, mesh_lib.BATCH_AXES, *([None] * (x.ndim - 2)))
                return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

            def body(carry, xs):
                grads, extra, loss, correct = carry
                im, tg, lb, j = xs
                (micro_loss, (extra, c)), g = grad_fn(
                    params, extra, im, tg, lb, jax.random.fold_in(k_model, j)
                )
                grads = jax.tree.map(jnp.add, grads, g)
                return (grads, extra, loss + micro_loss, correct + c), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            carry = (zeros, extra, jnp.float32(0), jnp.float32(0))
            xs = (micro(images), micro(targets), micro(labels), jnp.arange(accum))
            (grads, extra, loss, correct), _ = jax.lax.scan(body, carry, xs)
            grads = jax.tree.map(lambda g: g / accum, grads)
            loss = loss / accum
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        params = optax.apply_updates(params, updates)
        new_state = dict(params=params, extra=extra, opt_state=opt_state, step=step + 1)
        metrics = dict(
            loss=loss,
            accuracy=correct / global_batch,
            grad_norm=optax.tree.norm(grads),
            lr=jnp.asarray(schedule(step), jnp.float32),
        )
        return new_state, metrics

    batch_shardings = None if on_device else dict(image=image_sharding, label=label_sharding)
    step_fn = jax.jit(
        train_step,
        in_shardings=(state_shardings,) if on_device else (state_shardings, batch_shardings),
        out_shardings=(state_shardings, repl),
        donate_argnums=(0,),
    )

    # ------------------------------------------------------------------ load checkpoint or init
    every = int(config.checkpoint.every_steps)
    manager = ckpt.make_manager(
        workdir, every, config.checkpoint.keep, config.checkpoint.async_save
    )
    restored = ckpt.restore_latest(manager, workdir, abstract_state, log=_log)
    if restored is not None:
        start_step, state, data_state = restored
        if not on_device:
            source.set_state(data_state["source"])
        _log(f"resumed from the checkpoint at step {start_step} in {ckpt.checkpoint_dir(workdir)}")
        if start_step > total_steps:
            raise UsageError(
                f"total_steps: the workdir's checkpoint is at step {start_step}, beyond "
                f"{total_steps}; raise total_steps or use another --workdir"
            )
    else:
        start_step = 0
        state = jax.jit(init_state, out_shardings=state_shardings)(loaded, loaded_extra)

    def data_state():
        return {"source": None if on_device else source.get_state(), "seed": seed}

    def next_batch():
        item = next(source)
        return dict(
            image=jax.make_array_from_process_local_data(image_sharding, np.asarray(item["image"])),
            label=jax.make_array_from_process_local_data(
                label_sharding, np.asarray(item["label"], np.int32)
            ),
        )

    # On-device data: compile now (not inside the loop) and read XLA's FLOPs for HFU.
    # Host-fed batches may be uint8 or float of any size: that step compiles on its first call.
    model_flops = flops_lib.train_flops(config.model, image_size, num_classes) * global_batch
    hardware_flops = None
    if on_device:
        lowered = step_fn.lower(abstract_state)
        hardware_flops = _xla_flops(lowered)
        if hardware_flops and accum > 1:  # XLA counts the accumulation loop's body once
            micro = global_batch // accum
            shape = jax.ShapeDtypeStruct
            micro_step = jax.jit(grad_fn).lower(
                abstract_state["params"],
                abstract_state["extra"],
                shape((micro, image_size, image_size, 3), jnp.float32),
                shape((micro, num_classes), jnp.float32),
                shape((micro,), jnp.int32),
                jax.eval_shape(lambda: jax.random.key(0)),
            )
            hardware_flops += (accum - 1) * (_xla_flops(micro_step) or 0.0)
        step_fn = lowered.compile()
    _log(f"compiled the train step in {time.perf_counter() - t_start:.1f}s")

    # ------------------------------------------------------------------ preemption
    preempted = {"flag": False}

    def on_sigterm(signum, frame):
        preempted["flag"] = True

    previous_handler = None
    if hasattr(signal, "SIGTERM"):
        try:
            previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
        except ValueError:  # not the main thread: leave the handler alone
            previous_handler = None

    def must_stop() -> bool:
        flag = preempted["flag"]
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            flag = bool(np.any(multihost_utils.process_allgather(np.array(flag))))
        return flag

    # ------------------------------------------------------------------ train loop
    writer = metrics_lib.MetricWriter(workdir, total_steps, start_step)
    meter = metrics_lib.Throughput(global_batch, model_flops, hardware_flops)
    log_every = int(config.log_every_steps)
    pending = None
    rates = []
    step = start_step
    stopped_early = False
    t_loop = time.perf_counter()
    try:
        with jax.transfer_guard("disallow"):
            while step < total_steps:
                if on_device:
                    state, step_metrics = step_fn(state)
                else:
                    state, step_metrics = step_fn(state, next_batch())
                step += 1
                if pending is not None:  # the previous step has finished: log it, one step late
                    done, values = pending
                    row = jax.device_get(values)
                    row.update(meter.measure(done))
                    if "images_per_s" in row:
                        rates.append(row["images_per_s"])
                    writer.write(done, row)
                    pending = None
                if step % log_every == 0 or step == total_steps:
                    pending = (step, step_metrics)
                if step % every == 0 or step == total_steps:
                    with jax.transfer_guard("allow"):
                        ckpt.save(manager, step, state, data_state(), force=step == total_steps)
                if step % log_every == 0 and must_stop() and step < total_steps:
                    stopped_early = True
                    break
                if jax.process_count() == 1 and preempted["flag"] and step < total_steps:
                    stopped_early = True
                    break
            if pending is not None:
                done, values = pending
                row = jax.device_get(values)
                row.update(meter.measure(done))
                writer.write(done, row)
        if stopped_early:
            _log(f"SIGTERM: saving a checkpoint at step {step} and stopping")
            with jax.transfer_guard("allow"):
                if step not in manager.all_steps():
                    ckpt.save(manager, step, state, data_state(), force=True)
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)

    # ------------------------------------------------------------------ summary
    wall = time.perf_counter() - t_start
    last = writer.last_row
    summary = dict(
        status="preempted" if stopped_early else "done",
        steps=step,
        total_steps=total_steps,
        resumed_from=start_step if restored is not None else None,
        images_seen=step * global_batch,
        final_loss=last.get("loss"),
        final_accuracy=last.get("accuracy"),
        images_per_s=float(np.median(rates)) if rates else None,
        train_loop_s=time.perf_counter() - t_loop,
        wall_s=wall,
        devices=jax.device_count(),
        mesh=dict(mesh.shape),
        state_bytes_per_device=state_bytes,
        device_kind=jax.devices()[0].device_kind,
        num_classes=num_classes,
        num_images=num_images,
        workdir=workdir,
        config=config_dict,
    )
    summary.update(extra_summary or {})
    if not stopped_early and jax.process_index() == 0:
        files.write_json(os.path.join(workdir, "summary.json"), summary)
    p = jax.tree.map(lambda x: x, abstract_params)
    e = jax.tree.map(lambda x: x, abstract_extra)
    nnx.replace_by_pure_dict(p, state["params"])
    nnx.replace_by_pure_dict(e, state["extra"])
    return summary, nnx.merge(graphdef, p, e)
