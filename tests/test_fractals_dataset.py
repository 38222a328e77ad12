"""FractalDataset: pure (seed, index) -> image, the same on 1 or 4 devices; epochs visit every
image once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from synth_jax.fractals import FractalDataset, data_config
from synth_jax.fractals.dataset import shuffle_position

TINY = dict(image_size=32, points=4096, chains=256, burn_in=16, pad=2)


@pytest.fixture(scope="module")
def fractaldb():
    return FractalDataset(
        data_config(
            "fractaldb",
            num_classes=3,
            instances=2,
            search_points=8192,
            search_size=64,
            fill_threshold=0.1,
            **TINY,
        )
    )


@pytest.fixture(scope="module")
def sigma_ds():
    # Plain gray images: the sharding tests compile this twice; colour is tested elsewhere.
    return FractalDataset(
        data_config(
            "sigma", num_classes=5, images_per_category=3, colour="gray", background="black", **TINY
        )
    )


def test_fractaldb_index_layout(fractaldb):
    assert fractaldb.images_per_category == 25 * 2 * 4
    assert fractaldb.num_images == 3 * 200
    category, variant, instance, flip = map(np.asarray, fractaldb.decompose(np.arange(600)))
    assert np.bincount(category).tolist() == [200, 200, 200]
    assert np.bincount(variant).tolist() == [24] * 25 and set(flip) == {0, 1, 2, 3}
    assert set(instance) == {0, 1}


def test_render_is_pure_and_labels_are_categories(fractaldb):
    indices = jnp.array([0, 1, 8, 199, 200, 599], jnp.int32)
    render = jax.jit(fractaldb.render)
    a, labels = render(0, indices)
    b, _ = render(0, indices)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, 32, 32, 3) and a.dtype == jnp.uint8
    assert np.asarray(labels).tolist() == [0, 0, 0, 0, 1, 2]
    # Flip codes 0 and 1 of one instance: the same image, mirrored vertically; instances 0 and 1
    # (indices 0 and 4) differ only by their per-point patches.
    np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(a[0])[::-1])
    second, _ = render(0, jnp.array([4], jnp.int32))
    assert not np.array_equal(second[0], a[0])
    near = lambda img: np.asarray(img).max(-1) > 0
    assert np.mean(near(second[0]) == near(a[0])) > 0.8
    # Another seed changes the per-point patches, not the category.
    c, _ = render(1, indices)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("axis_type", ["Explicit", "Auto"])
def test_same_images_on_one_and_four_devices(sigma_ds, axis_type):
    assert len(jax.devices()) == 4, "tests run with 4 fake CPU devices (conftest)"
    indices = sigma_ds.indices_for_step(3, 1, 8)
    one_device = jax.device_put(indices, jax.devices()[0])
    single = jax.jit(sigma_ds.render_with_info)(3, one_device)
    types = (getattr(jax.sharding.AxisType, axis_type),)
    mesh = jax.make_mesh((4,), ("data",), axis_types=types)
    batch = NamedSharding(mesh, PartitionSpec("data"))
    sharded_indices = jax.device_put(indices, batch)
    fn = jax.jit(sigma_ds.render_with_info, in_shardings=(None, batch), out_shardings=batch)
    images, labels, info = fn(3, sharded_indices)
    assert images.sharding.is_equivalent_to(batch, images.ndim)
    # Each device holds (and rendered) its own two images.
    assert {s.data.shape for s in images.addressable_shards} == {(2, 32, 32, 3)}
    np.testing.assert_array_equal(np.asarray(images), np.asarray(single[0]))
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(single[1]))
    assert not np.asarray(info["degenerate"]).any()


def test_indices_for_step_visit_each_image_once_per_epoch(sigma_ds):
    n, batch = sigma_ds.num_images, 4  # 15 images: batches straddle epoch boundaries
    steps = jax.jit(sigma_ds.indices_for_step, static_argnums=2)
    seen = np.concatenate([np.asarray(steps(7, s, batch)) for s in range(3 * n // batch + 1)])
    epochs = [seen[e * n : (e + 1) * n] for e in range(3)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(n))
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh order each epoch
    np.testing.assert_array_equal(steps(7, 2, batch), steps(7, 2, batch))
    assert not np.array_equal(steps(7, 0, 8), steps(8, 0, 8))


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 4097])
def test_shuffle_position_is_a_bijection(n):
    perm = np.asarray(shuffle_position(jnp.arange(n, dtype=jnp.uint32), jnp.uint32(12345), n))
    assert sorted(perm.tolist()) == list(range(n))


@pytest.mark.parametrize("family", ["onepfrac", "one_image"])
def test_other_families_render(family):
    extra = dict(search_points=8192, search_size=64) if family == "onepfrac" else {}
    ds = FractalDataset(data_config(family, num_classes=4, dtype="bfloat16", **TINY, **extra))
    images, labels = jax.jit(ds.render)(0, jnp.arange(4))
    assert images.dtype == jnp.bfloat16 and images.shape == (4, 32, 32, 3)
    values = np.asarray(images.astype(jnp.float32))
    assert values.min() >= 0 and values.max() <= 255 and np.all(values == np.round(values))
    assert np.asarray(labels).tolist() == [0, 1, 2, 3]
    assert len({values[i].tobytes() for i in range(4)}) == 4  # categories differ
