"""The step program: a validated config's training step over a mesh, built but not compiled.

    program = build_step(config, resolved, source, num_classes=C, mesh=mesh)
    state, metrics = program.step_fn(state)           # on-device source: rendered in the step
    state, metrics = program.step_fn(state, batch)    # host-fed {"image", "label"}

`train` runs it; `synth-jax compile` (synth_jax.aot) compiles it for devices it does not own.
It is built from four parts, each a function here:
  model      `model_parts`: the nnx model split once into its graph and abstract arrays; a train
             state holds pure dicts of the arrays (the paths Orbax saves and optax masks match),
             and `ModelParts.bind` puts them back into a model. Given arrays (fine-tuning) are
             adapted by the model module (`adapt_given`).
  shardings  `state_shardings`: parameters over the mesh (FSDP, tensor parallelism), the
             optimiser's state like its parameters, the rest replicated; the state is created
             already sharded from `init_state_fn`.
  the loss   `objective_grad`: the objective's loss on the model and its gradient.
  update     `train_step_fn`: the batch made on each device (synth_jax.train.local_batch),
             the objective's views of it, gradients accumulated over micro-batches
             (`accumulate`), the optimiser, and the finite guard (`keep_if_finite`).

The loss seam. Everything the step knows of the loss comes from one `Objective`
(synth_jax.train.objective), picked by config.objective.type (synth_jax.train.objectives):
`views(images, targets, labels, key, rows)` makes the loss's inputs from the batch, on each
device for its own rows (a shard_map, `views_fn`), `loss(forward, params, model_state, views,
key)` returns the mean loss and metric sums. Nothing in the accumulation, the guard, the metrics
or the loop and its hooks names a loss.

The train state is {params, model_state, opt_state, step}: pure dicts of the model's parameters
and its other state (batch statistics, fixed embeddings), the optimiser's state and the number
of steps done (int32; negative after a non-finite step, see `keep_if_finite`). An objective with
parameters of its own (SimCLR's projection head, MAE's decoder) adds `objective`; the optimiser
then trains {"model": params, "objective": objective} (`trainable`). Every step's key is
fold_in(key(seed), step), so a resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from synth_jax import models
from synth_jax.models import adapt
from synth_jax.train import local_batch
from synth_jax.train import mesh as mesh_lib
from synth_jax.train import objectives as objectives_lib
from synth_jax.train import optim as optim_lib
from synth_jax.train.mesh import BATCH_AXES
from synth_jax.train.prepare import renders_on_device

# The objective's own parameters start from fold_in(key(seed), OWN_PARAMS_STREAM).
OWN_PARAMS_STREAM = 0x0B7EC7


@dataclasses.dataclass(frozen=True)
class ModelParts:
    """A model split once (graph and abstract arrays) so that the jitted step is a function of
    pure dicts; `bind` joins dicts back into a model."""

    graphdef: object
    abstract_params: object  # nnx.State of ShapeDtypeStructs
    abstract_model_state: object
    params_template: dict  # pure dicts of ShapeDtypeStructs
    model_state_template: dict
    fresh: Callable[[], nnx.Module]  # a freshly initialised model

    def bind(self, params: dict, model_state: dict) -> nnx.Module:
        """The nnx model holding these pure dicts' arrays (no copy)."""
        p = jax.tree.map(lambda x: x, self.abstract_params)
        e = jax.tree.map(lambda x: x, self.abstract_model_state)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(e, model_state)
        return nnx.merge(self.graphdef, p, e)


def model_parts(model_config, num_classes: int, image_size: int, seed: int) -> ModelParts:
    """The model of `model_config` (synth_jax.models) for images of image_size pixels, split
    without allocating; `fresh` initialises it from `seed`."""

    def fresh():
        return models.create_model(model_config, num_classes, image_size, nnx.Rngs(params=seed))

    graphdef, abstract_params, abstract_model_state = nnx.split(
        nnx.eval_shape(fresh), nnx.Param, ...
    )
    return ModelParts(
        graphdef,
        abstract_params,
        abstract_model_state,
        nnx.to_pure_dict(abstract_params),
        nnx.to_pure_dict(abstract_model_state),
        fresh,
    )


