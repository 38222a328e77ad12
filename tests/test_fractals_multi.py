"""Anderson & Farrell's multi-instance images (8-bit HSV, blur, diamond-square, resize and
compositing), OFDB's fixed class images and the mixture family, against the sequential NumPy
references in synth_jax.fractals.references.multi_instance."""

import colorsys
import copy
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth_jax import cli
from synth_jax.config import load_config
from synth_jax.errors import UsageError
from synth_jax.fractals import FractalDataset, data_config
from synth_jax.fractals.engine import counter_random, image_ops, plasma, render
from synth_jax.fractals.families import multi_instance, ofdb
from synth_jax.fractals.families.mixture import component_seed, mixture_config
from synth_jax.fractals.preview import render_images
from synth_jax.fractals.references import multi_instance as ref

SMALL = dict(image_size=32, points=2048, chains=128, burn_in=16)
OFDB_SMALL = dict(pad=2, search_points=4096, search_size=64, fill_threshold=0.05, **SMALL)


def test_hsv8_matches_opencv_semantics():
    rng = np.random.default_rng(0)
    h, s, v = rng.integers(0, 256, 200), rng.integers(0, 256, 200), rng.integers(0, 256, 200)
    ours = np.asarray(image_ops.hsv8_to_rgb(*(jnp.asarray(a, jnp.float32) for a in (h, s, v))))
    want = np.stack([ref.hsv8_to_rgb(*row) for row in zip(h, s, v)])
    assert np.abs(ours - want).max() <= 1  # float32 vs float64 at a rounding boundary
    assert np.mean(ours != want) < 0.01


def test_fractal_colouring_keeps_black_and_wraps_hue_codes():
    level = jnp.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)
    rgb = np.asarray(
        jax.vmap(lambda k: image_ops.colourise_hsv8(level, k))(
            jax.random.split(jax.random.key(0), 8)
        )
    )
    assert np.all(rgb[:, 0, 0] == 0) and np.all(rgb[:, 1:].reshape(8, -1, 3).max(-1) > 0)
    # Hue codes 180..255 wrap onto 0..75: over random shifts, hues below 76/180 of a turn are
    # about twice as frequent as the rest (per unit of hue).
    pixels = rgb.reshape(8, -1, 3)[:, 1::37].reshape(-1, 3) / 255.0
    hues = np.array([colorsys.rgb_to_hsv(*px)[0] for px in pixels])
    low = np.mean(hues < 76 / 180) / (76 / 180)
    high = np.mean(hues >= 76 / 180) / (104 / 180)
    assert 1.5 < low / high < 2.7, (low, high)


def test_blur_matches_the_reference_and_keeps_the_mean():
    image = np.random.default_rng(1).uniform(0, 255, (9, 11, 3))
    for sigma in (0.5, 0.8, 1.0):
        ours = np.asarray(image_ops.gaussian_blur3(jnp.asarray(image, jnp.float32), sigma))
        np.testing.assert_allclose(ours, ref.gaussian_blur3(image, sigma), atol=1e-3)
    # p = 0: untouched; p = 1: always blurred (sigma ~ U(0.5, 1)), rounded to integers.
    img = jnp.asarray(np.round(image), jnp.float32)
    np.testing.assert_array_equal(image_ops.random_blur(img, jax.random.key(0), 0.0), img)
    out = np.asarray(image_ops.random_blur(img, jax.random.key(0), 1.0))
    assert not np.array_equal(out, img) and np.all(out == np.round(out))


