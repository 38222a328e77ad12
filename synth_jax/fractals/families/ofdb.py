"""OFDB, the One-instance FractalDataBase (Nakamura et al., ICCV 2023), 2-D: the `ofdb` family.

One image per class: the per-sample augmentation of the training config (random-resized crops,
flips, random erasing, mixup / cutmix, label smoothing) replaces FractalDB's instances.

Classes: the fractaldb family's category search (N ~ U{2..7} maps, a..f ~ U(-1, 1), p from
|det|, kept when a 100k-point render at 512 px fills >= 0.2), numbered in acceptance order.

The class image, drawn from the class key fold_in(fold_in(key(seed), FAMILY_TAG), class) and
nothing else, so it is the same at every step, on every device, in every batch: 200k chaos-game
points (1,024 chains after a burn-in; the original runs one chain) fitted with the start point
(0, 0) into [pad, size - 1 - pad] (362 px, pad 6, as the original's fit, whose bounding box
always holds the start point); the start point, then every point in order, pastes a 3x3 block
whose cells are `gray_value` or 0 by the point's own random non-empty 9-bit mask, ZERO CELLS
OVERWRITING what is underneath (a pixel shows its last covering point's mask bit); flipped
vertically. The masks are a keyed hash of the point's number: one fixed image per class.
The original also draws the chain's first transient points (here burnt in) and pastes each block
at (x + 1, y + 1) (here centred on the point): shifts of a pixel or two.

The "first weights row" pitfall: the public renderer applies the first row of its weights file
(`weights_0.4.csv`: parameter a x 0.2), so its class image is not the accepted search fractal.
`first_weights_row=False` (default) renders the accepted system, as the paper describes;
True renders a x 0.2, as the public code does (that row is checked too; a degenerate one is
handled per `degenerate`: resample renders the accepted system, reject drops the class).
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.config import check
from synth_jax.fractals.engine import counter_random, data_keys, render
from synth_jax.fractals.families import fractaldb

FAMILY_TAG = zlib.crc32(b"ofdb") & 0x7FFFFFFF
PUBLIC_RENDERER_ROW = (0.2, 1.0, 1.0, 1.0, 1.0, 1.0)  # weights_0.4.csv row 0: a x 0.2

DEFAULTS = dict(
    image_size=362,  # the released 2D-OFDB images
    points=200_000,
    gray_value=127,
    min_maps=2,
    max_maps=7,
    fill_threshold=0.2,
    search_points=100_000,
    search_size=512,
    first_weights_row=False,  # True: a x 0.2, as the public renderer (see the module docstring)
)
CHOICES = {
    "patch": ("point", "none"),  # point: the 3x3 masked blocks above | none: single pixels
    "flip": ("none",),  # the augmentation flips; the class image is fixed
    "colour": ("gray",),
    "background": ("black",),
    "window": (False,),
    "graded": (False,),
}


def validate(config) -> None:
    data_keys.check_search_keys(config)
    data_keys.check_map_counts(config)
    check(config, "first_weights_row", lambda v: isinstance(v, bool), "true or false")


def build_table(config, rng: np.random.Generator, progress: bool) -> tuple[dict, dict]:
    rows = [np.ones(6)] + ([np.asarray(PUBLIC_RENDERER_ROW)] if config.first_weights_row else [])
    return fractaldb.search_table(config, rng, np.stack(rows), progress)


def last_writer_blocks(pixels: jax.Array, words: jax.Array, size: int) -> jax.Array:
    """The painter's rule of 3x3 masked blocks without drawing them one by one. pixels:
    int32[P] flat pixel of each point in drawing order (size^2: dropped); words: uint32[2] key
    of the masks (point t's mask: 1 + hash(t) mod 511, a non-empty 9-bit mask) -> bool[H, W].

    Pixel q shows the block of the last point t whose block covers it, i.e. the largest t among
    the latest points of its 3x3 neighbourhood: one scatter-max of t per pixel, then a 3x3
    maximum; the neighbour it came from says which of t's mask bits q shows."""
    t = jnp.arange(pixels.shape[0], dtype=jnp.int32)
    latest = jnp.full(size * size + 1, -1, jnp.int32).at[pixels].max(t)[:-1].reshape(size, size)
    padded = jnp.pad(latest, 1, constant_values=-1)
    # Candidate k: the point at offset -(dy, dx) of q, whose mask bit k = (dy + 1) * 3 + dx + 1.
    candidates = jnp.stack(
        [padded[2 - k // 3 : 2 - k // 3 + size, 2 - k % 3 : 2 - k % 3 + size] for k in range(9)]
    )
    owner = jnp.max(candidates, axis=0)
    bit = jnp.argmax(candidates, axis=0)
    mix = counter_random.mix32
    mask = 1 + mix(mix(owner.astype(jnp.uint32) ^ words[0]) ^ words[1]) % jnp.uint32(511)
    return (owner >= 0) & (((mask >> bit.astype(jnp.uint32)) & 1) == 1)


class OneInstanceImages:
    """The family's renderer: image i is class i's fixed image (images_per_category = 1)."""

    images_per_category = 1

    def __init__(self, config, table):
        self.spec = data_keys.render_spec(config)
        params = np.asarray(table.params)
        if config.first_weights_row:  # the public renderer's row where it renders well
            scaled = params * np.append(table.variants[1], 1.0).astype(np.float32)
            params = np.where(table.variant_ok[:, 1, None, None], scaled, params)
        self._params = jnp.asarray(params)

    def chaos_games(self, batch: int) -> list[tuple[render.RenderSpec, int, int]]:
        """The chaos games a render of `batch` images runs, for costing it: [(spec, maps per
        system, games)]."""
        return [(self.spec, self._params.shape[1], batch)]

    def draw(self, params, key):
        """One class image uint8-valued float[H, W] from its system float[N, 7] and class key."""
        spec = self.spec
        k_game, k_mask = jax.random.split(key)
        x, y, box = render.chaos_game(params, k_game, spec)
        # The start point (0, 0) is drawn first and lies in the fitted box.
        box = jnp.concatenate([jnp.minimum(box[:2], 0.0), jnp.maximum(box[2:], 0.0)])
        x, y = jnp.concatenate([jnp.zeros(1), x]), jnp.concatenate([jnp.zeros(1), y])
        pixels, finite = render.pixel_indices(x, y, box, None, spec)
        if spec.patch == "point":
            words = jax.random.bits(k_mask, (2,), jnp.uint32)
            on = last_writer_blocks(pixels, words, spec.image_size)
        else:
            on = render.histogram(pixels[None], spec.image_size)[0] > 0
        return on[::-1].astype(jnp.float32) * spec.gray_value, finite

    def render(self, seed, indices):
        """seed: uint32 scalar; indices int32[B] (= classes) -> (images [B, H, W, 3], labels
        int32[B], info {degenerate, fill, finite} of [B])."""
        classes = jnp.asarray(indices, jnp.int32)
        base = jax.random.fold_in(jax.random.key(jnp.asarray(seed, jnp.uint32)), FAMILY_TAG)
        keys = jax.vmap(lambda c: jax.random.fold_in(base, c))(classes)
        level, finite = jax.vmap(self.draw)(self._params[classes], keys)
        fill = jnp.mean(level > 0, axis=(1, 2))
        images = render.to_dtype(jnp.repeat(level[..., None], 3, axis=-1), self.spec.dtype)
        info = {"degenerate": (finite < 0.5) | (fill == 0), "fill": fill, "finite": finite}
        return images, classes, info


def renderer(config, table) -> OneInstanceImages:
    return OneInstanceImages(config, table)


def preview_overrides(num: int, image_size: int) -> dict:
    return dict(
        points=data_keys.preview_points(image_size),
        search_points=20_000,
        search_size=128,
        fill_threshold=0.1,
    )