def adapt_given(model_config, parts: ModelParts, init_params, init_model_state, dont_load):
    """(params, model_state) of the given arrays that fit the model (None where none given). The
    model module decides what fits (a ViT resamples its position embedding); batch statistics
    travel with the parameters they normalise for (ResNets)."""
    loaded = loaded_model_state = None
    if init_params is not None:
        loaded = models.adapt_pretrained(
            model_config, parts.params_template, init_params, dont_load
        )
    if init_model_state and jax.tree.leaves(parts.model_state_template):
        loaded_model_state = models.adapt_pretrained(
            model_config, parts.model_state_template, init_model_state, dont_load
        )
    return loaded, loaded_model_state


def trainable(state: dict):
    """What the optimiser trains: the model's parameters, with the objective's own beside them
    when it has any ({"model": ..., "objective": ...})."""
    if "objective" not in state:
        return state["params"]
    return {"model": state["params"], "objective": state["objective"]}


def with_trainable(state: dict, tree) -> dict:
    """`state` holding the trained tree `tree` (the inverse of `trainable`)."""
    if "objective" not in state:
        return {**state, "params": tree}
    return {**state, "params": tree["model"], "objective": tree["objective"]}


def state_shardings(parts: ModelParts, tx, mesh: jax.sharding.Mesh, own_template=None) -> dict:
    """The train state's shardings: parameters by their logical axes, the optimiser's state like
    the parameters it holds, the model's other state, the objective's own parameters (small:
    `own_template`, or None without them) and the step replicated."""
    param_shardings = mesh_lib.param_shardings(parts.abstract_params, mesh)
    repl = mesh_lib.replicated(mesh)
    shardings = dict(
        params=param_shardings,
        model_state=jax.tree.map(lambda _: repl, parts.model_state_template),
        step=repl,
    )
    templates = dict(params=parts.params_template)
    if own_template is not None:
        shardings["objective"] = jax.tree.map(lambda _: repl, own_template)
        templates["objective"] = own_template
    abstract_opt = jax.eval_shape(tx.init, trainable(templates))
    shardings["opt_state"] = mesh_lib.optimizer_shardings(
        tx, abstract_opt, trainable(shardings), mesh
    )
    return shardings


def init_state_fn(parts: ModelParts, tx, init_own=None, seed: int = 0) -> Callable:
    """`init_state(loaded, loaded_model_state) -> state`: a fresh train state at step 0 in which
    the given (adapted) arrays replace the fresh ones; init_own(key): the objective's own
    parameters (None: it has none). Jit it with the state's shardings as out_shardings to create
    it sharded."""

    def init_state(loaded, loaded_model_state):
        _, params, model_state = nnx.split(parts.fresh(), nnx.Param, ...)
        params, model_state = nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)
        if loaded:
            params = adapt.merge(params, loaded)
        if loaded_model_state:
            model_state = adapt.merge(model_state, loaded_model_state)
        state = dict(params=params, model_state=model_state, step=jnp.zeros((), jnp.int32))
        if init_own is not None:
            state["objective"] = init_own(
                jax.random.fold_in(jax.random.key(seed), OWN_PARAMS_STREAM)
            )
        state["opt_state"] = tx.init(trainable(state))
        return state

    return init_state


def apply_fn(parts: ModelParts, mesh: jax.sharding.Mesh, param_shardings: dict) -> Callable:
    """`apply_model(params, model_state, images, train_mode, key, call=None) -> (outputs,
    model_state)` on pure dicts: the logits, or call(model, images, train_mode, key) when given
    (an objective's own use of the model); under FSDP each weight is gathered where it is
    used."""
    gathered = mesh_lib.gathered_shardings(jax.tree.leaves(param_shardings))

    def apply_model(params, model_state, images, train_mode, rng, call=None):
        if mesh.shape["fsdp"] > 1:
            params = mesh_lib.gather_weights(params, gathered)
        model = parts.bind(params, model_state)
        if call is None:
            outputs = model(images, train=train_mode, rng=rng)
        else:
            outputs = call(model, images, train_mode, rng)
        return outputs, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))

    return apply_model


