"""`FractalDataset`: an epoch of fractal images that exists without being stored.

An image is a pure function of (seed, global index): index -> (category, weight row, instance,
flip) by integer arithmetic, and the image's randomness comes from `fold_in(key(seed), index)`.
So the images of a training step are the same on any number of devices, and each device renders
only the slice of the batch it holds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from synth_jax.fractals import counter_random, family, one_image, render


class FractalDataset:
    """The shared dataset contract.

    Attributes: num_classes, num_images (one epoch of unique images), image_size, channels (3),
    table (the FamilyTable), spec (the RenderSpec), images_per_category.
    """

    channels = 3

    def __init__(self, data_config, progress: bool = False):
        self.config = data_config
        self.table = family.build_table(data_config, progress=progress)
        self.spec = family.render_spec(data_config)
        self.family = data_config.family
        self.num_classes = self.table.num_classes
        self.image_size = data_config.image_size
        if self.family == "fractaldb":
            self.num_variants = len(self.table.variants)
            self.num_instances = data_config.instances
            self.num_flips = 4 if data_config.flip == "index" else 1
        else:
            self.num_variants, self.num_flips = 1, 1
            self.num_instances = data_config.images_per_category
        self.images_per_category = self.num_variants * self.num_instances * self.num_flips
        self.num_images = self.num_classes * self.images_per_category
        if self.num_images >= 2**31:
            raise ValueError(f"{self.num_images} images do not fit int32 indices")
        self._params = jnp.asarray(self.table.params)
        self._variant_ok = jnp.asarray(self.table.variant_ok)
        # Factors on (a..f, p): p is never rescaled.
        self._variants = jnp.asarray(
            np.concatenate([self.table.variants, np.ones((self.num_variants, 1), np.float32)], 1)
        )
        self._photo = None
        if self.family == "one_image":
            self._photo = jnp.asarray(one_image.load_photo(data_config.photo, self.image_size))

    # -- index arithmetic --------------------------------------------------------------------
    def decompose(self, indices):
        """Global image indices int[B] -> (category, variant, instance, flip), each int32[B]."""
        indices = jnp.asarray(indices, jnp.int32)
        category, rest = jnp.divmod(indices, self.images_per_category)
        variant, rest = jnp.divmod(rest, self.num_instances * self.num_flips)
        instance, flip = jnp.divmod(rest, self.num_flips)
        return category, variant, instance, flip

    # -- rendering -----------------------------------------------------------------------------
    def render_with_info(self, seed, indices):
        """Pure and jittable. seed: int or uint32 scalar; indices: int32[B] in [0, num_images).
        Returns (images [B, H, W, 3] uint8 (or bfloat16, same 0..255 scale), labels int32[B],
        info {degenerate bool[B], fill float[B], finite float[B]}).

        When `indices` carry an explicit batch sharding (a mesh made by `jax.make_mesh`, whose
        axes are Explicit by default), each device renders its own slice inside a `shard_map`.
        Under Auto axes the partitioner gives the same images but sums one histogram of the
        whole batch over the devices (an all-reduce of B x H x W floats): call it inside a
        `shard_map` there, as the trainer does (synth_jax.train.local_batch)."""
        indices = jnp.asarray(indices, jnp.int32)
        batch_axes = _explicit_batch_axes(indices)
        if batch_axes is None:
            return self._render_local(seed, indices)
        mesh = jax.typeof(indices).sharding.mesh
        return jax.shard_map(
            self._render_local,
            mesh=mesh,
            in_specs=(P(), P(batch_axes)),
            out_specs=P(batch_axes),
            check_vma=False,  # the scan's carries start replicated and become per-device
        )(jnp.asarray(seed, jnp.uint32), indices)

    def _render_local(self, seed, indices):
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
        if self.family == "one_image":
            images, info = jax.vmap(self._render_photo)(params, image_keys, flip)
        else:
            images, info = render.render_batch(params, game_keys, image_keys, flip, self.spec)
        return images, category, info

    def render(self, seed, indices):
        """(images, labels) for global indices; see render_with_info."""
        images, labels, _ = self.render_with_info(seed, indices)
        return images, labels

    def _render_photo(self, params, key, flip):
        k_flip, k_compose = jax.random.split(key)
        level = one_image.warp(self._photo, params)
        if self.spec.random_flip:
            flip = jax.random.randint(k_flip, (), 0, 4)
        level = render.flip_image(level, flip)
        # A photo has no zero-valued background: render it as its own foreground.
        spec = self.spec
        image = render.compose(jnp.maximum(level, 1e-6), k_compose, spec)
        info = {"degenerate": jnp.bool_(False), "fill": jnp.float32(1.0),
                "finite": jnp.float32(1.0)}  # fmt: skip
        return image, info

    # -- epochs --------------------------------------------------------------------------------
    def indices_for_step(self, seed, step, batch_size: int):
        """Pure and jittable: the global indices int32[batch_size] of training step `step`.
        Sample k = step * batch_size + j of the run is position k mod num_images of epoch
        k // num_images, whose order is a seeded bijection of [0, num_images): every image once
        per epoch, a fresh order each epoch, O(batch) work. Counts up to 2^32 samples."""
        k = jnp.asarray(step, jnp.uint32) * jnp.uint32(batch_size) + jnp.arange(
            batch_size, dtype=jnp.uint32
        )
        n = jnp.uint32(self.num_images)
        epoch, position = k // n, k % n
        round_keys = counter_random.mix32(
            counter_random.mix32(jnp.asarray(seed, jnp.uint32) ^ jnp.uint32(0x9E3779B9)) ^ epoch
        )
        return shuffle_position(position, round_keys, self.num_images).astype(jnp.int32)


def _explicit_batch_axes(indices):
    """The mesh axes that shard `indices`' batch dimension explicitly, or None."""
    sharding = getattr(jax.typeof(indices), "sharding", None)
    spec = getattr(sharding, "spec", None)
    if not spec or spec[0] is None:
        return None
    explicit = getattr(jax.sharding.AxisType, "Explicit", None)
    axes = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
    types = dict(zip(sharding.mesh.axis_names, sharding.mesh.axis_types))
    return spec[0] if all(types.get(a) == explicit for a in axes) else None


def shuffle_position(position, key, n: int, rounds: int = 4):
    """A keyed bijection of [0, n): a balanced Feistel network on the smallest even number of bits
    covering n, cycle-walked back into range (fewer than 4 walks expected, since 2^bits < 4n).
    position: uint32[B] in [0, n); key: uint32 (scalar or [B]) -> uint32[B]."""
    half_bits = max(1, (int(n - 1).bit_length() + 1) // 2)
    mask = jnp.uint32((1 << half_bits) - 1)
    key = jnp.broadcast_to(jnp.asarray(key, jnp.uint32), jnp.shape(position))

    def feistel(x):
        left, right = x >> half_bits, x & mask
        for r in range(rounds):
            left, right = (
                right,
                left
                ^ (counter_random.mix32(right ^ counter_random.mix32(key + jnp.uint32(r))) & mask),
            )
        return (left << half_bits) | right

    def walk(state):
        x, _ = state
        y = jnp.where(x >= n, feistel(x), x)
        return y, jnp.any(y >= n)

    x = feistel(jnp.asarray(position, jnp.uint32))
    x, _ = jax.lax.while_loop(lambda s: s[1], walk, (x, jnp.any(x >= n)))
    return x
