"""A toy evaluator: the L2 norm of the model's parameters (`type="param_norm"`)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

DEFAULTS = {}


def validate(config, prefix):
    pass


class Evaluator:
    def __init__(self, config, context):
        self.context = context

    def run(self, model):
        leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
        squares = sum(float(jnp.sum(jnp.square(x.astype(jnp.float32)))) for x in leaves)
        return {"norm": float(np.sqrt(squares))}
