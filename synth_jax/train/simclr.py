"""SimCLR (Chen et al., 2020): image-image contrastive pre-training, as an objective of the trainer.

Views: two augmentations of every image, made on the device that holds it (the step calls
`views` per shard, synth_jax.train.objective): a random resized crop, a horizontal flip, colour
jitter (brightness, contrast, saturation, hue) with probability `jitter_prob`, grayscale with
`grayscale_prob`, Gaussian blur and solarisation with a probability per view (the asymmetric
recipe of BYOL and MoCo v3: blur (1.0, 0.1), solarise (0.0, 0.2)). The images arrive as the
trainer's augmentation left them (normalised with augment.mean/std; set augment.crop="resize"
and nothing else there) and leave normalised the same way, as float32[B, 2, S, S, 3]: the two
views of a row stay on its device, and the model sees them as 2B images by a reshape that moves
nothing.

Loss: NT-Xent with temperature T on the projection head's outputs of the model's pre-head
features: for each of the 2B embeddings, cross-entropy of its positive (the other view of its
image) against the other 2B - 2 embeddings of the whole global batch. The similarity matrix is
computed on the global embedding array, so under the sharded step XLA gathers embeddings
(2B x proj_dim floats) and never an image. With optim.accum_steps = A the negatives are those of
the micro-batch. The labels of the data are not used. Logged: `contrastive_accuracy`, the
fraction of embeddings whose nearest other embedding is their positive.

The projection head (Linear, ReLU, Linear: proj_hidden, proj_dim) is the objective's own
parameters, saved under the train state's `objective/projector`; fine-tuning and export-model
take the model (the backbone and its unused classifier) only.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from synth_jax.config import check
from synth_jax.errors import UsageError
from synth_jax.train import augment as augment_lib
from synth_jax.train.objective import Objective

DEFAULTS = dict(
    temperature=0.1,
    proj_hidden=2048,
    proj_dim=128,
    crop_scale=(0.08, 1.0),
    color_jitter=0.5,  # s of SimCLR: brightness, contrast, saturation 0.8 s, hue 0.2 s
    jitter_prob=0.8,
    grayscale_prob=0.2,
    blur_prob=(1.0, 0.1),  # per view
    solarize_prob=(0.0, 0.2),  # per view
)


def validate(config, model_config) -> None:
    del model_config  # any model with `features`
    prefix = "objective."
    check(config, "temperature", lambda v: v > 0, "a positive number", prefix)
    for key in ("proj_hidden", "proj_dim"):
        check(config, key, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1", prefix)
    check(
        config,
        "crop_scale",
        lambda v: 0 < v[0] <= v[1] <= 1,
        "(lo, hi) with 0 < lo <= hi <= 1",
        prefix,
    )
    check(config, "color_jitter", lambda v: 0 <= v <= 2, "a strength in [0, 2]", prefix)
    for key in ("jitter_prob", "grayscale_prob"):
        check(config, key, lambda v: 0 <= v <= 1, "a probability in [0, 1]", prefix)
    for key in ("blur_prob", "solarize_prob"):
        check(
            config,
            key,
            lambda v: len(v) == 2 and all(0 <= p <= 1 for p in v),
            "two probabilities in [0, 1], one per view",
            prefix,
        )


# -- the loss ------------------------------------------------------------------------------------
def nt_xent(z, temperature: float):
    """NT-Xent of embeddings z float[B, 2, D] (row b: the two views of image b) -> (mean loss over
    the 2B embeddings, number of embeddings whose most similar other one is their positive)."""
    b, _, d = z.shape
    z = z.astype(jnp.float32).reshape(2 * b, d)
    z = z / jnp.sqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-24))
    sim = (z @ z.T) / temperature
    index = jnp.arange(2 * b)
    sim = jnp.where(index[:, None] == index[None, :], -jnp.inf, sim)
    positive = index ^ 1  # the other view of the same image
    pos_logit = jnp.take_along_axis(sim, positive[:, None], axis=1)[:, 0]
    loss = jnp.mean(jax.nn.logsumexp(sim, axis=1) - pos_logit)
    correct = jnp.sum((jnp.argmax(sim, axis=1) == positive).astype(jnp.float32))
    return loss, correct


def projector_init(key, width: int, hidden: int, out: int) -> dict:
    """The projection head's parameters: Linear(width, hidden), ReLU, Linear(hidden, out)."""
    k1, k2 = jax.random.split(key)

    def dense(k, din, dout):
        bound = math.sqrt(6.0 / (din + dout))  # xavier uniform
        kernel = jax.random.uniform(k, (din, dout), jnp.float32, -bound, bound)
        return {"kernel": kernel, "bias": jnp.zeros((dout,), jnp.float32)}

    return {"dense1": dense(k1, width, hidden), "dense2": dense(k2, hidden, out)}


def project(params: dict, features):
    h = features @ params["dense1"]["kernel"] + params["dense1"]["bias"]
    h = jax.nn.relu(h)
    return h @ params["dense2"]["kernel"] + params["dense2"]["bias"]


def _features(model, images, train, rng):
    return model.features(images, train=train, rng=rng)


# -- the views -----------------------------------------------------------------------------------
GRAY = (0.299, 0.587, 0.114)


def _gray(images):
    return (images @ jnp.asarray(GRAY, images.dtype))[..., None]


def _hue_rotate(images, angle):
    """Rotates the hue of RGB images [B,H,W,3] by `angle` [B] radians (in the YIQ plane)."""
    to_yiq = jnp.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    to_rgb = jnp.linalg.inv(to_yiq)
    c, s = jnp.cos(angle), jnp.sin(angle)
    one, zero = jnp.ones_like(c), jnp.zeros_like(c)
    rot = jnp.stack(
        [
            jnp.stack([one, zero, zero], -1),
            jnp.stack([zero, c, -s], -1),
            jnp.stack([zero, s, c], -1),
        ],
        -2,
    )  # [B, 3, 3]
    m = jnp.einsum("ij,bjk,kl->bil", to_rgb, rot, to_yiq)
    return jnp.einsum("bhwc,bdc->bhwd", images, m)


