"""The device mesh and where every array lives on it.

Mesh axes (config key `mesh`, sizes; -1 takes the devices left over):
    data   pure data parallelism: parameters replicated, batch split
    fsdp   fully-sharded data parallelism: batch split AND parameters/optimiser state split
    model  tensor parallelism over the `mlp` and `heads` dimensions

Parameters carry logical axis names (see synth_jax.models); `LOGICAL_RULES` maps them onto mesh
axes. A dimension whose size the mesh axis does not divide stays replicated, so every model runs
on every mesh.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np
import optax
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from synth_jax.errors import UsageError
from synth_jax.models.sharding import BATCH_AXES  # the batch is split over both data axes

MESH_AXES = ("data", "fsdp", "model")

# logical axis name -> mesh axis (None: replicated)
LOGICAL_RULES = {
    "embed": "fsdp",
    "mlp": "model",
    "heads": "model",
    "classes": None,
}


def initialize_distributed(
    coordinator: str | None, num_processes: int | None, process_id: int | None
):
    """Joins a multi-process run, from flags or the environment, before any JAX computation.

    Flags win over SYNTH_JAX_COORDINATOR / SYNTH_JAX_NUM_PROCESSES / SYNTH_JAX_PROCESS_ID. With
    neither, a single-process run needs nothing; on a cluster whose launcher JAX recognises
    (SLURM, TPU pods) set SYNTH_JAX_DISTRIBUTED=auto.
    """
    coordinator = coordinator or os.environ.get("SYNTH_JAX_COORDINATOR")
    if num_processes is None and os.environ.get("SYNTH_JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["SYNTH_JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("SYNTH_JAX_PROCESS_ID"):
        process_id = int(os.environ["SYNTH_JAX_PROCESS_ID"])
    if coordinator:
        # CPU collectives across processes go over TCP (gloo; works over 127.0.0.1). It only
        # concerns the CPU client, and asking which backend this is would initialise it.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
    elif os.environ.get("SYNTH_JAX_DISTRIBUTED") == "auto":
        jax.distributed.initialize()


def mesh_shape(mesh_config: dict, num_devices: int) -> dict[str, int]:
    """Resolves -1 and checks that the axis sizes multiply to the device count.

    Raises ValueError naming the `mesh.<axis>` key when they do not.
    """
    sizes = {axis: int(mesh_config.get(axis, 1)) for axis in MESH_AXES}
    free = [a for a, s in sizes.items() if s == -1]
    if len(free) > 1:
        raise ValueError(f"mesh.{free[1]}: at most one axis may be -1 (the devices left over)")
    fixed = math.prod(s for s in sizes.values() if s != -1)
    for axis, size in sizes.items():
        if size == 0 or size < -1:
            raise ValueError(f"mesh.{axis}={size}: a positive size, or -1")
    if free:
        if num_devices % fixed:
            raise ValueError(
                f"mesh.{free[0]}=-1: {num_devices} devices are not divisible by the other "
                f"axes' product {fixed}"
            )
        sizes[free[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise ValueError(
            f"mesh {sizes} has {math.prod(sizes.values())} devices but {num_devices} are "
            "available; set one axis to -1"
        )
    return sizes


def num_slices(devices) -> int:
    """How many TPU slices `devices` span (1 for anything that is not a multi-slice TPU)."""
    return len({getattr(d, "slice_index", 0) or 0 for d in devices})


def make_mesh(mesh_config: dict, devices=None) -> jax.sharding.Mesh:
    """The mesh over `devices` (default: all of jax.devices()).

    Over several TPU slices (multi-slice: slices joined by the data-centre network, far slower
    than the links inside a slice) the `data` axis spans the slices and every other axis stays
    inside one: only the gradients' all-reduce crosses between slices. So mesh.data must be a
    multiple of the slice count (a UsageError names it otherwise)."""
    devices = jax.devices() if devices is None else list(devices)
    sizes = mesh_shape(mesh_config, len(devices))
    shape = tuple(sizes[a] for a in MESH_AXES)
    # Auto axes: jit's partitioner places intermediates; we only pin inputs, outputs and batches.
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    slices = num_slices(devices)
    if slices == 1:
        return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)
    if sizes["data"] % slices:
        raise UsageError(
            f"mesh.data={sizes['data']}: the devices span {slices} slices and the data axis "
            f"spans the slices, so it must be a multiple of {slices} (e.g. mesh.data={slices} "
            "with mesh.fsdp=-1)"
        )
    within = (sizes["data"] // slices, sizes["fsdp"], sizes["model"])
    grid = mesh_utils.create_hybrid_device_mesh(within, (slices, 1, 1), devices=devices)
    return jax.sharding.Mesh(grid, MESH_AXES, axis_types=auto)


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int = 1) -> NamedSharding:
    """Leading (batch) dimension split over the data-parallel axes, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _mesh_spec(logical: P, shape: tuple[int, ...], mesh: jax.sharding.Mesh) -> P:
    axes = []
    for dim, name in zip(shape, tuple(logical) + (None,) * (len(shape) - len(logical))):
        axis = LOGICAL_RULES.get(name) if isinstance(name, str) else None
        if axis is not None and (mesh.shape[axis] == 1 or dim % mesh.shape[axis]):
            axis = None  # a size-1 axis changes nothing; an uneven split is not allowed
        axes.append(axis)
    return P(*axes)