def objective_grad(objective, apply_model, train_mode: bool) -> Callable:
    """`grad_fn(params, model_state, views, key) -> ((loss, (model_state, sums)), grads)`: the
    objective's loss on the model and its gradient with respect to params (the `trainable`
    tree)."""

    def forward(params, model_state, images, key, call=None):
        if call is None:  # an apply_model without `call` serves the supervised objective
            return apply_model(params, model_state, images, train_mode, key)
        return apply_model(params, model_state, images, train_mode, key, call)

    def loss(params, model_state, views, key):
        return objective.loss(forward, params, model_state, views, key)

    return jax.value_and_grad(loss, has_aux=True)


def accumulate(grad_fn, params, model_state, views, key, accum: int, mesh: jax.sharding.Mesh):
    """The loss, metric sums and gradient of `views` in `accum` micro-batches: the mean loss and
    gradient over them, the sums added. grad_fn: value_and_grad of an objective's loss. Micro-
    batch j takes rows j, j + A, j + 2A, ... (each keeps the batch sharding) and the model key
    fold_in(key, j). Returns (loss, model_state, sums, grads)."""
    if accum == 1:
        (loss, (model_state, sums)), grads = grad_fn(params, model_state, views, key)
        return loss, model_state, sums, grads

    def micro(x):
        x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1)
        spec = P(None, mesh_lib.BATCH_AXES, *([None] * (x.ndim - 2)))
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    def body(carry, xs):
        grads, model_state, loss, sums = carry
        micro_views, j = xs
        (micro_loss, (model_state, s)), g = grad_fn(
            params, model_state, micro_views, jax.random.fold_in(key, j)
        )
        grads = jax.tree.map(jnp.add, grads, g)
        return (grads, model_state, loss + micro_loss, jax.tree.map(jnp.add, sums, s)), None

    xs = (jax.tree.map(micro, views), jnp.arange(accum))
    first = jax.tree.map(lambda x: x[0], xs[0])
    (_, (_, sums_shape)), _ = jax.eval_shape(grad_fn, params, model_state, first, key)
    sums = jax.tree.map(lambda _: jnp.float32(0), sums_shape)
    carry = (jax.tree.map(jnp.zeros_like, params), model_state, jnp.float32(0), sums)
    (grads, model_state, loss, sums), _ = jax.lax.scan(body, carry, xs)
    grads = jax.tree.map(lambda g: g / accum, grads)
    return loss / accum, model_state, sums, grads


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


def views_fn(objective, mesh: jax.sharding.Mesh, global_batch: int) -> Callable:
    """`views(images, targets, labels, key)`: the objective's views of the global batch, each
    device making those of its own rows (one shard_map over the batch axes; each row's
    randomness from (key, its global row), so the views are the same on any mesh)."""
    rows_spec = P(BATCH_AXES)

    def views(images, targets, labels, key):
        rows = jnp.arange(global_batch, dtype=jnp.int32)
        return jax.shard_map(
            objective.views,
            mesh=mesh,
            in_specs=(rows_spec, rows_spec, rows_spec, P(), rows_spec),
            out_specs=rows_spec,
            check_vma=False,
        )(images, targets, labels, key, rows)

    return views


