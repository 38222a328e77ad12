"""Small data sources with the trainer's two interfaces, used by the training tests.

`BlobImages` is on-device (pure, jittable `render` and `indices_for_step`), like
synth_jax.fractals.FractalDataset; `NumpyBatches` is host-fed (an iterator of numpy batches with
get_state/set_state), like the real-data pipeline. Both are learnable in a few steps: class k is
a bright square at a class-specific place, plus noise.
"""

import jax
import jax.numpy as jnp
import numpy as np


class BlobImages:
    """num_images images of num_classes classes; image i has label i % num_classes."""

    channels = 3

    def __init__(self, num_classes=4, num_images=64, image_size=16):
        self.num_classes, self.num_images, self.image_size = num_classes, num_images, image_size

    def render(self, seed, indices):
        size, c = self.image_size, self.num_classes
        labels = (indices % c).astype(jnp.int32)

        def one(index, label):
            key = jax.random.fold_in(jax.random.key(seed), index)
            noise = jax.random.uniform(key, (size, size, 3)) * 0.3
            cell = size // 4
            row, col = (label // 4) % 4, label % 4
            ys, xs = jnp.arange(size)[:, None], jnp.arange(size)[None, :]
            blob = (ys // cell == row) & (xs // cell == col)
            colour = jnp.stack([label % 2, (label // 2) % 2, 1 - label % 2]).astype(jnp.float32)
            image = noise + blob[..., None] * (0.4 + 0.3 * colour)
            return (jnp.clip(image, 0, 1) * 255).astype(jnp.uint8)

        return jax.vmap(one)(indices, labels), labels

    def indices_for_step(self, seed, step, batch_size):
        """Each epoch visits every image once, in an order that an affine map shuffles."""
        n = self.num_images
        pos = step * batch_size + jnp.arange(batch_size)
        epoch = pos // n
        shift = jax.random.randint(jax.random.fold_in(jax.random.key(seed), 7), (), 0, n)
        return ((pos % n) * 5 + shift + epoch * 3).astype(jnp.int32) % n


class NumpyBatches:
    """Host-fed: yields {"image": uint8[b,H,W,3], "label": int32[b]}; resumable via its state."""

    def __init__(self, batch_size, num_classes=4, image_size=16, seed=0, num_images=64):
        self.batch_size, self.seed = batch_size, seed
        self.num_classes, self.image_size, self.num_images = num_classes, image_size, num_images
        self.position = 0
        images, labels = BlobImages(num_classes, num_images, image_size).render(
            seed, jnp.arange(num_images)
        )
        self.images, self.labels = np.asarray(images), np.asarray(labels)

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.position])
        idx = rng.integers(0, self.num_images, self.batch_size)
        self.position += 1
        return {"image": self.images[idx], "label": self.labels[idx]}

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = int(state["position"])


def test_blob_images_are_pure_and_cover_an_epoch():
    ds = BlobImages(num_classes=4, num_images=16, image_size=16)
    seen = np.concatenate([np.asarray(ds.indices_for_step(0, s, 4)) for s in range(4)])
    assert sorted(seen.tolist()) == list(range(16))
    a, la = jax.jit(ds.render)(0, jnp.arange(4))
    b, lb = ds.render(0, jnp.arange(4))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.dtype == jnp.uint8 and a.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(np.asarray(la), [0, 1, 2, 3])


def test_numpy_batches_resume_from_state():
    it = NumpyBatches(8)
    next(it)
    state = it.get_state()
    want = next(it)
    it2 = NumpyBatches(8)
    it2.set_state(state)
    np.testing.assert_array_equal(next(it2)["image"], want["image"])