def test_diamond_square_matches_the_classic_loop():
    """Same noise, same corners: the device's level-by-level interleaving equals the in-place
    loop, wrap-around included."""
    levels, key = 5, jax.random.key(3)
    words = jax.random.bits(key, (2,), jnp.uint32)
    hashed = jax.jit(plasma.hashed_uniform, static_argnums=(1, 2))
    start = np.asarray(hashed(words, 0, (5,)), np.float64)
    d = plasma.ROUGHNESS[0] + (plasma.ROUGHNESS[1] - plasma.ROUGHNESS[0]) * start[0]
    n = 2**levels
    tables = {}
    for k in range(1, levels + 1):
        m = 2 ** (k - 1)
        uniform = lambda site, shape, k=k: hashed(words, 3 * k + site, shape)
        draw = lambda site, shape, u=uniform: 2 * np.asarray(u(site, shape)) - 1
        tables[k] = (draw(0, (m, m)), draw(1, (m + 1, m)), draw(2, (m, m + 1)))

    def noise(k, y, x):
        half = n >> k
        r, c = y // half, x // half
        centres, h_edges, v_edges = tables[k]
        if r % 2 and c % 2:
            return centres[r // 2, c // 2]
        return h_edges[r // 2, c // 2] if c % 2 else v_edges[r // 2, c // 2]

    want = ref.diamond_square(start[1:].reshape(2, 2), d, levels, noise)[:n, :n]
    got = np.asarray(jax.jit(plasma.diamond_square, static_argnums=1)(key, n))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.std() > 0.05  # noise, not a constant


@pytest.fixture(scope="module")
def multi():
    """A small multi-instance dataset and one compiled function that returns a batch of 8
    images (from indices start..start + 7) with the renderer's own draws for that batch."""
    ds = FractalDataset(
        data_config(
            "multi_instance",
            num_classes=50,
            image_size=48,
            points=2048,
            chains=128,
            burn_in=16,
            blur=0.0,
        )
    )
    r = ds.renderer

    def batch(seed, start):
        indices = start + jnp.arange(8)
        images, labels, info = ds.render_with_info(seed, indices)
        base = jax.random.fold_in(jax.random.key(seed), multi_instance.FAMILY_TAG)
        lay = jax.vmap(r.layout)(jax.vmap(lambda i: jax.random.fold_in(base, i))(indices))
        flat = lambda a: a.reshape(-1, *a.shape[2:])
        params = jnp.asarray(ds.table.params)[flat(lay["classes"])]
        objects, _ = r.draw_objects(params, flat(lay["object_keys"]), flat(lay["bits"]))
        draw = lambda k: render.background_image(k, ds.image_size, "plasma")
        backgrounds = jnp.round(jax.vmap(draw)(lay["background_key"]) * 255)
        lay = {k: v for k, v in lay.items() if "key" not in k}
        return dict(
            images=images,
            labels=labels,
            lay=lay,
            backgrounds=backgrounds,
            info=info,
            objects=objects.reshape(8, r.max_objects, *objects.shape[1:]),
        )

    return ds, jax.jit(batch)


def test_multi_instance_images_match_sequential_compositing(multi):
    """The device's objects, pasted one pixel at a time by the reference (OpenCV resize,
    non-black pixels copied in order): the device image is the same image."""
    ds, batch = multi
    out = jax.tree.map(np.asarray, batch(0, 0))
    lay, objects = out["lay"], out["objects"]
    for b in range(8):
        active = [j for j in range(ds.renderer.max_objects) if lay["active"][b, j]]
        pasted = [(objects[b, j], lay["side"][b, j], *lay["corner"][b, j]) for j in active]
        want = ref.composite(out["backgrounds"][b], pasted)
        got = out["images"][b].astype(np.float64)
        # Bilinear weights of 1/4 and 3/4 make x.5 values: float32 may round them the other
        # way (off by one); where that turns a 0 into a 1, a pixel's transparency flips too.
        off = np.abs(got - want).max(-1)
        assert np.mean(off > 0) < 0.03 and np.mean(off > 1) < 0.002, b
        classes = sorted({int(lay["classes"][b, j]) for j in active})
        assert np.flatnonzero(out["labels"][b]).tolist() == classes


def test_multi_instance_draws_follow_the_published_ranges(multi):
    ds, batch = multi
    outs = [jax.tree.map(np.asarray, batch(1, 8 * k)) for k in range(16)]
    labels = np.concatenate([o["labels"] for o in outs])
    assert labels.shape == (128, 50) and labels.dtype == np.int32
    positives = labels.sum(1)
    # 1..5 objects (uniform: mean 3, sd 1.41; 128 images: se 0.125), classes rarely repeat.
    assert positives.min() >= 1 and positives.max() <= 5
    assert abs(positives.mean() - 3.0) < 0.5
    assert not np.concatenate([o["info"]["degenerate"] for o in outs]).any()
    assert 0.02 < np.mean([o["info"]["fill"] for o in outs]) < 0.6
    side = np.concatenate([o["lay"]["side"] for o in outs])
    corner = np.concatenate([o["lay"]["corner"] for o in outs])
    assert side.min() >= int(0.15 * 48) and side.max() <= int(0.6 * 48)
    assert side.max() - side.min() > 0.3 * 48 * 0.8  # spread over the range
    assert np.all(corner >= -(side // 2)[..., None]) and np.all(corner < 48 - side[..., None] // 2)


def test_multi_instance_bad_keys_are_named():
    for key, value in (
        ("max_objects", 0),
        ("object_scale", (0.5, 0.2)),
        ("blur", 2.0),
        ("flip", "index"),
    ):
        with pytest.raises(UsageError, match=key):
            FractalDataset(data_config("multi_instance", num_classes=2, **{key: value}))


def test_sigma_blur_option():
    cfg = data_config("sigma", num_classes=2, colour="gray", background="black", **SMALL)
    plain = FractalDataset(cfg)
    cfg.blur = 1.0
    blurred = FractalDataset(cfg)
    a, _ = jax.jit(plain.render)(0, jnp.arange(4))
    b, _ = jax.jit(blurred.render)(0, jnp.arange(4))
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    tv = lambda x: np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean()
    assert tv(b) < 0.8 * tv(a)  # smoother
    np.testing.assert_allclose(a.mean(), b.mean(), rtol=0.05)  # blur keeps the mean


def test_ofdb_painter_matches_drawing_every_block():
    rng = np.random.default_rng(0)
    size, count = 12, 400
    pixels = rng.integers(0, size * size + 1, count).astype(np.int32)  # some dropped
    words = jnp.asarray([7, 11], jnp.uint32)
    got = np.asarray(ofdb.last_writer_blocks(jnp.asarray(pixels), words, size))
    mix = counter_random.mix32
    t = jnp.arange(count, dtype=jnp.uint32)
    masks = np.asarray(1 + mix(mix(t ^ words[0]) ^ words[1]) % jnp.uint32(511))
    np.testing.assert_array_equal(got, ref.paint_blocks(pixels, masks, size))
    # Zero cells erase: about half the covered pixels stay on.
    assert 0.3 < got.mean() < 0.7


@pytest.fixture(scope="module")
def one_instance():
    return FractalDataset(data_config("ofdb", num_classes=6, **OFDB_SMALL))


def test_ofdb_class_image_never_changes(one_instance):
    """Every image of class c, whichever step, batch position or batch size, is the same."""
    ds = one_instance
    assert ds.num_images == 6 and ds.images_per_category == 1
    render_fn = jax.jit(ds.render)
    reference_images = np.asarray(render_fn(0, jnp.arange(6))[0])
    assert len({im.tobytes() for im in reference_images}) == 6  # classes differ
    steps = jax.jit(lambda s: ds.indices_for_step(0, s, 4))
    for step in range(5):
        indices = steps(step)
        images, labels = render_fn(0, indices)
        np.testing.assert_array_equal(labels, indices)
        for image, label in zip(np.asarray(images), np.asarray(labels)):
            np.testing.assert_array_equal(image, reference_images[label])
    one, _ = jax.jit(ds.render)(0, jnp.array([3]))
    np.testing.assert_array_equal(np.asarray(one)[0], reference_images[3])
    assert set(np.unique(reference_images)) <= {0, 127}


def test_ofdb_first_weights_row_is_a_choice(one_instance):
    public = FractalDataset(
        data_config("ofdb", num_classes=6, first_weights_row=True, **OFDB_SMALL)
    )
    np.testing.assert_array_equal(public.table.params, one_instance.table.params)
    np.testing.assert_allclose(public.table.variants[1], ofdb.PUBLIC_RENDERER_ROW)
    a, _ = jax.jit(one_instance.render)(0, jnp.arange(6))
    b, _ = jax.jit(public.render)(0, jnp.arange(6))
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(UsageError, match="flip"):
        FractalDataset(data_config("ofdb", num_classes=2, flip="random", **OFDB_SMALL))


@pytest.fixture(scope="module")
def mixed():
    cfg = mixture_config(
        {
            "sig": data_config("sigma", num_classes=3, colour="gray", background="black", **SMALL),
            "ofdb": data_config("ofdb", num_classes=2, **OFDB_SMALL),
        },
        {"sig": 0.75, "ofdb": 0.25},
        period=4,
    )
    return FractalDataset(cfg)


def test_mixture_batches_hold_the_weights_and_each_component_its_epochs(mixed):
    assert mixed.num_classes == 5 and mixed.num_images == 2 + 3 * 1000
    assert mixed.table.stats["realised_weights"] == {"ofdb": 0.25, "sig": 0.75}
    steps = jax.jit(lambda s: mixed.indices_for_step(0, s, 8))
    batches = np.stack([np.asarray(steps(s)) for s in range(20)])
    is_ofdb = batches < 2  # components in name order: ofdb's 2 images, then sigma's 3000
    # Every block of 4 holds 1 OFDB and 3 sigma images, at seeded places.
    assert np.all(is_ofdb.reshape(20, 2, 4).sum(-1) == 1)
    assert len({tuple(row) for row in is_ofdb}) > 1
    # OFDB's 2 images: one epoch per step; sigma's: 120 distinct images in 20 steps.
    assert all(sorted(b[o]) == [0, 1] for b, o in zip(batches, is_ofdb))
    assert len(np.unique(batches[~is_ofdb])) == 120
    np.testing.assert_array_equal(batches, np.stack([np.asarray(steps(s)) for s in range(20)]))


def test_mixture_image_is_a_pure_function_of_the_index(mixed):
    """Index i is image i - O_k of component k (rendered with component k's seed), with its
    labels offset: the same through the per-component fast path (a training batch) and the
    render-everything path (any other indices)."""
    indices = np.asarray(mixed.indices_for_step(0, 3, 8))
    render_fn = jax.jit(mixed.render)
    images, labels = (np.asarray(a) for a in render_fn(0, indices))
    # One OFDB index swapped for a sigma one: the counts no longer fit the slots.
    other = indices.copy()
    swap = int(np.flatnonzero(indices < 2)[0])
    other[swap] = 2 + 999
    other_images, other_labels = (np.asarray(a) for a in render_fn(0, other))
    keep = np.arange(8) != swap
    np.testing.assert_array_equal(other_images[keep], images[keep])
    np.testing.assert_array_equal(other_labels[keep], labels[keep])
    component, local = (np.asarray(a) for a in mixed.renderer.split(indices))
    for k, classes in ((0, 0), (1, 2)):  # ofdb (classes 0, 1), sig (classes 2, 3, 4)
        part = mixed.renderer.parts[k]
        mine = component == k
        want, want_labels = jax.jit(part.render)(component_seed(0, k), np.where(mine, local, 0))
        np.testing.assert_array_equal(images[mine], np.asarray(want)[mine])
        np.testing.assert_array_equal(labels[mine], np.asarray(want_labels)[mine] + classes)
    np.testing.assert_array_equal(mixed.categories(indices), labels)


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda c: setattr(c.components.ofdb, "image_size", 64), "components.ofdb.image_size"),
        (lambda c: setattr(c.components.sig, "dtype", "bfloat16"), "components.sig.dtype"),
        (lambda c: setattr(c, "num_classes", 6), "num_classes"),
        (lambda c: setattr(c.weights, "sig", -1.0), "weights.sig"),
        (lambda c: setattr(c, "period", 2), "period"),  # 0.25 of 2 slots rounds to none
    ],
)
def test_mixture_refuses_mismatched_components(change, needle):
    cfg = mixture_config(
        {
            "sig": data_config("sigma", num_classes=3, **SMALL),
            "ofdb": data_config("ofdb", num_classes=2, **OFDB_SMALL),
        },
        {"sig": 0.8, "ofdb": 0.2},
        period=8,
    )
    change(cfg)
    with pytest.raises(UsageError, match=needle.replace(".", r"\.")):
        FractalDataset(cfg)


def test_mixture_labels_become_multi_hot_when_a_component_is(mixed):
    """With a multi-label component, class ids become one-hot rows and multi-hot rows are
    placed at their component's offset."""
    renderer = copy.copy(mixed.renderer)  # ofdb (classes 0, 1), sig (classes 2, 3, 4)
    renderer.multi_label = True
    np.testing.assert_array_equal(
        renderer.lift(jnp.array([1, 0]), 0), [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(renderer.lift(jnp.array([[1, 0, 1]]), 1), [[0, 0, 1, 0, 1]])
    np.testing.assert_array_equal(mixed.renderer.lift(jnp.array([0, 2]), 1), [2, 4])


def test_multi_label_export_is_tfds_with_class_lists(tmp_path, capsys):
    import tensorflow_datasets as tfds

    small = (
        "--config.num_classes=5 --config.image_size=32 "
        "--config.points=2048 --config.chains=128 --config.burn_in=16"
    ).split()
    argv = ["export", "--config", "configs/data/multi_instance_1k.py", *small]
    out = str(tmp_path / "png")
    assert cli.main([*argv, "--out", out, "--format", "png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--format tfds" in err[0] and not os.path.exists(out)
    out = str(tmp_path / "tfds")
    assert cli.main([*argv, "--out", out, "--format", "tfds", "--num", "4", "--batch", "4"]) == 0
    source = tfds.data_source("fractals_multi_instance", data_dir=out, split="train")
    dataset = FractalDataset(
        load_config(
            "configs/data/multi_instance_1k.py",
            {k[9:].split("=")[0]: k.split("=")[1] for k in small},
        )
    )
    images, labels, _ = render_images(dataset, np.arange(4), 0, batch=4)  # export's own call
    for i in range(4):
        record = source[i]
        np.testing.assert_array_equal(record["image"], np.asarray(images)[i])
        assert list(record["label"]) == np.flatnonzero(np.asarray(labels)[i]).tolist()