def train_step_fn(config, make_batch, views, grad_fn, tx, schedule, mesh) -> Callable:
    """`train_step(state, batch=None) -> (state, metrics)`: one optimiser step on the batch of
    `state["step"]` (made on the devices; `batch` when host-fed). metrics: loss, the objective's
    sums per image, grad_norm, lr, and state_step (negative: the state stopped at a non-finite
    step)."""
    seed, global_batch = int(config.seed), int(config.batch_size)
    accum = int(config.optim.accum_steps)

    def train_step(state, batch=None):
        step = state["step"]
        rng = jax.random.fold_in(jax.random.key(seed), step)
        k_aug, k_model = jax.random.split(rng)
        # Each device renders (batch is None) and augments the rows of its own batch shard.
        images, targets, labels = make_batch(step, k_aug, batch)
        # The views' own stream: split(rng) made fold_in(rng, 0) and (rng, 1) (JAX's default).
        step_views = views(images, targets, labels, jax.random.fold_in(rng, 2))
        params = trainable(state)
        loss, model_state, sums, grads = accumulate(
            grad_fn, params, state["model_state"], step_views, k_model, accum, mesh
        )
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        params = optax.apply_updates(params, updates)
        new_state = with_trainable(state, params)
        new_state.update(model_state=model_state, opt_state=opt_state, step=step + 1)
        grad_norm = optax.tree.norm(grads)
        new_state = keep_if_finite(state, new_state, loss, grad_norm)
        metrics = dict(
            loss=loss,
            **{name: total / global_batch for name, total in sums.items()},
            grad_norm=grad_norm,
            lr=jnp.asarray(schedule(step), jnp.float32),
            state_step=new_state["step"],
        )
        return new_state, metrics

    return train_step


def jit_step(train_step, shardings: dict, mesh: jax.sharding.Mesh, on_device: bool):
    """(step_fn, batch shardings): the step jitted over the mesh, its state donated; a host-fed
    step also takes the batch {"image", "label"}, split over the batch axes."""
    batch_shardings = None
    if not on_device:
        image, label = mesh_lib.batch_sharding(mesh, 4), mesh_lib.batch_sharding(mesh, 1)
        batch_shardings = dict(image=image, label=label)
    step_fn = jax.jit(
        train_step,
        in_shardings=(shardings,) if on_device else (shardings, batch_shardings),
        out_shardings=(shardings, mesh_lib.replicated(mesh)),
        donate_argnums=(0,),
    )
    return step_fn, batch_shardings


