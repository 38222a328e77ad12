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

Objective: softmax cross-entropy for class ids; for multi-hot labels (several classes per
image), Anderson & Farrell's weighted binary cross-entropy, and the logged `accuracy` is then
top-1-in-positives (see synth_jax.train.losses).

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
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from synth_jax import evaluators, files, models
from synth_jax.config import (
    allowed_keys,
    check,
    check_finite,
    config_to_dict,
    replace_keys,
    with_defaults,
)
from synth_jax.errors import UsageError
from synth_jax.models import adapt
from synth_jax.models import flops as flops_lib
from synth_jax.train import augment as augment_lib
from synth_jax.train import checkpoint as ckpt
from synth_jax.train import local_batch
from synth_jax.train import losses as losses_lib
from synth_jax.train import mesh as mesh_lib
from synth_jax.train import metrics as metrics_lib
from synth_jax.train import optim as optim_lib
from synth_jax.train import workdir as workdir_lib

# Keys a resumed run may change (the run's length, logging, checkpointing, evaluating, or moving
# it to another mesh: the state restores onto any mesh); any other change needs a new workdir. A
# length that changes the learning-rate schedule needs `extend` (synth_jax.train.workdir).
RESUMABLE_CHANGES = (
    "total_steps",
    "total_epochs",
    "log_every_steps",
    "checkpoint.",
    "evals.",
    "mesh.",
)


def train_config(**overrides) -> ml_collections.ConfigDict:
    """The trainer's defaults, the schema of its keys; callers add their own sections (e.g.
    `data`). `overrides` replace whole keys (a section is given whole)."""
    config = ml_collections.ConfigDict(
        dict(
            seed=0,
            batch_size=128,
            total_steps=0,
            total_epochs=0.0,
            image_size=0,  # 0: the data's size
            log_every_steps=10,
            # Images each device renders at once (0 or more than its share of the batch: all
            # of it); a divisor of the share compiles faster and needs less memory
            # (synth_jax.train.local_batch).
            render_chunk=0,
            # Run the model as at evaluation while training (no dropout, batch statistics
            # frozen): for a frozen backbone, with optim.trainable naming what trains.
            inference_mode=False,
            # evals.<name> = eval_config(TYPE, every_steps=N, ...): run every N steps and at the
            # end, logged beside the loss (synth_jax.evaluators)
            evals=ml_collections.ConfigDict(),
            model=models.model_config("Ti/16"),
            optim=optim_lib.optim_config(),
            augment=augment_lib.augment_config(),
            mesh=ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1)),
            checkpoint=ml_collections.ConfigDict(dict(every_steps=1000, keep=3, async_save=True)),
        )
    )
    return replace_keys(config, overrides, "trainer")


# Keys the trainer reads (from its defaults); other top-level keys (data, ...) belong to the
# caller. The model module checks the `model` section (its keys depend on the model), the
# evaluators their `evals.<name>` sections.
TRAIN_KEYS = allowed_keys(train_config(), open_sections=("model", "evals"))


