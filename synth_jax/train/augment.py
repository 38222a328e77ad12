"""On-device augmentation: pure jnp functions of (key, batch), jittable, usable under any sharding.

Images here are float32[B, H, W, 3] in [0, 1] unless said otherwise; labels are soft targets
float32[B, C] (from class ids int[B] or multi-hot labels int[B, C]). Per-image operations take one
key per image (`image_keys(key, rows)`, keyed by the image's row in the global batch), so the
result is a function of (key, rows, images) only: a resumed run that derives the key from
(seed, step) repeats it, and a device that augments only its own shard of the batch produces
exactly its rows of the whole batch's augmentation.

`config.augment` keys:
    crop            "rrc" (random-resized-crop), "resize" (no crop)
    crop_scale      RRC area fraction range, e.g. (0.08, 1.0)
    crop_ratio      RRC aspect-ratio range, e.g. (3/4, 4/3)
    hflip, vflip    random horizontal / vertical flips (p = 0.5)
    color_jitter    brightness, contrast and saturation factors ~ U(1 - s, 1 + s) (0: off)
    random_erasing  probability of erasing one random rectangle with noise (Zhong et al. 2020)
    mixup, cutmix   Beta(alpha, alpha) mixing strength (0: off); with both, each batch picks one
    label_smoothing epsilon for the one-hot targets
    mean, std       per-channel normalisation after the colour operations
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from synth_jax.config import check, check_choice
from synth_jax.errors import UsageError


def augment_config(**overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(
        dict(
            crop="resize",
            crop_scale=(0.08, 1.0),
            crop_ratio=(3 / 4, 4 / 3),
            hflip=False,
            vflip=False,
            color_jitter=0.0,
            random_erasing=0.0,
            mixup=0.0,
            cutmix=0.0,
            label_smoothing=0.0,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        )
    )
    config.update(overrides)
    return config


AUGMENT_KEYS = tuple(augment_config().keys())


def check_augment_config(config) -> None:
    """Raises UsageError naming the bad `augment.*` key."""
    unknown = sorted(set(config.keys()) - set(AUGMENT_KEYS))
    if unknown:
        raise UsageError(
            f"augment.{unknown[0]} is not an augmentation option; known: {', '.join(AUGMENT_KEYS)}"
        )
    check_choice(config, "crop", ("rrc", "resize"), "augment.")
    check(
        config,
        "crop_scale",
        lambda v: 0 < v[0] <= v[1] <= 1,
        "(lo, hi) with 0 < lo <= hi <= 1",
        "augment.",
    )
    for key in ("random_erasing", "label_smoothing"):
        check(config, key, lambda v: 0 <= v <= 1, "a probability in [0, 1]", "augment.")
    for key in ("mixup", "cutmix", "color_jitter"):
        check(config, key, lambda v: v >= 0, "a number >= 0", "augment.")


def resize(images, size: int):
    """Bilinear resize of float[B,H,W,C] to float[B,size,size,C] (identity when equal)."""
    b, h, w, c = images.shape
    if h == size and w == size:
        return images
    return jax.image.resize(images, (b, size, size, c), "bilinear", antialias=True)


def image_keys(key, rows):
    """One key per image: key[B] from a batch key and the images' rows int[B] in the global batch.

    Keyed by the global row, an image's augmentation does not depend on which device holds it
    or how many images that device holds, so a batch augmented shard by shard on any mesh is the
    batch augmented whole."""
    return jax.vmap(lambda row: jax.random.fold_in(key, row))(jnp.asarray(rows, jnp.uint32))


def sample_crop_boxes(keys, height: int, width: int, scale, ratio):
    """RRC boxes (Szegedy et al. 2015, torchvision's sampler in closed form), one per key.

    keys: key[B]. Returns float32[B, 4] (y0, x0, h, w) in pixels. Area fraction ~ U(scale),
    log-aspect ~ U(log ratio); a box that does not fit is clipped to the image (torchvision
    instead retries ten times and then falls back to a centre crop; clipping keeps this
    branch-free).
    """

    def one(key):
        k_area, k_ratio, k_y, k_x = jax.random.split(key, 4)
        area = height * width * jax.random.uniform(k_area, minval=scale[0], maxval=scale[1])
        log_r = jax.random.uniform(k_ratio, minval=math.log(ratio[0]), maxval=math.log(ratio[1]))
        aspect = jnp.exp(log_r)
        w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
        h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
        y0 = jax.random.uniform(k_y) * (height - h)
        x0 = jax.random.uniform(k_x) * (width - w)
        return jnp.stack([y0, x0, h, w])

    return jax.vmap(one)(keys)


def random_resized_crop(keys, images, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """float[B,H,W,C] -> float[B,size,size,C]: a random box of each image (keys: key[B]),
    resized bilinearly."""
    _, height, width, c = images.shape
    boxes = sample_crop_boxes(keys, height, width, scale, ratio)

    def crop_one(image, box):
        y0, x0, h, w = box[0], box[1], box[2], box[3]
        scale_yx = jnp.stack([size / h, size / w])
        translate = -jnp.stack([y0, x0]) * scale_yx
        return jax.image.scale_and_translate(
            image, (size, size, c), (0, 1), scale_yx, translate, "linear", antialias=True
        )

    return jax.vmap(crop_one)(images, boxes)


def random_flip(keys, images, axis: int):
    """Flips each image (keys: key[B]) along `axis` (1: vertical, 2: horizontal) with
    probability 1/2."""
    flip = jax.vmap(lambda k: jax.random.bernoulli(k, 0.5))(keys)
    return jnp.where(flip[:, None, None, None], jnp.flip(images, axis=axis), images)


def color_jitter(keys, images, strength: float):
    """Brightness, contrast and saturation, each scaled by U(1 - s, 1 + s) per image."""

    def factors(key):
        return jax.random.uniform(key, (3,), minval=1 - strength, maxval=1 + strength)

    u = jax.vmap(factors)(keys)[:, None, None, None, :]  # [B, 1, 1, 1, 3]
    images = images * u[..., 0]
    gray = images @ jnp.array([0.299, 0.587, 0.114], images.dtype)
    mean = gray.mean(axis=(1, 2), keepdims=True)[..., None]
    images = (images - mean) * u[..., 1] + mean
    gray = (images @ jnp.array([0.299, 0.587, 0.114], images.dtype))[..., None]
    images = (images - gray) * u[..., 2] + gray
    return jnp.clip(images, 0.0, 1.0)


def random_erasing(keys, images, prob: float, area=(0.02, 1 / 3), ratio=(0.3, 3.3)):
    """Replaces one random rectangle per image (with probability `prob`) by N(0, 1) noise.

    Applied after normalisation, as in timm's 'pixel' mode. keys: key[B].
    """
    _, h, w, _ = images.shape
    split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
    k_apply, k_box, k_noise = split[:, 0], split[:, 1], split[:, 2]
    boxes = sample_crop_boxes(k_box, h, w, area, ratio)
    ys = jnp.arange(h)[None, :, None]
    xs = jnp.arange(w)[None, None, :]
    y0, x0, bh, bw = (boxes[:, i, None, None] for i in range(4))
    inside = (ys >= y0) & (ys < y0 + bh) & (xs >= x0) & (xs < x0 + bw)
    apply = jax.vmap(lambda k: jax.random.bernoulli(k, prob))(k_apply)[:, None, None]
    noise = jax.vmap(lambda k: jax.random.normal(k, images.shape[1:], images.dtype))(k_noise)
    return jnp.where((inside & apply)[..., None], noise, images)


def one_hot_targets(labels, num_classes: int, smoothing: float = 0.0):
    """Class ids int[B] (one-hot) or multi-hot labels int[B, C] (as they are) -> float32[B, C],
    with label smoothing (Szegedy et al. 2016): y (1 - smoothing) + smoothing / C."""
    if labels.ndim == 2:
        targets = labels.astype(jnp.float32)
    else:
        targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return targets * (1.0 - smoothing) + smoothing / num_classes


def mixup_partners(batch: int):
    """Row 2k mixes with row 2k+1 and back (an odd last row with itself): int32[batch].

    timm mixes each image with the batch reversed, which pairs images across devices. Neighbours
    are as good a pairing (the batch is in random order) and stay on one device whenever every
    device holds an even number of rows, which the trainer checks."""
    partners = jnp.arange(batch, dtype=jnp.int32) ^ 1
    return jnp.where(partners < batch, partners, batch - 1)


def mixup_cutmix(key, images, targets, mixup_alpha: float, cutmix_alpha: float):
    """Mixes each image with its neighbour (mixup_partners; Zhang et al. 2018; Yun et al. 2019).

    One lambda ~ Beta(alpha, alpha) per batch, as in timm: `key` is the batch's key, the same on
    every device. With both enabled, the batch uses cutmix or mixup with probability 1/2 each.
    Cutmix's lambda is corrected to the box's area.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, targets
    b, h, w, _ = images.shape
    k_choice, k_mix, k_cut, k_box = jax.random.split(key, 4)
    partners = mixup_partners(b)
    partner_images = jnp.take(images, partners, axis=0)
    partner_targets = jnp.take(targets, partners, axis=0)
    lam_mix = (
        jax.random.beta(k_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else jnp.float32(1.0)
    )
    lam_cut = (
        jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else jnp.float32(1.0)
    )
    # the cutmix box: side sqrt(1 - lam) of each side, centred uniformly, clipped to the image
    cut = jnp.sqrt(1.0 - lam_cut)
    cy, cx = jax.random.uniform(k_box, (2,))
    y0, y1 = jnp.clip(cy - cut / 2, 0, 1) * h, jnp.clip(cy + cut / 2, 0, 1) * h
    x0, x1 = jnp.clip(cx - cut / 2, 0, 1) * w, jnp.clip(cx + cut / 2, 0, 1) * w
    ys = jnp.arange(h)[:, None] + 0.5
    xs = jnp.arange(w)[None, :] + 0.5
    box = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
    lam_cut = 1.0 - box.mean()
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cut = jax.random.bernoulli(k_choice, 0.5)
    else:
        use_cut = jnp.bool_(cutmix_alpha > 0)
    mixed_images = jnp.where(
        use_cut,
        jnp.where(box[None, :, :, None], partner_images, images),
        lam_mix * images + (1 - lam_mix) * partner_images,
    )
    lam = jnp.where(use_cut, lam_cut, lam_mix)
    return mixed_images, lam * targets + (1 - lam) * partner_targets


def augment_batch(
    key, images_uint8_or_float, labels, rows, num_classes: int, size: int, config, train=True
):
    """The whole pipeline: uint8 or float images [b,H,W,3] -> (normalised float32[b,size,size,3],
    soft targets float32[b, C]). With `train=False`: resize and normalise only.

    `key` is the step's augmentation key and `rows` int[b] the images' rows in the global batch:
    each image draws its own randomness from (key, row), and mixup pairs rows 2k and 2k+1, so
    the b images may be any shard of the batch holding whole pairs (see mixup_partners)."""
    images = images_uint8_or_float
    if images.dtype == jnp.uint8:
        images = images.astype(jnp.float32) / 255.0
    else:
        images = images.astype(jnp.float32)
    keys = jax.random.split(key, 6)
    per_image = lambda i: image_keys(keys[i], rows)
    if train and config.crop == "rrc":
        images = random_resized_crop(
            per_image(0), images, size, config.crop_scale, config.crop_ratio
        )
    else:
        images = resize(images, size)
    if train and config.hflip:
        images = random_flip(per_image(1), images, axis=2)
    if train and config.vflip:
        images = random_flip(per_image(2), images, axis=1)
    if train and config.color_jitter > 0:
        images = color_jitter(per_image(3), images, config.color_jitter)
    mean = jnp.asarray(config.mean, jnp.float32)
    std = jnp.asarray(config.std, jnp.float32)
    images = (images - mean) / std
    if train and config.random_erasing > 0:
        images = random_erasing(per_image(4), images, config.random_erasing)
    targets = one_hot_targets(labels, num_classes, config.label_smoothing if train else 0.0)
    if train:
        images, targets = mixup_cutmix(keys[5], images, targets, config.mixup, config.cutmix)
    return images, targets
