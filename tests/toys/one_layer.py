"""A toy model: one linear layer on the raw pixels (`model.name = "OneLayer"`)."""

import jax.numpy as jnp
from flax import nnx

from synth_jax.models import adapt

NAMES = "OneLayer"
DEFAULTS = {}
HEAD = ("head/.*",)


def claims(name):
    return name == "OneLayer"


def validate(config, image_size):
    pass


class OneLayer(nnx.Module):
    def __init__(self, num_classes, image_size, rngs, dtype):
        self.dtype = dtype
        self.head = nnx.Linear(image_size * image_size * 3, num_classes, dtype=dtype, rngs=rngs)

    def features(self, images, train=False, rng=None):
        return images.reshape(images.shape[0], -1).astype(jnp.float32)

    def __call__(self, images, train=False, rng=None):
        return self.head(self.features(images, train, rng).astype(self.dtype)).astype(jnp.float32)


def create(config, num_classes, image_size, rngs, dtype):
    return OneLayer(num_classes, image_size, rngs, dtype)


def adapt_pretrained(target, loaded, dont_load=HEAD):
    return adapt.select_arrays(target, loaded, dont_load)
