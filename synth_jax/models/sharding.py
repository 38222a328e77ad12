"""Logical sharding annotations on parameters.

Each parameter names its dimensions with logical axes (`embed`, `mlp`, `heads`, `classes`);
synth_jax.train.mesh maps them onto mesh axes. The annotation is metadata only: the arrays are
placed by the jit that creates the train state (`out_shardings`), so a module also builds
outside any mesh (eager sharding off).
"""

from flax import nnx


def partitioned(initializer, axes: tuple):
    """`initializer` annotated with one logical axis name (or None) per dimension."""
    return nnx.with_partitioning(initializer, axes, eager_sharding=False)
