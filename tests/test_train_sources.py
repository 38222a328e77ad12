"""Small data sources with the trainer's two interfaces, used by the training tests.

`BlobImages` is on-device (pure, jittable `render` and `indices_for_step`), like
synth_jax.fractals.FractalDataset; `NumpyBatches` is host-fed (an iterator of numpy batches with
get_state/set_state), like the real-data pipeline. Both are learnable in a few steps: class k is
a bright square at a class-specific place, plus noise.
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from conftest import TEST_XLA_FLAGS, XLA_CACHE  # child runs compile as the tests do


def child_env(devices: int) -> dict:
    """Environment of a child run on `devices` fake CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {TEST_XLA_FLAGS}"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = XLA_CACHE
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def tiny_config(total_steps=8, data=4, fsdp=1, **overrides):
    """A seconds-long run with the random parts whose sharding matters (dropout, drop-path,
    per-image crops and flips, batch-level mixup), clipping and warmup. The other augmentations
    have their own tests (test_train_augment.py); leaving them out keeps compilation short."""
    from synth_jax.models import model_config
    from synth_jax.train import trainer

    config = trainer.train_config(batch_size=16, total_steps=total_steps, log_every_steps=1)
    config.image_size = 16
    config.model = model_config("mu/4", dropout=0.1, drop_path=0.1)
    # SGD: its update is linear in the gradient, so runs on different meshes agree to rounding;
    # Adam's normalised first steps turn rounding of near-zero gradients into lr-sized changes.
    config.optim.update(dict(name="sgd", lr=0.1, weight_decay=1e-4, warmup_steps=2))
    config.optim.grad_clip_norm = 1.0
    config.augment.update(
        dict(crop="rrc", crop_scale=(0.5, 1.0), hflip=True, mixup=0.8, label_smoothing=0.1)
    )
    config.mesh.data, config.mesh.fsdp = data, fsdp
    config.checkpoint.every_steps = 2
    config.checkpoint.keep = 3
    config.update(overrides)
    return config


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


def child_main(argv):
    """`python tests/test_train_sources.py WORKDIR STEPS [options]`: one training run in a fresh
    process (its own device count, or one process of a multi-process run)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("steps", type=int)
    parser.add_argument("--data", type=int, default=-1)
    parser.add_argument("--fsdp", type=int, default=1)
    parser.add_argument("--host", action="store_true", help="host-fed NumpyBatches")
    parser.add_argument("--constant-lr", action="store_true")
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args = parser.parse_args(argv)
    from synth_jax.train import mesh, trainer

    mesh.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    config = tiny_config(args.steps, data=args.data, fsdp=args.fsdp)
    if args.constant_lr:
        config.optim.schedule = "constant"
    if args.host:
        source = NumpyBatches(config.batch_size // jax.process_count(), seed=jax.process_index())
    else:
        source = BlobImages()
    summary, _ = trainer.train(config, args.workdir, source, num_classes=4)
    return 143 if summary["status"] == "preempted" else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(child_main(sys.argv[1:]))
