"""On-device preprocessing of real images: pure, jittable functions of uint8 batches.

The host pipeline ships uint8 images at their stored size and channel count. On the device,
`to_rgb` turns grayscale into RGB (so one model takes MNIST and CIFAR alike) and the trainer's
augmentation (`synth_jax.train.augment`: random-resized-crop, flips, normalisation, mixup) does the
rest. `eval_images` is the deterministic evaluation transform: the whole image resized to the
model's resolution and normalised exactly as in training, with no randomness.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synth_jax.train import augment


def to_rgb(images: jax.Array) -> jax.Array:
    """[B, H, W, 1] -> [B, H, W, 3] by repeating the channel; 3-channel input is returned as is."""
    if images.shape[-1] == 1:
        return jnp.repeat(images, 3, axis=-1)
    if images.shape[-1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, got shape {images.shape}")
    return images


def eval_images(images: jax.Array, size: int, mean, std) -> jax.Array:
    """uint8[B, H, W, C] -> float32[B, size, size, 3]: whole image resized, (x/255 - mean) / std."""
    x = to_rgb(images).astype(jnp.float32) / 255.0
    x = augment.resize(x, size)
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
