"""One real image: C categories of random affine perturbations of a single grayscale photograph,
warped on the device (the "Scaling Backwards" ablation that pre-trains on one real image); the
`one_image` data family (see synth_jax.fractals.family)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from synth_jax.config import check
from synth_jax.errors import UsageError
from synth_jax.fractals.engine import data_keys, render
from synth_jax.fractals.engine.ifs_images import IFSImages, ifs_table

SAMPLE_PHOTOS = ("china", "flower")  # shipped with scikit-learn


def load_photo(photo: str, size: int) -> np.ndarray:
    """A square grayscale photo float32[size, size] in [0, 1]: a scikit-learn sample ("china",
    "flower") or an image file path; centre-cropped to a square, then resized."""
    if photo in SAMPLE_PHOTOS:
        from sklearn.datasets import load_sample_image

        img = Image.fromarray(load_sample_image(f"{photo}.jpg"))
    elif os.path.isfile(photo):
        img = Image.open(photo)
    else:
        raise FileNotFoundError(f"photo {photo!r}: not one of {SAMPLE_PHOTOS} nor an image file")
    img = img.convert("L")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(img, np.float32) / 255.0


def sample_affines(rng: np.random.Generator, count: int, delta: float) -> np.ndarray:
    """Category affines float[count, 1, 7] rows (a, b, c, d, e, f, 1): the identity with each of
    the six parameters perturbed by U(-delta, delta) (translations in units of the half-width)."""
    params = np.zeros((count, 1, 7))
    params[:, 0, :6] = np.array([1, 0, 0, 1, 0, 0]) + rng.uniform(-delta, delta, (count, 6))
    params[:, 0, 6] = 1.0
    return params


def warp(photo: jax.Array, params: jax.Array) -> jax.Array:
    """Samples photo float[S, S] at the affine image of each output pixel, in coordinates centred
    on the image with unit half-width (bilinear, mirrored at the border). params: float[1, 7]
    -> float[S, S] in [0, 1]."""
    size = photo.shape[0]
    a, b, c, d, e, f = (params[0, k] for k in range(6))
    grid = (jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2) / ((size - 1) / 2)
    y, x = jnp.meshgrid(grid, grid, indexing="ij")
    sx, sy = a * x + b * y + e, c * x + d * y + f
    to_pixel = lambda u: u * ((size - 1) / 2) + (size - 1) / 2
    return jax.scipy.ndimage.map_coordinates(
        photo, [to_pixel(sy), to_pixel(sx)], order=1, mode="mirror"
    )


# -- the data family ---------------------------------------------------------------------------
DEFAULTS = dict(
    patch="none",
    photo="china",  # china | flower (scikit-learn samples) | path to an image file
    delta=0.2,  # each affine parameter of a category perturbed by U(-delta, delta)
    images_per_category=1,
)
TABLE_FREE_KEYS = ("images_per_category",)


def validate(config) -> None:
    check(config, "images_per_category", data_keys.positive_int, "a positive integer")
    check(config, "delta", lambda v: 0 <= v < 1, "a number in [0, 1)")
    photo = config.photo
    if photo not in SAMPLE_PHOTOS and not os.path.isfile(photo):
        raise UsageError(f"config key 'photo'={photo!r}: not one of {SAMPLE_PHOTOS} nor a file")


def build_table(config, rng: np.random.Generator, progress: bool) -> tuple[dict, dict]:
    return ifs_table(sample_affines(rng, config.num_classes, config.delta)), {}


class PhotoImages(IFSImages):
    """The IFS index layout with one affine map per category, drawn by warping the photo."""

    def __init__(self, config, table):
        super().__init__(table, data_keys.render_spec(config), config.images_per_category)
        self._photo = jnp.asarray(load_photo(config.photo, config.image_size))

    def draw(self, params, game_keys, image_keys, flips):
        return jax.vmap(self._draw_one)(params, image_keys, flips)

    def chaos_games(self, batch: int) -> list:
        return []  # a warped photo: no chaos game

    def _draw_one(self, params, key, flip):
        k_flip, k_compose = jax.random.split(key)
        level = warp(self._photo, params)
        if self.spec.random_flip:
            flip = jax.random.randint(k_flip, (), 0, 4)
        level = render.flip_image(level, flip)
        # A photo has no zero-valued background: render it as its own foreground.
        image = render.compose(jnp.maximum(level, 1e-6), k_compose, self.spec)
        info = {
            "degenerate": jnp.bool_(False),
            "fill": jnp.float32(1.0),
            "finite": jnp.float32(1.0),
        }
        return image, info


def renderer(config, table) -> PhotoImages:
    return PhotoImages(config, table)


def preview_overrides(num: int, image_size: int) -> dict:
    return {}
