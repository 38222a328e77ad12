"""The training step's batch, made where it lives: each device renders (on-device sources) and
augments only the rows of its own shard of the global batch.

    make = batch_fn(mesh, source, seed=0, global_batch=256, num_classes=1000, image_size=224,
                    augment_config=config.augment)
    images, targets, labels = make(step, key)                # on-device source
    images, targets, labels = make(step, key, host_batch)    # host-fed {"image", "label"}

Both run inside one `jax.shard_map` over the mesh, so no collective of the step carries an
image, a histogram or a target. Left to the partitioner, the same code gives the same numbers
but not locally: the renderer's one scatter-add over the batch becomes an all-reduce of a
histogram of the whole global batch (B x H x W floats on every chip, every step), and a mixup
partner on another device becomes a collective-permute of images.

Devices along the `model` axis hold the same rows (tensor parallelism needs the whole shard on
each) and make the same images rather than send them to one another.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from synth_jax.train import augment as augment_lib
from synth_jax.train.mesh import BATCH_AXES


def batch_fn(
    mesh,
    source,
    *,
    seed: int,
    global_batch: int,
    num_classes: int,
    image_size: int,
    augment_config,
    train: bool = True,
    render_chunk: int = 0,
):
    """Returns `make(step, key, host_batch=None) -> (images float32[B, S, S, 3], targets
    float32[B, C], labels int32[B])`, each split over the mesh's batch axes; B = global_batch,
    S = image_size. Call it inside the jitted step.

    source: an on-device source (`render(seed, indices)`, `indices_for_step(seed, step, B)`), or
    None when every call passes `host_batch` = {"image": [B, H, W, 3] uint8 or float, "label":
    int[B]}, split over the batch axes. key: the step's augmentation key (the same on every
    device); each image's randomness comes from (key, its row in the global batch), so the
    batch is the same on any mesh (mixup pairs rows 2k and 2k+1: every device must hold an even
    number of rows when it is on, which trainer.validate checks).

    render_chunk: images a device renders at once (0, or more than it holds: all its rows); a
    smaller one must divide the rows a device holds. The images are the same for any chunk
    (each is a function of its index). Chunks are a loop of smaller renders: they compile
    faster (the TPU compiler's time grows with the images in one render: FractalDB at 224 px
    for one v5p chip, 35 s for 128 images, 11 s in chunks of 16) and hold fewer points at once
    (421 MB against 85 MB there).
    """
    rows_spec = P(BATCH_AXES)

    def render(step, rows):
        indices = jnp.take(source.indices_for_step(seed, step, global_batch), rows)
        n = indices.shape[0]
        if not render_chunk or render_chunk >= n:
            return source.render(seed, indices)
        images, labels = jax.lax.map(
            lambda chunk: source.render(seed, chunk), indices.reshape(n // render_chunk, -1)
        )
        return images.reshape(n, *images.shape[2:]), labels.reshape(n, *labels.shape[2:])

    def augment(key, images, labels, rows):
        images, targets = augment_lib.augment_batch(
            key, images, labels, rows, num_classes, image_size, augment_config, train
        )
        return images, targets, labels.astype(jnp.int32)

    def render_shard(step, key, rows):
        # Every device computes the step's B indices (integer work, no communication) and
        # renders the rows it holds.
        images, labels = render(step, rows)
        return augment(key, images, labels, rows)

    def augment_shard(key, images, labels, rows):
        return augment(key, images, labels, rows)

    def make(step, key, host_batch=None):
        rows = jnp.arange(global_batch, dtype=jnp.int32)
        if host_batch is None:
            fn, args = render_shard, (step, key, rows)
            in_specs = (P(), P(), rows_spec)
        else:
            fn, args = augment_shard, (key, host_batch["image"], host_batch["label"], rows)
            in_specs = (P(), rows_spec, rows_spec, rows_spec)
        return jax.shard_map(
            fn,
            mesh=mesh,
            in_specs=in_specs,
            out_specs=(rows_spec, rows_spec, rows_spec),
            check_vma=False,  # the renderer's scan carries start replicated, end per device
        )(*args)

    return make
