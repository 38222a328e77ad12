"""A toy data family: category c is a white disc whose radius grows with c, at a centre jittered
per image. It has a table (the radii), an index layout (`images_per_category`), a jittable
renderer and preview settings: everything a family module defines."""

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.config import check

DEFAULTS = dict(images_per_category=4, jitter=0.1)  # centre offset U(-jitter, jitter)
TABLE_FREE_KEYS = ("images_per_category", "jitter")


def validate(config) -> None:
    check(config, "images_per_category", lambda v: isinstance(v, int) and v >= 1, "a count")
    check(config, "jitter", lambda v: 0 <= v < 0.5, "a number in [0, 0.5)")


def build_table(config, rng, progress):
    radius = np.linspace(0.15, 0.85, config.num_classes).astype(np.float32)
    return {"radius": radius}, {"radii": radius.round(3).tolist()}


class DiscImages:
    def __init__(self, config, table):
        self.images_per_category = config.images_per_category
        self.size, self.jitter = config.image_size, config.jitter
        self._radius = jnp.asarray(table.radius)

    def render(self, seed, indices):
        category = indices // self.images_per_category
        grid = jnp.linspace(-1.0, 1.0, self.size)

        def one(index, radius):
            key = jax.random.fold_in(jax.random.key(jnp.asarray(seed, jnp.uint32)), index)
            cy, cx = jax.random.uniform(key, (2,), minval=-self.jitter, maxval=self.jitter)
            inside = (grid[:, None] - cy) ** 2 + (grid[None, :] - cx) ** 2 <= radius**2
            return jnp.repeat(inside[..., None], 3, -1).astype(jnp.uint8) * 255, inside.mean()

        images, fill = jax.vmap(one)(indices, self._radius[category])
        return images, category, {"degenerate": fill == 0, "fill": fill}


def renderer(config, table):
    return DiscImages(config, table)


def preview_overrides(num, image_size):
    return {}
