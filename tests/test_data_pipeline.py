"""The Grain host pipeline (epochs, exact resume, eval padding) and the on-device transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth_jax.data import importer, pipeline, preprocess


@pytest.fixture(scope="module")
def npz_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)
    # Each image's first pixel is its index, so batches can be traced back to examples.
    n = 48
    images = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)
    labels = np.arange(n) % 4
    np.savez(
        root / "a.npz",
        train_images=images,
        train_labels=labels,
        test_images=images[:10],
        test_labels=labels[:10],
    )
    data_dir = str(root / "tfds")
    importer.import_dataset("indexed", str(root / "a.npz"), data_dir)
    config = pipeline.tfds_config(name="indexed", data_dir=data_dir, num_threads=2, rgb=False)
    return config, images, labels


def _ids(batch):
    return batch["image"][:, 0, 0, 0].astype(int).tolist()


def test_each_epoch_visits_every_example_once_in_a_new_order(npz_dataset):
    config, images, labels = npz_dataset
    source = pipeline.make_source(config, "train", 16, seed=3, train=True)
    assert source.num_examples == 48 and source.image_shape == (8, 8, 1)
    epochs = [sum((_ids(next(source)) for _ in range(3)), []) for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(48))
    assert epochs[0] != epochs[1]
    batch = next(pipeline.make_source(config, "train", 16, seed=3, train=True))
    assert _ids(batch) == epochs[0][:16]  # same seed, same order
    np.testing.assert_array_equal(batch["label"], labels[_ids(batch)])
    assert batch["label"].dtype == np.int32 and batch["image"].dtype == np.uint8


def test_restored_state_gives_the_same_batches(npz_dataset):
    config, _, _ = npz_dataset
    source = pipeline.make_source(config, "train", 8, seed=5, train=True)
    for _ in range(4):
        next(source)
    state = source.get_state()
    ahead = [_ids(next(source)) for _ in range(5)]
    fresh = pipeline.make_source(config, "train", 8, seed=5, train=True)
    fresh.set_state(state)
    assert [_ids(next(fresh)) for _ in range(5)] == ahead


def test_subset_and_eval_padding(npz_dataset):
    config, _, _ = npz_dataset
    subset = np.array([1, 5, 7, 30, 31])
    train = pipeline.make_source(config, "train", 5, seed=0, train=True, indices=subset)
    assert sorted(_ids(next(train))) == subset.tolist()
    evaluation = pipeline.make_source(config, "test", 4, seed=0, train=False)
    batches = list(evaluation)
    assert [b["mask"].sum() for b in batches] == [4, 4, 2]
    assert all(b["image"].shape == (4, 8, 8, 1) for b in batches)
    assert sum((_ids(b)[: b["mask"].sum()] for b in batches), []) == list(range(10))
    evaluation.reset()
    assert len(list(evaluation)) == 3


def test_grayscale_becomes_rgb_and_eval_transform_is_deterministic():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1)), jnp.uint8)
    rgb = preprocess.to_rgb(images)
    assert rgb.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(rgb[..., 2], images[..., 0])
    out = jax.jit(preprocess.eval_images, static_argnums=1)(images, 16, (0.5,) * 3, (0.5,) * 3)
    assert out.shape == (2, 16, 16, 3)
    same = preprocess.eval_images(images, 8, (0.5,) * 3, (0.5,) * 3)
    np.testing.assert_allclose(same[..., 0], images[..., 0] / 127.5 - 1.0, atol=1e-6)


def test_worker_processes_give_the_same_batches_and_resume(npz_dataset):
    config, _, _ = npz_dataset
    threads = pipeline.make_source(config, "train", 8, seed=2, train=True)
    expected = [_ids(next(threads)) for _ in range(5)]
    config = config.copy_and_resolve_references()
    config.num_workers = 2
    workers = pipeline.make_source(config, "train", 8, seed=2, train=True)
    try:
        got = [_ids(next(workers)) for _ in range(3)]
        state = workers.get_state()
        got += [_ids(next(workers)) for _ in range(2)]
        assert got == expected
        workers.set_state(state)
        assert [_ids(next(workers)) for _ in range(2)] == expected[3:]
    finally:
        workers.close()
