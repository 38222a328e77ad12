"""Logical sharding annotations on parameters.

Each parameter names its dimensions with logical axes (`embed`, `mlp`, `heads`, `classes`);
synth_jax.train.mesh maps them onto mesh axes. The annotation is metadata only: the arrays are
placed by the jit that creates the train state (`out_shardings`), so a module also builds
outside any mesh (eager sharding off). Under FSDP the step gathers each weight where the model
uses it (synth_jax.train.mesh.gathered_shardings), so activations stay split over the batch.
"""

from flax import nnx

BATCH_AXES = ("data", "fsdp")  # the mesh axes the batch is split over (synth_jax.train.mesh)


def partitioned(initializer, axes: tuple):
    """`initializer` annotated with one logical axis name (or None) per dimension."""
    return nnx.with_partitioning(initializer, axes, eager_sharding=False)