def param_shardings(abstract_params, mesh: jax.sharding.Mesh) -> dict:
    """NamedShardings for an abstract nnx.State of parameters, as a pure dict (the layout of
    `nnx.to_pure_dict(state)`), from the variables' logical axis names and LOGICAL_RULES."""
    logical = nnx.to_pure_dict(nnx.get_partition_spec(abstract_params))
    return jax.tree.map(
        lambda spec, leaf: NamedSharding(mesh, _mesh_spec(spec, leaf.shape, mesh)),
        logical,
        nnx.to_pure_dict(abstract_params),
        is_leaf=lambda x: isinstance(x, P),
    )


def gathered_shardings(shardings: list) -> list:
    """Each weight's sharding (a list, in leaf order) without the `fsdp` axis: where FSDP uses
    a weight (gathered on every device of the axis; tensor-parallel `model` splits stay). An
    entry that is no NamedSharding (one device's or the host's array) stays as it is."""

    def without_fsdp(sharding):
        if not isinstance(sharding, NamedSharding):
            return sharding
        entries = []
        for entry in sharding.spec:
            axes = entry if isinstance(entry, tuple) else (entry,)
            kept = tuple(a for a in axes if a is not None and a != "fsdp")
            entries.append(kept[0] if len(kept) == 1 else (kept or None))
        return NamedSharding(sharding.mesh, P(*entries))

    return [without_fsdp(s) for s in shardings]


def gather_weights(tree, gathered: list):
    """`tree` (traced, inside a jit) with each leaf constrained to its entry of `gathered`
    (gathered_shardings of the leaves' shardings); a leaf whose entry is no NamedSharding is
    left alone. FSDP then gathers each weight where it is used; left to choose, the partitioner
    may instead gather (or all-reduce) activations of the whole batch."""
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(
        treedef,
        [
            jax.lax.with_sharding_constraint(x, g) if isinstance(g, NamedSharding) else x
            for x, g in zip(leaves, gathered)
        ],
    )


def optimizer_shardings(tx, abstract_opt_state, params_shardings, mesh: jax.sharding.Mesh):
    """Optimiser-state leaves that mirror a parameter (Adam moments, momentum) take that
    parameter's sharding, so FSDP splits them too; counters and scalars are replicated."""
    # A frozen parameter's slot holds an empty optax.MaskedNode (linear probes): keep it empty.
    masked = optax.MaskedNode
    return optax.tree_map_params(
        tx,
        lambda state, sharding: state if isinstance(state, masked) else sharding,
        abstract_opt_state,
        params_shardings,
        transform_non_params=lambda _: replicated(mesh),
        is_leaf=lambda x: isinstance(x, (NamedSharding, masked)),
    )


def bytes_per_device(abstract_tree, shardings) -> int:
    """The largest per-device footprint of a sharded tree, in bytes (the shards one device
    holds: what FSDP shrinks)."""
    per_device: dict = {}
    for leaf, sharding in zip(jax.tree.leaves(abstract_tree), jax.tree.leaves(shardings)):
        shard = sharding.shard_shape(tuple(leaf.shape))
        nbytes = math.prod(shard) * np.dtype(leaf.dtype).itemsize
        for device in sharding.device_set:
            per_device[device] = per_device.get(device, 0) + nbytes
    return max(per_device.values()) if per_device else 0