def color_jitter(keys, images, strength: float, prob: float):
    """SimCLR's colour distortion, applied to each image with probability `prob`."""
    split = jax.vmap(lambda k: jax.random.split(k, 2))(keys)
    s = strength
    lo = jnp.array([1 - 0.8 * s, 1 - 0.8 * s, 1 - 0.8 * s, -0.2 * s])
    hi = jnp.array([1 + 0.8 * s, 1 + 0.8 * s, 1 + 0.8 * s, 0.2 * s])
    u = jax.vmap(lambda k: jax.random.uniform(k, (4,), minval=lo, maxval=hi))(split[:, 0])
    apply = jax.vmap(lambda k: jax.random.bernoulli(k, prob))(split[:, 1])
    f = lambda i: u[:, i][:, None, None, None]
    out = images * f(0)
    mean = _gray(out).mean(axis=(1, 2), keepdims=True)
    out = jnp.clip((out - mean) * f(1) + mean, 0, 1)
    gray = _gray(out)
    out = jnp.clip((out - gray) * f(2) + gray, 0, 1)
    out = jnp.clip(_hue_rotate(out, u[:, 3] * 2 * jnp.pi), 0, 1)
    return jnp.where(apply[:, None, None, None], out, images)


def random_grayscale(keys, images, prob: float):
    apply = jax.vmap(lambda k: jax.random.bernoulli(k, prob))(keys)
    gray = jnp.broadcast_to(_gray(images), images.shape)
    return jnp.where(apply[:, None, None, None], gray, images)


def gaussian_blur(keys, images, prob: float):
    """Blurs each image with probability `prob`, sigma ~ U(0.1, 2.0) x size / 224 pixels (the
    SimCLR recipe's range at 224 px, scaled to the image), a separable kernel of +-3 sigma_max."""
    _, size, _, _ = images.shape
    scale = size / 224.0
    radius = max(1, math.ceil(3 * 2.0 * scale))
    split = jax.vmap(lambda k: jax.random.split(k, 2))(keys)
    sigma = jax.vmap(lambda k: jax.random.uniform(k, minval=0.1, maxval=2.0))(split[:, 0]) * scale
    apply = jax.vmap(lambda k: jax.random.bernoulli(k, prob))(split[:, 1])
    offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    w = w / w.sum(axis=1, keepdims=True)  # [B, K]
    pad = ((0, 0), (radius, radius), (radius, radius), (0, 0))
    padded = jnp.pad(images, pad, mode="reflect")
    k = 2 * radius + 1
    rows = sum(w[:, i, None, None, None] * padded[:, i : i + size] for i in range(k))
    out = sum(w[:, i, None, None, None] * rows[:, :, i : i + size] for i in range(k))
    return jnp.where(apply[:, None, None, None], out, images)


def random_solarize(keys, images, prob: float):
    apply = jax.vmap(lambda k: jax.random.bernoulli(k, prob))(keys)
    return jnp.where(
        apply[:, None, None, None], jnp.where(images < 0.5, images, 1 - images), images
    )


def one_view(key, images, rows, config, view: int):
    """One augmentation of every image (float[b, S, S, 3] in [0, 1]); each image's randomness
    from (key, its row)."""
    size = images.shape[1]
    keys = jax.random.split(key, 6)
    per_image = lambda i: augment_lib.image_keys(keys[i], rows)
    x = augment_lib.random_resized_crop(per_image(0), images, size, tuple(config.crop_scale))
    x = augment_lib.random_flip(per_image(1), x, axis=2)
    if config.color_jitter > 0 and config.jitter_prob > 0:
        x = color_jitter(per_image(2), x, config.color_jitter, config.jitter_prob)
    if config.grayscale_prob > 0:
        x = random_grayscale(per_image(3), x, config.grayscale_prob)
    if config.blur_prob[view] > 0:
        x = gaussian_blur(per_image(4), x, config.blur_prob[view])
    if config.solarize_prob[view] > 0:
        x = random_solarize(per_image(5), x, config.solarize_prob[view])
    return x


def build(config, *, model_config, feature_dim: int, image_size: int, augment_config) -> Objective:
    del model_config, image_size
    mean = jnp.asarray(augment_config.mean, jnp.float32)
    std = jnp.asarray(augment_config.std, jnp.float32)
    if feature_dim is None:
        raise UsageError("objective.type='simclr': the model has no pre-head features")

    def views(images, targets, labels, key, rows):
        del targets, labels  # the data's labels are not used
        x = jnp.clip(images * std + mean, 0.0, 1.0)
        pair = [one_view(jax.random.fold_in(key, v), x, rows, config, v) for v in (0, 1)]
        return {"images": (jnp.stack(pair, axis=1) - mean) / std}

    def loss(forward, params, model_state, views, key):
        images = views["images"]
        b = images.shape[0]
        flat = images.reshape(2 * b, *images.shape[2:])  # rows 2b, 2b+1: the views of image b
        features, model_state = forward(params["model"], model_state, flat, key, call=_features)
        z = project(params["objective"]["projector"], features)
        value, correct = nt_xent(z.reshape(b, 2, -1), float(config.temperature))
        return value, (model_state, {"contrastive_accuracy": correct / 2})

    def init(key):
        return {
            "projector": projector_init(
                key, feature_dim, int(config.proj_hidden), int(config.proj_dim)
            )
        }

    return Objective(views=views, loss=loss, init=init, name="simclr", forward_images=2.0)
