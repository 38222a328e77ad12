"""Logical sharding annotations on parameters, and the one hint on activations.

Each parameter names its dimensions with logical axes (`embed`, `mlp`, `heads`, `classes`);
synth_jax.train.mesh maps them onto mesh axes. The annotation is metadata only: the arrays are
placed by the jit that creates the train state (`out_shardings`), so a module also builds
outside any mesh (eager sharding off).
"""

import jax
from flax import nnx
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")  # the mesh axes the batch is split over (synth_jax.train.mesh)


def partitioned(initializer, axes: tuple):
    """`initializer` annotated with one logical axis name (or None) per dimension."""
    return nnx.with_partitioning(initializer, axes, eager_sharding=False)


def batch_sharded(x: jax.Array) -> jax.Array:
    """`x` [B, ...] kept split along B over the batch axes of the mesh being traced under
    (`jax.sharding.use_abstract_mesh`; unchanged outside one).

    Under FSDP the weights are split over `fsdp` too, and left alone the partitioner may split
    a matrix product along the weights' sharded dimension instead: every device then computes
    on activations of the whole global batch and the devices all-reduce them (gigabytes per
    step for a ViT-L). Pinning each block's input to the batch axes makes it gather the
    weights instead, which is what FSDP means."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
    if not axes:
        return x
    return jax.lax.with_sharding_constraint(x, P(axes, *([None] * (x.ndim - 1))))
