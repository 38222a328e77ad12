"""MAE (He et al., 2022): masked-autoencoder pre-training of a ViT, as an objective of the trainer.

Views: the images and a random mask per image: a fraction `mask_ratio` of its patches is hidden,
the rest (K = round(T (1 - mask_ratio)) of T patches) is what the encoder sees. The mask of the
image in row r of the global batch at step t is a pure function of (seed, t, r) (the step's
views key folded with the row, synth_jax.train.objective), so it is the same on any number of
devices and on a resumed run.

Loss: the ViT's encoder runs on the visible patches only (patch embedding and position
embedding of all patches, then the K visible tokens through the blocks and the final norm); a
light decoder (its own parameters, saved under the train state's `objective/decoder`) embeds
them to `decoder_width`, puts a learned mask token at every hidden position, adds a fixed 2-D
sine-cosine position embedding, runs `decoder_depth` transformer blocks and predicts every
patch's pixels. The loss is the mean squared error on the hidden patches of the normalised
pixels (each target patch minus its mean, over its standard deviation: MAE's `norm_pix_loss`).
Fine-tuning and export-model take the encoder (the model's arrays; its classifier is unused).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from synth_jax import models
from synth_jax.config import check
from synth_jax.errors import UsageError
from synth_jax.models import vit
from synth_jax.train import augment as augment_lib
from synth_jax.train.objective import Objective

DEFAULTS = dict(
    mask_ratio=0.75,
    decoder_width=128,
    decoder_depth=2,
    decoder_heads=4,
)


def validate(config, model_config) -> None:
    prefix = "objective."
    if models.model_module(model_config.get("name", "")) is not vit:
        raise UsageError(
            f"config key 'objective.type'='mae': masked-autoencoder pre-training needs a ViT, "
            f"not model.name={model_config.get('name')!r}"
        )
    check(config, "mask_ratio", lambda v: 0 < v < 1, "a fraction in (0, 1)", prefix)
    for key in ("decoder_width", "decoder_depth", "decoder_heads"):
        check(config, key, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1", prefix)
    check(
        config,
        "decoder_width",
        lambda v: v % 4 == 0 and v % config.decoder_heads == 0,
        "a multiple of 4 and of objective.decoder_heads",
        prefix,
    )


def num_visible(num_patches: int, mask_ratio: float) -> int:
    return max(1, int(round(num_patches * (1.0 - mask_ratio))))


def random_mask(key, rows, num_patches: int, mask_ratio: float):
    """(keep int32[B, K]: the visible patches of each image, mask float32[B, T]: 1 where hidden).
    Image b's mask is a function of (key, rows[b]) only."""
    keys = augment_lib.image_keys(key, rows)
    noise = jax.vmap(lambda k: jax.random.uniform(k, (num_patches,)))(keys)
    k = num_visible(num_patches, mask_ratio)
    keep = jnp.argsort(noise, axis=1)[:, :k].astype(jnp.int32)
    mask = jnp.ones(noise.shape, jnp.float32)
    mask = jax.vmap(lambda m, i: m.at[i].set(0.0))(mask, keep)
    return keep, mask


