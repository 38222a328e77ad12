"""Each device renders and augments only its own rows: the batch of a training step compiles to a
program without a single collective on every mesh, and it is the same batch as on one device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from synth_jax.aot import hlo
from synth_jax.fractals import FractalDataset, data_config
from synth_jax.fractals.families.mixture import mixture_config
from synth_jax.train import augment, local_batch
from synth_jax.train.mesh import BATCH_AXES, MESH_AXES

SIZE, BATCH, CLASSES = 32, 8, 5
MESHES = {"data": (4, 1, 1), "fsdp": (1, 4, 1), "data x model": (2, 1, 2)}
AUGMENT = augment.augment_config(
    crop="rrc", hflip=True, color_jitter=0.4, random_erasing=0.5, mixup=0.8, cutmix=1.0
)


@pytest.fixture(scope="module")
def dataset():
    return FractalDataset(
        data_config(
            "sigma",
            num_classes=CLASSES,
            images_per_category=3,
            colour="gray",
            background="black",
            image_size=SIZE,
            points=4096,
            chains=256,
            burn_in=16,
            pad=2,
        )
    )


def auto_mesh(shape, devices=None):
    axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)


def compiled_batch(mesh, source, host_batch=None, num_classes=CLASSES, render_chunk=0):
    """The step-3 batch, compiled for `mesh` and run: (compiled program, outputs)."""
    make = local_batch.batch_fn(
        mesh,
        source,
        seed=3,
        global_batch=BATCH,
        num_classes=num_classes,
        image_size=24,
        augment_config=AUGMENT,
        render_chunk=render_chunk,
    )
    rows = NamedSharding(mesh, P(BATCH_AXES))
    fn = jax.jit(make, out_shardings=(rows, rows, rows))
    args = (jnp.int32(3), jax.random.key(7))
    if host_batch is not None:
        args += ({k: jax.device_put(v, rows) for k, v in host_batch.items()},)
    compiled = fn.lower(*args).compile()
    return compiled, compiled(*args)


@pytest.fixture(scope="module")
def one_device(dataset):
    return compiled_batch(auto_mesh((1, 1, 1), jax.devices()[:1]), dataset)[1]


@pytest.mark.parametrize("mesh_name", MESHES)
def test_rendered_batch_has_no_collective_and_equals_one_device(dataset, one_device, mesh_name):
    assert len(jax.devices()) == 4, "tests run with 4 fake CPU devices (conftest)"
    compiled, (images, targets, labels) = compiled_batch(auto_mesh(MESHES[mesh_name]), dataset)
    assert hlo.collectives(compiled.as_text()) == []
    assert images.shape == (BATCH, 24, 24, 3) and targets.shape == (BATCH, CLASSES)
    per_device = BATCH // (MESHES[mesh_name][0] * MESHES[mesh_name][1])
    assert {s.data.shape[0] for s in images.addressable_shards} == {per_device}
    np.testing.assert_array_equal(labels, one_device[2])
    np.testing.assert_allclose(images, one_device[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, one_device[1], rtol=1e-6, atol=1e-6)


def test_host_fed_batch_has_no_collective_and_equals_one_device(dataset):
    images, labels = jax.jit(dataset.render)(3, jnp.arange(BATCH))
    host = {"image": np.asarray(images), "label": np.asarray(labels)}
    _, single = compiled_batch(auto_mesh((1, 1, 1), jax.devices()[:1]), None, host)
    compiled, out = compiled_batch(auto_mesh((2, 2, 1)), None, host)
    assert hlo.collectives(compiled.as_text()) == []
    for a, b in zip(out, single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_left_to_the_partitioner_the_renderer_all_reduces_a_batch_histogram(dataset):
    # Why the trainer renders inside shard_map: the same function under an Auto mesh, split by
    # jit alone, sums a histogram of the whole batch (B x (H*W + 1) floats) over the devices.
    mesh = auto_mesh((4, 1, 1))
    rows = NamedSharding(mesh, P(BATCH_AXES))
    fn = jax.jit(dataset.render, in_shardings=(None, rows), out_shardings=(rows, rows))
    ops = hlo.collectives(fn.lower(3, jnp.arange(BATCH)).compile().as_text())
    sizes = [int(np.prod(op.largest[1])) for op in ops if op.kind == "all-reduce"]
    assert BATCH * (SIZE * SIZE + 1) in sizes


SMALL = dict(image_size=SIZE, points=2048, chains=128, burn_in=16)
OFDB = dict(pad=2, search_points=4096, search_size=64, fill_threshold=0.05, **SMALL)
FAMILIES = {
    "multi_instance": lambda: data_config("multi_instance", num_classes=6, blur=0.0, **SMALL),
    "ofdb": lambda: data_config("ofdb", num_classes=4, **OFDB),
    "mixture": lambda: mixture_config(
        {
            "multi": data_config("multi_instance", num_classes=3, blur=0.0, **SMALL),
            "ofdb": data_config("ofdb", num_classes=2, **OFDB),
        },
        {"multi": 0.5, "ofdb": 0.5},
        period=4,
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_renders_its_own_rows(family):
    # Multi-instance composites (multi-hot labels), OFDB's painter and a mixture of both render
    # per device too: no collective, the same batch as on one device.
    source = FractalDataset(FAMILIES[family]())
    classes = source.num_classes
    _, single = compiled_batch(auto_mesh((1, 1, 1), jax.devices()[:1]), source, None, classes)
    compiled, out = compiled_batch(auto_mesh((4, 1, 1)), source, None, classes)
    assert hlo.collectives(compiled.as_text()) == []
    assert out[1].shape == (BATCH, classes)
    if family != "ofdb":
        assert out[2].shape == (BATCH, classes)  # multi-hot labels through the same path
    for a, b in zip(out, single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["sigma", "multi_instance"])
def test_rendering_in_chunks_gives_the_same_batch(dataset, one_device, family):
    # Each device renders its 4 rows 2 at a time (a loop of smaller renders, what the pod
    # configs do to compile faster): the batch is the one rendered whole on one device.
    if family == "sigma":
        source, single = dataset, one_device
    else:
        source = FractalDataset(FAMILIES[family]())
        single = compiled_batch(auto_mesh((1, 1, 1), jax.devices()[:1]), source, None, 6)[1]
    mesh = auto_mesh((2, 1, 2))
    compiled, out = compiled_batch(mesh, source, None, source.num_classes, render_chunk=2)
    whole, _ = compiled_batch(mesh, source, None, source.num_classes)
    assert hlo.collectives(compiled.as_text()) == []
    # a loop of smaller renders: fewer points held at once
    temp = lambda c: c.memory_analysis().temp_size_in_bytes
    assert temp(compiled) < 0.8 * temp(whole)
    np.testing.assert_array_equal(out[2], single[2])
    for a, b in zip(out, single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