def validate(
    config, num_images: int | None, data_image_size: int | None, num_devices: int | None = None
) -> dict:
    """Checks the trainer's keys before anything compiles; returns resolved durations.
    num_devices: the mesh's device count (default: jax.device_count()).

    Raises UsageError naming the key. Returns {total_steps, steps_per_epoch, image_size,
    mesh_shape}.
    """

    def fail(message):
        raise UsageError(message)

    config = with_defaults(config, train_config(), open_sections=("model",))
    check_finite(config)
    check(
        config, "seed", lambda v: isinstance(v, int) and 0 <= v < 2**32, "an integer in [0, 2**32)"
    )
    for key in ("every_steps", "keep"):
        check(
            config.checkpoint,
            key,
            lambda v: isinstance(v, int) and v >= 1,
            "an integer >= 1",
            "checkpoint.",
        )
    check(config, "total_steps", lambda v: isinstance(v, int), "an integer (0: use total_epochs)")
    check(config, "batch_size", lambda v: isinstance(v, int), "an integer")
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
    models.check_model_config(config.model, image_size)
    evaluators.validate_evals(config.evals)
    optim_lib.check_optim_config(config.optim)
    augment_lib.check_augment_config(config.augment)
    try:
        shape = mesh_lib.mesh_shape(config.mesh, num_devices or jax.device_count())
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
    check(
        config,
        "render_chunk",
        lambda v: isinstance(v, int) and v >= 0,
        "an integer >= 0 (0: each device renders its whole share at once)",
    )
    if 0 < config.render_chunk < per_device and per_device % config.render_chunk:
        fail(
            f"render_chunk={config.render_chunk}: must divide each device's share of the batch, "
            f"{per_device} images (batch_size {batch} / data x fsdp {dp})"
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


class TrainingDiverged(UsageError):
    """The loss or a gradient became NaN or infinite: the run stopped at that step (one line,
    exit code 2); its checkpoints hold the finite state before it."""


class _Diverged(Exception):
    """Raised inside the train loop when the state marks a non-finite step."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


def keep_if_finite(old: dict, new: dict, loss, grad_norm) -> dict:
    """The step's guard (jittable): `new` when the loss, the gradient norm and every new floating
    array are finite and `old` is healthy; otherwise `old`, whose step counter becomes -(the
    non-finite step) and stays so at later steps. A non-finite update is never committed, and
    the host finds the first bad step whenever it next reads the counter (one step late)."""
    healthy = old["step"] >= 0
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    for x in jax.tree.leaves(new):
        if jnp.issubdtype(x.dtype, jnp.inexact):
            finite = finite & jnp.all(jnp.isfinite(x))
    ok = healthy & finite
    kept = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
    kept["step"] = jnp.where(ok, new["step"], jnp.where(healthy, -new["step"], old["step"]))
    return kept


def _log(message: str):
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


def _to_json(value):
    """A metric as JSON: numpy arrays as lists, numpy scalars as numbers."""
    return value.tolist() if hasattr(value, "tolist") else value


def _flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _json_flat(tree) -> dict:
    return _flatten(json.loads(json.dumps(tree, default=files._json_default)))


def _check_same_run(workdir: str, config_dict: dict, old: dict | None = None):
    """A resumed workdir must hold the same experiment: name the first key that differs.
    `old`: the workdir's config.json (read from there when not given).

    A key that only one of the two configs has, at its default value, is no difference: a
    config.json written by an earlier version lacks keys added since (and may hold model keys
    of other model kinds), and those runs used the defaults."""
    if old is None:
        old = workdir_lib.read_config(workdir, has_checkpoints=True)
        if old is None:
            return
    old = _flatten(old)
    new = _json_flat(config_dict)
    defaults = _json_flat({**config_to_dict(train_config()), "model": models.all_model_defaults()})
    for key in sorted(set(old) | set(new)):
        if key.startswith(RESUMABLE_CHANGES) or key in RESUMABLE_CHANGES:
            continue
        if (key in old) != (key in new) and key in defaults:
            if defaults[key] == (old[key] if key in old else new[key]):
                continue
        if old.get(key) != new.get(key):
            raise UsageError(
                f"{workdir} holds a run whose config differs at {key!r} "
                f"({old.get(key)!r} there, {new.get(key)!r} now); use another --workdir"
            )


@dataclasses.dataclass
class StepProgram:
    """A config's training step, not yet compiled, and what it needs: `step_fn` is the jitted
    `step(state[, batch]) -> (state, metrics)`; `abstract_state` its state argument as
    ShapeDtypeStructs with their shardings (the only argument for on-device sources)."""

    step_fn: object
    abstract_state: dict
    state_shardings: dict
    batch_shardings: dict | None
    init_state: object  # (loaded, loaded_model_state) -> state
    apply_model: object  # (params, model_state, images, train_mode, rng) -> (logits, state)
    model_of: object  # state -> nnx model
    grad_fn: object
    params_template: dict
    loaded: dict | None
    loaded_model_state: dict | None
    mesh: jax.sharding.Mesh


def build_step(
    config: ml_collections.ConfigDict,
    resolved: dict,
    source,
    *,
    num_classes: int,
    mesh: jax.sharding.Mesh,
    init_params: dict | None = None,
    init_model_state: dict | None = None,
    dont_load: tuple[str, ...] = (),
) -> StepProgram:
    """The training step of a validated config (`validate`'s `resolved`) over `mesh`: the one
    that `train` runs and that `synth-jax compile` compiles for devices it does not own."""
    on_device = hasattr(source, "render") and hasattr(source, "indices_for_step")
    total_steps, image_size = resolved["total_steps"], resolved["image_size"]
    seed, global_batch = int(config.seed), int(config.batch_size)
    accum = int(config.optim.accum_steps)

    # ------------------------------------------------------------------ model, and the given arrays
    def fresh_model():
        return models.create_model(config.model, num_classes, image_size, nnx.Rngs(params=seed))

    abstract_model = nnx.eval_shape(fresh_model)
    graphdef, abstract_params, abstract_model_state = nnx.split(abstract_model, nnx.Param, ...)
    params_template = nnx.to_pure_dict(abstract_params)
    model_state_template = nnx.to_pure_dict(abstract_model_state)
    # The model module decides which given arrays fit (a ViT resamples its position embedding);
    # batch-norm statistics travel with the parameters they normalise for (ResNets).
    loaded = loaded_model_state = None
    if init_params is not None:
        loaded = models.adapt_pretrained(config.model, params_template, init_params, dont_load)
    if init_model_state and jax.tree.leaves(model_state_template):
        loaded_model_state = models.adapt_pretrained(
            config.model, model_state_template, init_model_state, dont_load
        )

    image_sharding = mesh_lib.batch_sharding(mesh, 4)
    label_sharding = mesh_lib.batch_sharding(mesh, 1)
    repl = mesh_lib.replicated(mesh)

    # ------------------------------------------------------------------ optimiser and model step
    tx, schedule = optim_lib.make_optimizer(
        config.optim, params_template, total_steps, resolved["steps_per_epoch"]
    )
    model_train_mode = not config.inference_mode

    def apply_model(params, model_state, images, train_mode, rng):
        """(pure params, pure model_state, images) -> (logits, updated model_state)."""
        if mesh.shape["fsdp"] > 1:  # FSDP: each weight gathered where it is used
            params = mesh_lib.gather_weights(params, gathered)
        p = jax.tree.map(lambda x: x, abstract_params)
        e = jax.tree.map(lambda x: x, abstract_model_state)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(e, model_state)
        model = nnx.merge(graphdef, p, e)
        logits = model(images, train=train_mode, rng=rng)
        return logits, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))

    def model_of(state):
        """The nnx model holding a train state's params and model_state (no copy)."""
        p = jax.tree.map(lambda x: x, abstract_params)
        e = jax.tree.map(lambda x: x, abstract_model_state)
        nnx.replace_by_pure_dict(p, state["params"])
        nnx.replace_by_pure_dict(e, state["model_state"])
        return nnx.merge(graphdef, p, e)

    # ------------------------------------------------------------------ shard and create the state
    param_shardings = mesh_lib.param_shardings(abstract_params, mesh)
    gathered = mesh_lib.gathered_shardings(jax.tree.leaves(param_shardings))
    abstract_opt = jax.eval_shape(tx.init, params_template)
    opt_shardings = mesh_lib.optimizer_shardings(tx, abstract_opt, param_shardings, mesh)
    state_shardings = dict(
        params=param_shardings,
        model_state=jax.tree.map(lambda _: repl, model_state_template),
        opt_state=opt_shardings,
        step=repl,
    )

    def init_state(loaded, loaded_model_state):
        _, params, model_state = nnx.split(fresh_model(), nnx.Param, ...)
        params, model_state = nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)
        if loaded:
            params = adapt.merge(params, loaded)
        if loaded_model_state:
            model_state = adapt.merge(model_state, loaded_model_state)
        return dict(
            params=params,
            model_state=model_state,
            opt_state=tx.init(params),
            step=jnp.zeros((), jnp.int32),
        )

    abstract_state = jax.eval_shape(init_state, loaded, loaded_model_state)
    abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        state_shardings,
    )

    # ------------------------------------------------------------------ update step

    def loss_and_metrics(params, model_state, images, targets, labels, rng):
        logits, model_state = apply_model(params, model_state, images, model_train_mode, rng)
        # labels int32[B] (softmax) or multi-hot int32[B, C] (weighted sigmoid); see losses
        loss = losses_lib.classification_loss(logits, targets, labels)
        correct = losses_lib.correct(logits, labels).sum()
        return loss, (model_state, correct)

    grad_fn = jax.value_and_grad(loss_and_metrics, has_aux=True)

    make_batch = local_batch.batch_fn(
        mesh,
        source if on_device else None,
        seed=seed,
        global_batch=global_batch,
        num_classes=num_classes,
        image_size=image_size,
        augment_config=config.augment,
        render_chunk=int(config.render_chunk),
    )

    def train_step(state, batch=None):
        step = state["step"]
        rng = jax.random.fold_in(jax.random.key(seed), step)
        k_aug, k_model = jax.random.split(rng)
        # Each device renders (batch is None) and augments the rows of its own batch shard.
        images, targets, labels = make_batch(step, k_aug, batch)
        params, model_state = state["params"], state["model_state"]
        if accum == 1:
            (loss, (model_state, correct)), grads = grad_fn(
                params, model_state, images, targets, labels, k_model
            )
        else:
            # Micro-batch j takes rows j, j+A, j+2A, ...: each keeps the batch sharding.
            def micro(x):
                x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1)
                spec = P(None, mesh_lib.BATCH_AXES, *([None] * (x.ndim - 2)))
                return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

            def body(carry, xs):
                grads, model_state, loss, correct = carry
                im, tg, lb, j = xs
                (micro_loss, (model_state, c)), g = grad_fn(
                    params, model_state, im, tg, lb, jax.random.fold_in(k_model, j)
                )
                grads = jax.tree.map(jnp.add, grads, g)
                return (grads, model_state, loss + micro_loss, correct + c), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            carry = (zeros, model_state, jnp.float32(0), jnp.float32(0))
            xs = (micro(images), micro(targets), micro(labels), jnp.arange(accum))
            (grads, model_state, loss, correct), _ = jax.lax.scan(body, carry, xs)
            grads = jax.tree.map(lambda g: g / accum, grads)
            loss = loss / accum
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        params = optax.apply_updates(params, updates)
        new_state = dict(params=params, model_state=model_state, opt_state=opt_state, step=step + 1)
        grad_norm = optax.tree.norm(grads)
        new_state = keep_if_finite(state, new_state, loss, grad_norm)
        metrics = dict(
            loss=loss,
            accuracy=correct / global_batch,
            grad_norm=grad_norm,
            lr=jnp.asarray(schedule(step), jnp.float32),
            state_step=new_state["step"],  # negative: the state stopped at a non-finite step
        )
        return new_state, metrics

    batch_shardings = None if on_device else dict(image=image_sharding, label=label_sharding)
    step_fn = jax.jit(
        train_step,
        in_shardings=(state_shardings,) if on_device else (state_shardings, batch_shardings),
        out_shardings=(state_shardings, repl),
        donate_argnums=(0,),
    )

    return StepProgram(
        step_fn=step_fn,
        abstract_state=abstract_state,
        state_shardings=state_shardings,
        batch_shardings=batch_shardings,
        init_state=init_state,
        apply_model=apply_model,
        model_of=model_of,
        grad_fn=grad_fn,
        params_template=params_template,
        loaded=loaded,
        loaded_model_state=loaded_model_state,
        mesh=mesh,
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
    what it refuses, TrainingDiverged when the loss or a gradient is not finite."""
    # ------------------------------------------------------------------ validate, before compiling
    on_device = hasattr(source, "render") and hasattr(source, "indices_for_step")
    if not on_device and not (hasattr(source, "get_state") and hasattr(source, "set_state")):
        raise TypeError(
            "source: a FractalDataset-like object or an iterator with get_state()/set_state()"
        )
    num_images = getattr(source, "num_images", None)
    config = with_defaults(config, train_config(), open_sections=("model",))
    resolved = validate(config, num_images, getattr(source, "image_size", None))
    total_steps, image_size = resolved["total_steps"], resolved["image_size"]
    seed, global_batch = int(config.seed), int(config.batch_size)
    accum = int(config.optim.accum_steps)
    workdir = os.path.abspath(workdir)
    config_dict = config_to_dict(config)
    # What the workdir holds may refuse this run: decided now, before anything is written.
    plan = workdir_lib.agree(
        lambda: workdir_lib.check(
            workdir,
            config_dict,
            total_steps=total_steps,
            steps_per_epoch=resolved["steps_per_epoch"],
            optim=config.optim,
            every_steps=int(config.checkpoint.every_steps),
            same_run=_check_same_run,
            extend=bool(extend),
            restart=restart,
            can_extend=extend is not None,
        )
    )
    for note in plan.notes if plan else ():
        _log(note)
    t_start = time.perf_counter()

    # ------------------------------------------------------------------ mesh, model and step
    mesh = mesh_lib.make_mesh(config.mesh)
    program = build_step(
        config,
        resolved,
        source,
        num_classes=num_classes,
        mesh=mesh,
        init_params=init_params,
        init_model_state=init_model_state,
        dont_load=dont_load,
    )
    step_fn, abstract_state = program.step_fn, program.abstract_state
    state_shardings, init_state, model_of = (
        program.state_shardings,
        program.init_state,
        program.model_of,
    )
    grad_fn, params_template = program.grad_fn, program.params_template
    loaded, loaded_model_state = program.loaded, program.loaded_model_state
    image_sharding = mesh_lib.batch_sharding(mesh, 4)
    label_sharding = mesh_lib.batch_sharding(mesh, 1)
    state_bytes = mesh_lib.bytes_per_device(abstract_state, state_shardings)
    _log(
        f"{len(jax.tree.leaves(params_template))} parameter arrays; parameters + optimiser "
        f"state: {state_bytes / 2**20:.1f} MiB per device"
    )

    # Evaluators open their data now, so that a missing dataset stops the run before it starts.
    evals = evaluators.build(
        config.evals,
        mesh=mesh,
        image_size=image_size,
        mean=tuple(config.augment.mean),
        std=tuple(config.augment.std),
        num_classes=num_classes,
        workdir=workdir,
    )
    _log(
        f"mesh {dict(mesh.shape)} over {jax.device_count()} devices "
        f"({jax.process_count()} processes, {jax.devices()[0].device_kind}); "
        f"{total_steps} steps of {global_batch} images"
    )
    if loaded is not None:
        _log(
            f"initialised {len(loaded)} of {len(jax.tree.leaves(params_template))} parameter "
            f"arrays from the given parameters"
        )

    # ------------------------------------------------------------------ load checkpoint or init
    every = int(config.checkpoint.every_steps)
    manager = ckpt.make_manager(
        workdir, every, config.checkpoint.keep, config.checkpoint.async_save
    )
    try:
        restored = ckpt.restore_latest(manager, workdir, abstract_state, log=_log)
    except BaseException:
        manager.close()
        raise
    if restored is not None:
        start_step, state, data_state = restored
        if not on_device:
            source.set_state(data_state["source"])
        _log(f"resumed from the checkpoint at step {start_step} in {ckpt.checkpoint_dir(workdir)}")
        if start_step > total_steps:
            manager.close()
            raise UsageError(
                f"total_steps: the workdir's checkpoint is at step {start_step}, beyond "
                f"{total_steps}; raise total_steps or use another --workdir"
            )
    else:
        start_step = 0
        state = jax.jit(init_state, out_shardings=state_shardings)(loaded, loaded_model_state)
    # The run starts here: record it (config.json; the schedule change of an `extend`).
    workdir_lib.commit(workdir, config_dict, plan)

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
    per_image = flops_lib.train_flops(config.model, image_size, num_classes)
    model_flops = None if per_image is None else per_image * global_batch
    hardware_flops = None
    if on_device:
        lowered = step_fn.lower(abstract_state)
        hardware_flops = _xla_flops(lowered)
        if hardware_flops and accum > 1:  # XLA counts the accumulation loop's body once
            micro = global_batch // accum
            shape = jax.ShapeDtypeStruct
            micro_step = jax.jit(grad_fn).lower(
                abstract_state["params"],
                abstract_state["model_state"],
                shape((micro, image_size, image_size, 3), jnp.float32),
                shape((micro, num_classes), jnp.float32),
                shape(
                    (micro, num_classes) if getattr(source, "multi_label", False) else (micro,),
                    jnp.int32,
                ),
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
            flag = bool(np.any(multihost_utils.process_allgather(np.array(flag))))
        return flag

    # ------------------------------------------------------------------ train loop
    writer = metrics_lib.MetricWriter(workdir, total_steps, start_step, log=_log)
    meter = metrics_lib.Throughput(global_batch, model_flops, hardware_flops)
    log_every = int(config.log_every_steps)
    pending = None
    rates = []
    step = start_step
    stopped_early = False
    eval_results, last_eval = {}, None

    def stop_if_diverged(state_step) -> None:
        """Stops the run when the state's step counter marks a non-finite step (train_step)."""
        if int(state_step) < 0:
            raise _Diverged(-int(state_step))

    def checked_state_step() -> None:
        """Waits for the newest step and stops if the state stopped at a non-finite one: before
        anything reads the state (a save, an evaluation)."""
        stop_if_diverged(jax.device_get(state["step"]))

    def save(step, force: bool) -> None:
        checked_state_step()
        try:
            with jax.transfer_guard("allow"):
                ckpt.save(manager, step, state, data_state(), force=force)
        except Exception as e:  # e.g. the storage filled up or became read-only mid-run
            raise UsageError(ckpt.save_failed(workdir, step, e)) from None

    def write_row(pending) -> None:
        """Logs a step's metrics (fetched one step late), unless its state is non-finite."""
        done, values, eval_row = pending
        row = jax.device_get(values)
        stop_if_diverged(row.pop("state_step"))
        row.update(meter.measure(done))
        if "images_per_s" in row:
            rates.append(row["images_per_s"])
        writer.write(done, {**row, **eval_row})

    def run_evals(step) -> dict:
        """The due evaluators' scalar metrics as {"<name>/<metric>": value}."""
        due = [e for e in evals if e.due(step, total_steps)]
        if not due:
            return {}
        checked_state_step()  # also: the step's own time is training time
        t0, row = time.perf_counter(), {}
        model = model_of(state)
        with jax.transfer_guard("allow"):
            for e in due:
                eval_results[e.name] = e.evaluator.run(model)
                row.update(
                    {f"{e.name}/{k}": v for k, v in eval_results[e.name].items() if np.isscalar(v)}
                )
        meter.exclude(time.perf_counter() - t0)  # evaluation time is not training throughput
        return row

    t_loop = time.perf_counter()
    diverged_at, save_error = None, None
    try:
        with jax.transfer_guard("disallow"):
            while step < total_steps:
                if on_device:
                    state, step_metrics = step_fn(state)
                else:
                    state, step_metrics = step_fn(state, next_batch())
                step += 1
                if pending is not None:  # the previous step has finished: log it, one step late
                    write_row(pending)
                    pending = None
                eval_row = run_evals(step)
                if eval_row:
                    last_eval = step
                if step % log_every == 0 or step == total_steps or eval_row:
                    pending = (step, step_metrics, eval_row)
                if step % every == 0 or step == total_steps:
                    save(step, force=step == total_steps)
                if step % log_every == 0 and must_stop() and step < total_steps:
                    stopped_early = True
                    break
                if jax.process_count() == 1 and preempted["flag"] and step < total_steps:
                    stopped_early = True
                    break
            if pending is not None:
                write_row(pending)
        if not stopped_early and last_eval != step:  # resumed at the end: evaluate it anyway
            eval_row = run_evals(step)
            if eval_row:
                writer.write(step, eval_row)
        if stopped_early:
            _log(f"SIGTERM: saving a checkpoint at step {step} and stopping")
            if step not in manager.all_steps():
                save(step, force=True)
    except _Diverged as e:
        diverged_at = e.step
    finally:
        try:
            manager.wait_until_finished()  # the saves before a failure or divergence complete
        except Exception as e:  # a background save failed
            save_error = e
        manager.close()
        writer.close()
        evaluators.close(evals)
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    if save_error is not None:
        raise UsageError(ckpt.save_failed(workdir, None, save_error)) from None

    # ------------------------------------------------------------------ summary
    wall = time.perf_counter() - t_start
    last = writer.last_row
    last_checkpoint = ckpt.steps_on_disk(workdir)[-1:] or [None]
    if diverged_at is not None:
        step = diverged_at - 1  # the state holds the steps before the non-finite one
    summary = dict(
        status="diverged" if diverged_at is not None else "preempted" if stopped_early else "done",
        steps=step,
        diverged_at_step=diverged_at,
        last_checkpoint=last_checkpoint[0],
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
        evals={name: jax.tree.map(_to_json, m) for name, m in eval_results.items()},
        extensions=workdir_lib.extensions(workdir) if jax.process_index() == 0 else [],
        config=config_dict,
    )
    summary.update(extra_summary or {})
    summary = files.finite_json(summary)
    if not stopped_early and jax.process_index() == 0:
        files.write_json(os.path.join(workdir, "summary.json"), summary)
    if diverged_at is not None:
        kept = f"step {last_checkpoint[0]}" if last_checkpoint[0] is not None else "none"
        raise TrainingDiverged(
            f"step {diverged_at}: the loss or a gradient is not finite; stopped without keeping "
            f"that update (last checkpoint: {kept}, finite): lower optim.lr, set "
            f"optim.grad_clip_norm, or check the data"
        )
    return summary, model_of(state)
