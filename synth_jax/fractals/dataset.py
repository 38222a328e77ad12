"""`FractalDataset`: an epoch of fractal images that exists without being stored.

An image is a pure function of (seed, global index): image i shows category
i // images_per_category, and the family's renderer draws it from the family's table and keys
folded from (seed, index) (see synth_jax.fractals.family). So the images of a training step are
the same on any number of devices, and each device renders only the slice of the batch it holds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from synth_jax.errors import UsageError
from synth_jax.fractals import family
from synth_jax.fractals.engine import counter_random


def check_seed(seed: int | None, flag: str = "--seed") -> None:
    """The image seed of a command line (None: the config's): an integer in [0, 2^31), the
    range of a data config's `seed`, which the device takes as int32."""
    if seed is not None and not 0 <= seed < 2**31:
        raise UsageError(f"{flag} {seed}: expected an integer in [0, 2^31)")


class FractalDataset:
    """The shared dataset contract, for every family.

    Attributes: num_classes, num_images (one epoch of unique images), image_size, channels (3),
    images_per_category, multi_label (labels are multi-hot int32[B, C] instead of int32[B]),
    family (its name), table (the FamilyTable), renderer (the family's; see
    synth_jax.fractals.family). `table` may be passed in when it is already built.
    """

    channels = 3

    def __init__(self, data_config, progress: bool = False, table=None):
        self.config = data_config
        if table is None:
            table = family.build_table(data_config, progress=progress)
        self.table = table
        self.family = data_config.family
        self.renderer = family.FAMILIES.lookup(self.family).renderer(data_config, self.table)
        self.num_classes = self.table.num_classes
        self.image_size = data_config.image_size
        self.multi_label = bool(getattr(self.renderer, "multi_label", False))
        self.images_per_category = getattr(self.renderer, "images_per_category", None)
        self.num_images = int(
            getattr(self.renderer, "num_images", None)
            or self.num_classes * self.images_per_category
        )
        family.check_image_count(self.num_images)

    def decompose(self, indices):
        """The family's own split of global indices (IFS families: (category, variant, instance,
        flip), each int32[B])."""
        return self.renderer.decompose(indices)

    def categories(self, indices):
        """The category int32[B] whose image each global index int[B] shows (single-label
        families; a renderer with its own index layout defines `categories`)."""
        if hasattr(self.renderer, "categories"):
            return self.renderer.categories(indices)
        return jnp.asarray(indices, jnp.int32) // self.images_per_category

    # -- rendering -----------------------------------------------------------------------------
    def render_with_info(self, seed, indices):
        """Pure and jittable. seed: int or uint32 scalar; indices: int32[B] in [0, num_images).
        Returns (images [B, H, W, 3] uint8 (or bfloat16, same 0..255 scale), labels int32[B],
        info {degenerate bool[B], fill float[B], ...}).

        When `indices` carry an explicit batch sharding (a mesh made by `jax.make_mesh`, whose
        axes are Explicit by default), each device renders its own slice inside a `shard_map`.
        Under Auto axes the partitioner gives the same images but sums one histogram of the
        whole batch over the devices (an all-reduce of B x H x W floats): call it inside a
        `shard_map` there, as the trainer does (synth_jax.train.local_batch)."""
        indices = jnp.asarray(indices, jnp.int32)
        batch_axes = _explicit_batch_axes(indices)
        if batch_axes is None:
            return self._with_label_noise(seed, indices, self.renderer.render(seed, indices))
        mesh = jax.typeof(indices).sharding.mesh
        rendered = jax.shard_map(
            self.renderer.render,
            mesh=mesh,
            in_specs=(P(), P(batch_axes)),
            out_specs=P(batch_axes),
            check_vma=False,  # the scan's carries start replicated and become per-device
        )(jnp.asarray(seed, jnp.uint32), indices)
        return self._with_label_noise(seed, indices, rendered)

    def _with_label_noise(self, seed, indices, rendered):
        """`rendered` (images, labels, info) with data.label_noise applied to the labels."""
        p = float(self.config.get("label_noise", 0.0) or 0.0)
        if p <= 0.0:
            return rendered
        if self.multi_label:
            raise UsageError("data.label_noise: not defined for multi-label families; set it to 0")
        images, labels, info = rendered
        return images, noisy_labels(seed, indices, labels, p, self.num_classes), info

    def render(self, seed, indices):
        """(images, labels) for global indices; see render_with_info."""
        images, labels, _ = self.render_with_info(seed, indices)
        return images, labels

    # -- epochs --------------------------------------------------------------------------------
    def indices_for_step(self, seed, step, batch_size: int):
        """Pure and jittable: the global indices int32[batch_size] of training step `step`.
        Sample k = step * batch_size + j of the run is position k mod num_images of epoch
        k // num_images, whose order is a seeded bijection of [0, num_images): every image once
        per epoch, a fresh order each epoch, O(batch) work. Counts up to 2^32 samples. (A
        renderer with its own batch layout, the mixture's, defines `indices_for_step`.)"""
        if hasattr(self.renderer, "indices_for_step"):
            return self.renderer.indices_for_step(seed, step, batch_size)
        k = jnp.asarray(step, jnp.uint32) * jnp.uint32(batch_size) + jnp.arange(
            batch_size, dtype=jnp.uint32
        )
        return epoch_order(seed, k, self.num_images)


def noisy_labels(seed, indices, labels, p: float, num_classes: int):
    """Labels int32[B] in which the image of each index, with probability p, gets a label drawn
    uniformly from [0, num_classes) (which may be its own: symmetric label noise). A pure
    function of (seed, index): the same on any number of devices and on a resumed run."""
    base = counter_random.mix32(jnp.asarray(seed, jnp.uint32) ^ jnp.uint32(0x6C4E0153))
    h = counter_random.mix32(base ^ jnp.asarray(indices, jnp.uint32))
    u = (h >> jnp.uint32(8)).astype(jnp.float32) / float(1 << 24)  # uniform in [0, 1)
    drawn = counter_random.mix32(h ^ jnp.uint32(0x2545F491)) % jnp.uint32(num_classes)
    return jnp.where(u < p, drawn.astype(jnp.int32), jnp.asarray(labels, jnp.int32))


def category_walk(num_classes: int, images_per_category: int, num: int) -> np.ndarray:
    """`num` global indices that walk through the categories first: image k shows category
    k mod C (its (k // C)-th image), so a preview shows as many categories as it can."""
    k = np.arange(num)
    category = k % num_classes
    instance = (k // num_classes) % images_per_category
    return (category * images_per_category + instance).astype(np.int32)


def epoch_order(seed, sample, n: int):
    """Sample numbers uint32[B] of a run -> indices int32[B] in [0, n): sample k is position
    k mod n of epoch k // n, whose order is a bijection of [0, n) keyed by (seed, epoch)."""
    n32 = jnp.uint32(n)
    epoch, position = sample // n32, sample % n32
    round_keys = counter_random.mix32(
        counter_random.mix32(jnp.asarray(seed, jnp.uint32) ^ jnp.uint32(0x9E3779B9)) ^ epoch
    )
    return shuffle_position(position, round_keys, n).astype(jnp.int32)


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
