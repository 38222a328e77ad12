"""The images of a table of iterated function systems: the renderer that fractaldb, sigma,
onepfrac and one_image share.

The table (see `ifs_table`) holds params float32[C, N, 7] (one system per category), variants
float32[V, 6] (factors on a..f: FractalDB's weight rows; one row of ones elsewhere) and
variant_ok bool[C, V] (False where a (category, row) is degenerate and is drawn with row 0).
A global index is, by integer arithmetic, (category, variant, instance, flip); the chaos game's
points come from `fold_in(key(seed), -1 - (category * V + variant))`, so the instances of a
weight row share their points and differ by patches, colours and windows, drawn from
`fold_in(key(seed), index - flip)`; flips share everything.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.fractals.engine import render


def ifs_table(params, variants=None, variant_ok=None) -> dict:
    """The arrays of an IFS family's table, float32 (variants default to one row of ones,
    variant_ok to all True)."""
    variants = np.ones((1, 6)) if variants is None else variants
    if variant_ok is None:
        variant_ok = np.ones((len(params), len(variants)), bool)
    return dict(
        params=np.asarray(params).astype(np.float32),
        variants=np.asarray(variants).astype(np.float32),
        variant_ok=variant_ok,
    )


class IFSImages:
    """A family's renderer over an IFS table: `images_per_category` = variants x instances x
    flips, and `render(seed, indices)`, pure and jittable. `flips` is 4 for FractalDB's flips by
    index (bit 0 vertical, bit 1 horizontal), else 1."""

    def __init__(self, table, spec: render.RenderSpec, instances: int, flips: int = 1):
        self.spec = spec
        self.num_variants = len(table.variants)
        self.num_instances = int(instances)
        self.num_flips = int(flips)
        self.images_per_category = self.num_variants * self.num_instances * self.num_flips
        self._params = jnp.asarray(table.params)
        self._variant_ok = jnp.asarray(table.variant_ok)
        # Factors on (a..f, p): p is never rescaled.
        self._variants = jnp.asarray(
            np.concatenate([table.variants, np.ones((self.num_variants, 1), np.float32)], 1)
        )

    def decompose(self, indices):
        """Global image indices int[B] -> (category, variant, instance, flip), each int32[B]."""
        indices = jnp.asarray(indices, jnp.int32)
        category, rest = jnp.divmod(indices, self.images_per_category)
        variant, rest = jnp.divmod(rest, self.num_instances * self.num_flips)
        instance, flip = jnp.divmod(rest, self.num_flips)
        return category, variant, instance, flip

    def render(self, seed, indices):
        """seed: uint32 scalar; indices int32[B] -> (images [B, H, W, 3] spec.dtype on the 0..255
        scale, labels int32[B] (the categories), info {degenerate, fill, finite} of [B])."""
        base = jax.random.key(jnp.asarray(seed, jnp.uint32))
        category, variant, _, flip = self.decompose(indices)
        # A degenerate (category, weight row) is rendered as row 0 (the table says which).
        variant = jnp.where(self._variant_ok[category, variant], variant, 0)
        # Instances of a weight row share the chaos game's points; flips share everything.
        game_keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(
            -1 - (category * self.num_variants + variant)
        )
        image_keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(indices - flip)
        params = self._params[category] * self._variants[variant][:, None, :]
        images, info = self.draw(params, game_keys, image_keys, flip)
        return images, category, info

    def draw(self, params, game_keys, image_keys, flips):
        """The images of systems float[B, N, 7]: the chaos-game renderer (one_image overrides)."""
        return render.render_batch(params, game_keys, image_keys, flips, self.spec)

    def chaos_games(self, batch: int) -> list[tuple[render.RenderSpec, int, int]]:
        """The chaos games a render of `batch` images runs, for costing it: [(spec, maps per
        system, games)]."""
        return [(self.spec, self._params.shape[1], batch)]