@dataclasses.dataclass
class StepProgram:
    """A config's training step, not yet compiled, and what it needs: `step_fn` is the jitted
    `step(state[, batch]) -> (state, metrics)`; `abstract_state` its state argument as
    ShapeDtypeStructs with their shardings (the only argument for on-device sources)."""

    step_fn: object
    abstract_state: dict
    state_shardings: dict
    batch_shardings: dict | None
    init_state: Callable  # (loaded, loaded_model_state) -> state
    apply_model: Callable  # (params, model_state, images, train_mode, rng, call) -> (out, state)
    grad_fn: Callable  # (params, model_state, views, key) -> ((loss, (state, sums)), grads)
    micro_views: object  # grad_fn's views of one micro-batch, as ShapeDtypeStructs
    accum_steps: int
    parts: ModelParts
    loaded: dict | None
    loaded_model_state: dict | None
    mesh: jax.sharding.Mesh
    objective: object  # the Objective (synth_jax.train.objective)

    @property
    def params_template(self) -> dict:
        return self.parts.params_template

    @property
    def state_bytes_per_device(self) -> int:
        return mesh_lib.bytes_per_device(self.abstract_state, self.state_shardings)

    def model_of(self, state: dict) -> nnx.Module:
        """The nnx model holding a train state's params and model_state (no copy)."""
        return self.parts.bind(state["params"], state["model_state"])


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
    """The training step of a validated config (`prepare.validate`'s `resolved`) over `mesh`:
    the one that `train` runs and that `synth-jax compile` compiles for devices it does not
    own. init_params, init_model_state, dont_load: see `train`."""
    on_device = renders_on_device(source)
    seed, image_size = int(config.seed), resolved["image_size"]
    global_batch, accum = int(config.batch_size), int(config.optim.accum_steps)
    parts = model_parts(config.model, num_classes, image_size, seed)
    loaded, loaded_model_state = adapt_given(
        config.model, parts, init_params, init_model_state, dont_load
    )
    objective = make_objective(config, parts, image_size)
    own_template = None
    if objective.init is not None:
        own_template = jax.eval_shape(objective.init, jax.random.key(0))
    templates = dict(params=parts.params_template)
    if own_template is not None:
        templates["objective"] = own_template
    tx, schedule = optim_lib.make_optimizer(
        config.optim, trainable(templates), resolved["total_steps"], resolved["steps_per_epoch"]
    )
    shardings = state_shardings(parts, tx, mesh, own_template)
    init_state = init_state_fn(parts, tx, objective.init, seed)
    abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        jax.eval_shape(init_state, loaded, loaded_model_state),
        shardings,
    )
    apply_model = apply_fn(parts, mesh, shardings["params"])
    grad_fn = objective_grad(objective, apply_model, train_mode=not config.inference_mode)
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
    views = views_fn(objective, mesh, global_batch)
    train_step = train_step_fn(config, make_batch, views, grad_fn, tx, schedule, mesh)
    step_fn, batch_shardings = jit_step(train_step, shardings, mesh, on_device)
    micro = _micro_views(objective, global_batch // accum, image_size, num_classes, source)
    return StepProgram(
        step_fn=step_fn,
        abstract_state=abstract_state,
        state_shardings=shardings,
        batch_shardings=batch_shardings,
        init_state=init_state,
        apply_model=apply_model,
        grad_fn=grad_fn,
        micro_views=micro,
        accum_steps=accum,
        parts=parts,
        loaded=loaded,
        loaded_model_state=loaded_model_state,
        mesh=mesh,
        objective=objective,
    )


def make_objective(config, parts: ModelParts, image_size: int):
    """The Objective of config.objective (synth_jax.train.objectives) for this model."""
    features = jax.eval_shape(
        lambda: parts.fresh().features(jnp.zeros((1, image_size, image_size, 3), jnp.float32))
    )
    return objectives_lib.build(
        config.get("objective"),
        model_config=config.model,
        feature_dim=int(features.shape[-1]),
        image_size=image_size,
        augment_config=config.augment,
    )


def _micro_views(objective, rows: int, image_size: int, num_classes: int, source):
    """The objective's views of `rows` images, as ShapeDtypeStructs."""
    shape = jax.ShapeDtypeStruct
    multi_label = getattr(source, "multi_label", False)
    return jax.eval_shape(
        objective.views,
        shape((rows, image_size, image_size, 3), jnp.float32),
        shape((rows, num_classes), jnp.float32),
        shape((rows, num_classes) if multi_label else (rows,), jnp.int32),
        jax.eval_shape(lambda: jax.random.key(0)),
        jax.ShapeDtypeStruct((rows,), jnp.int32),
    )


def xla_flops(lowered) -> float | None:
    """XLA's FLOPs of a lowered program (all devices; a loop's body counted once), or None."""
    try:
        cost = lowered.cost_analysis()
    except Exception:  # cost analysis is optional on some backends
        return None
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0)) or None


def compile_with_flops(program: StepProgram) -> tuple[object, float | None]:
    """The on-device step compiled for its abstract state, and XLA's FLOPs of one step (all
    devices, every micro-batch counted: XLA counts the accumulation loop's body once), or None
    where the backend does not say."""
    lowered = program.step_fn.lower(program.abstract_state)
    flops = xla_flops(lowered)
    if flops and program.accum_steps > 1:
        state = program.abstract_state
        micro_step = jax.jit(program.grad_fn).lower(
            trainable(state),
            state["model_state"],
            program.micro_views,
            jax.eval_shape(lambda: jax.random.key(0)),
        )
        flops += (program.accum_steps - 1) * (xla_flops(micro_step) or 0.0)
    return lowered.compile(), flops