def patchify(images, patch: int):
    """float[B, H, W, C] -> float[B, T, p*p*C], patches in the ViT's (row-major) order."""
    b, h, w, c = images.shape
    x = images.reshape(b, h // patch, patch, w // patch, patch, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), -1)


def reconstruction_loss(pred, images, mask, patch: int):
    """MAE's loss: mean over hidden patches (mask 1) of the squared error between pred
    float[B, T, p*p*C] and the per-patch normalised pixels of images float[B, H, W, C]."""
    target = patchify(images.astype(jnp.float32), patch)
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, keepdims=True)
    target = (target - mean) / jnp.sqrt(var + 1e-6)
    per_patch = jnp.mean((pred.astype(jnp.float32) - target) ** 2, axis=-1)
    return jnp.sum(per_patch * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def encode_visible(model: vit.ViT, inputs, train: bool, rng):
    """The ViT's encoder on the visible patches: inputs (images float[B,H,W,3], keep int[B, K])
    -> float32[B, K, width] (the class token, when the model pools by one, is dropped after the
    blocks)."""
    images, keep = inputs
    keys = jax.random.split(rng, len(model.blocks) + 1) if rng is not None else None
    x = model.embed(images) + model.posemb[...].astype(model.dtype)
    x = jnp.take_along_axis(x, keep[:, :, None], axis=1)
    b, _, d = x.shape
    if model.pool == "cls":
        cls = jnp.broadcast_to(model.cls[...].astype(model.dtype), (b, 1, d))
        x = jnp.concatenate([cls, x], 1)
    x = model.dropout(x, deterministic=not train, rngs=None if keys is None else keys[-1])
    x = model.run_blocks(x, train, None if keys is None else keys[:-1])
    x = model.norm(x)
    if model.pool == "cls":
        x = x[:, 1:]
    return x.astype(jnp.float32)


class Decoder(nnx.Module):
    """MAE's light decoder: visible tokens [B, K, in_width] and their positions [B, K] -> pixel
    predictions float32[B, T, patch * patch * 3] of all T patches."""

    def __init__(self, in_width, width, depth, heads, patch, grid, *, rngs):
        self.embed = vit._dense(in_width, width, ("embed", "embed"), jnp.float32, rngs)
        init = nnx.initializers.normal(0.02)
        self.mask_token = nnx.Param(init(rngs.params(), (1, 1, width)))
        self.blocks = nnx.List(
            [
                vit.EncoderBlock(width, 4 * width, heads, 0.0, jnp.float32, rngs)
                for _ in range(depth)
            ]
        )
        self.norm = vit._layer_norm(width, jnp.float32, rngs)
        self.pred = vit._dense(width, patch * patch * 3, ("embed", None), jnp.float32, rngs)
        self.grid, self.width = grid, width

    def __call__(self, latent, keep):
        x = self.embed(latent)
        b, t = x.shape[0], self.grid * self.grid
        full = jnp.broadcast_to(self.mask_token[...], (b, t, self.width))
        full = jax.vmap(lambda f, i, v: f.at[i].set(v))(full, keep, x)
        full = full + jnp.asarray(vit.sincos_posemb_2d(self.grid, self.grid, self.width))
        for block in self.blocks:
            full = block(full, False, None)
        return self.pred(self.norm(full))


def _decoder_parts(config, in_width: int, patch: int, grid: int):
    """(init(key) -> params, bind(params) -> Decoder)."""

    def fresh(key):
        return Decoder(
            in_width,
            int(config.decoder_width),
            int(config.decoder_depth),
            int(config.decoder_heads),
            patch,
            grid,
            rngs=nnx.Rngs(params=key),
        )

    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: fresh(jax.random.key(0))), nnx.Param)

    def init(key):
        return nnx.to_pure_dict(nnx.state(fresh(key), nnx.Param))

    def bind(params):
        state = jax.tree.map(lambda x: x, abstract)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)

    return init, bind


def build(config, *, model_config, feature_dim: int, image_size: int, augment_config) -> Objective:
    del augment_config  # the loss normalises each patch itself
    _, patch = vit.parse_name(model_config.name)
    grid = image_size // patch
    num_patches, ratio = grid * grid, float(config.mask_ratio)
    init_decoder, bind = _decoder_parts(config, feature_dim, patch, grid)

    def views(images, targets, labels, key, rows):
        del targets, labels
        keep, mask = random_mask(key, rows, num_patches, ratio)
        return {"images": images, "keep": keep, "mask": mask}

    def loss(forward, params, model_state, views, key):
        inputs = (views["images"], views["keep"])
        latent, model_state = forward(
            params["model"], model_state, inputs, key, call=encode_visible
        )
        pred = bind(params["objective"]["decoder"])(latent, views["keep"])
        value = reconstruction_loss(pred, views["images"], views["mask"], patch)
        return value, (model_state, {})

    visible = num_visible(num_patches, ratio) / num_patches
    return Objective(
        views=views,
        loss=loss,
        init=lambda key: {"decoder": init_decoder(key)},
        name="mae",
        forward_images=visible,
    )
