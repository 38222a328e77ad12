"""Augmentations, schedules, masks and gradient accumulation against simple references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_sources import BlobImages, tiny_config

from synth_jax.errors import UsageError
from synth_jax.train import augment, checkpoint, optim, trainer

KEY = jax.random.key(0)


def images(b=4, size=16):
    return jax.random.uniform(jax.random.key(1), (b, size, size, 3))


def keys(b):
    return augment.image_keys(KEY, jnp.arange(b))


def test_full_area_square_crop_is_the_identity():
    x = images()
    out = augment.random_resized_crop(keys(4), x, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_allclose(out, x, atol=1e-5)
    small = augment.random_resized_crop(keys(4), x, 8, scale=(0.1, 0.5))
    assert small.shape == (4, 8, 8, 3)


def test_crop_boxes_lie_inside_the_image_with_the_asked_area():
    boxes = np.asarray(augment.sample_crop_boxes(keys(1000), 32, 32, (0.2, 0.6), (3 / 4, 4 / 3)))
    y0, x0, h, w = boxes.T
    assert (y0 >= 0).all() and (x0 >= 0).all()
    assert (y0 + h <= 32 + 1e-4).all() and (x0 + w <= 32 + 1e-4).all()
    area = h * w / 32**2
    assert 0.18 < area.min() and area.max() < 0.61


def test_flip_gives_each_image_or_its_mirror():
    x = images(64)
    out = np.asarray(augment.random_flip(keys(64), x, axis=2))
    same = [np.array_equal(o, i) for o, i in zip(out, np.asarray(x))]
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, np.asarray(x))]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54


def test_colour_jitter_of_strength_zero_is_the_identity():
    x = images()
    np.testing.assert_allclose(augment.color_jitter(keys(4), x, 0.0), x, atol=1e-6)
    assert not np.allclose(augment.color_jitter(keys(4), x, 0.4), x)


def test_random_erasing_replaces_one_rectangle():
    x = jnp.zeros((8, 16, 16, 3))
    assert np.array_equal(augment.random_erasing(keys(8), x, 0.0), x)
    out = np.asarray(augment.random_erasing(keys(8), x, 1.0))
    for image in out:
        rows, cols = np.nonzero(np.abs(image).sum(-1))
        assert len(rows) > 0
        # the changed pixels fill their bounding box: one rectangle
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert len(rows) == box


def test_label_smoothing():
    t = np.asarray(augment.one_hot_targets(jnp.array([0, 2]), 4, 0.1))
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(t[0], [0.925, 0.025, 0.025, 0.025], rtol=1e-6)


def test_mixup_is_a_convex_combination_with_the_neighbouring_image():
    x = images(6)
    t = augment.one_hot_targets(jnp.arange(6) % 3, 3)
    mx, mt = augment.mixup_cutmix(KEY, x, t, mixup_alpha=0.8, cutmix_alpha=0.0)
    lam = float(mt[0, 0])  # image 0 (class 0) mixed with image 1 (class 1)
    partner = x.reshape(3, 2, 16, 16, 3)[:, ::-1].reshape(x.shape)  # rows 1, 0, 3, 2, 5, 4
    np.testing.assert_allclose(mx, lam * x + (1 - lam) * partner, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mt.sum(1), 1.0, rtol=1e-6)
    assert np.asarray(augment.mixup_partners(5)).tolist() == [1, 0, 3, 2, 4]


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0)])
def test_a_shard_augmented_alone_is_its_rows_of_the_whole_batch(mixup, cutmix):
    # What each device computes in the training step: rows 4..7 of an 8-image batch, alone.
    config = augment.augment_config(
        crop="rrc",
        hflip=True,
        vflip=True,
        color_jitter=0.4,
        random_erasing=0.5,
        mixup=mixup,
        cutmix=cutmix,
        label_smoothing=0.1,
    )
    x = (images(8) * 255).astype(jnp.uint8)
    labels = jnp.arange(8) % 3
    run = jax.jit(lambda *args: augment.augment_batch(KEY, *args, 3, 12, config))
    whole = run(x, labels, jnp.arange(8))
    shard = run(x[4:], labels[4:], jnp.arange(4, 8))
    for a, b in zip(whole, shard):
        np.testing.assert_allclose(a[4:], b, rtol=1e-6, atol=1e-6)
    # and the images of a batch differ from each other (per-image randomness, not per shard)
    assert not np.allclose(whole[0][4], whole[0][0])


def test_cutmix_target_weight_is_the_pasted_area():
    x = jnp.stack([jnp.zeros((16, 16, 3)), jnp.ones((16, 16, 3))])
    t = augment.one_hot_targets(jnp.array([0, 1]), 2)
    for seed in range(5):
        mx, mt = augment.mixup_cutmix(jax.random.key(seed), x, t, 0.0, 1.0)
        pasted = float(mx[0].mean())  # image 0 is zeros: the ones come from its partner
        np.testing.assert_allclose(mt[0, 1], pasted, atol=1e-6)


def test_warmup_cosine_and_step_schedules():
    config = optim.optim_config(lr=1.0, warmup_steps=10, end_lr=0.01)
    lr = optim.learning_rate_schedule(config, total_steps=110, steps_per_epoch=10)
    assert float(lr(0)) == 0.0 and abs(float(lr(5)) - 0.5) < 1e-6
    assert abs(float(lr(10)) - 1.0) < 1e-6 and abs(float(lr(110)) - 0.01) < 1e-6
    config = optim.optim_config(lr=0.1, schedule="step", decay_epochs=(3, 6), decay_factor=0.1)
    lr = optim.learning_rate_schedule(config, total_steps=90, steps_per_epoch=10)
    np.testing.assert_allclose([lr(29), lr(30), lr(59), lr(60)], [0.1, 0.01, 0.01, 0.001])


def test_weight_decay_mask_and_frozen_parameters():
    params = {
        "posemb": jnp.ones((1, 4, 8)),
        "blocks": {0: {"mlp1": {"kernel": jnp.ones((8, 8)), "bias": jnp.ones(8)}}},
        "head": {"kernel": jnp.ones((8, 2)), "bias": jnp.ones(2)},
    }
    mask = optim.weight_decay_mask(params, "kernels")
    assert mask["blocks"][0]["mlp1"] == {"kernel": True, "bias": False}
    assert mask["posemb"] is False and mask["head"]["kernel"] is True
    config = optim.optim_config(name="sgd", lr=0.1, trainable="head/.*")
    tx, _ = optim.make_optimizer(config, params, total_steps=10, steps_per_epoch=1)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(jnp.abs(updates["blocks"][0]["mlp1"]["kernel"]).max()) == 0.0
    assert float(jnp.abs(updates["head"]["kernel"]).min()) > 0.0


@pytest.mark.parametrize(
    "bad, match", [({"crop": "zoom"}, "augment.crop"), ({"random_erasing": 2.0}, "random_erasing")]
)
def test_bad_augment_options_name_the_key(bad, match):
    with pytest.raises(UsageError, match=match):
        augment.check_augment_config(augment.augment_config(**bad))


def test_gradient_accumulation_equals_the_whole_batch(tmp_path):
    # no dropout: micro-batches then see exactly the whole batch's examples and augmentation
    def run(accum):
        config = tiny_config(3)
        config.model.dropout = config.model.drop_path = 0.0
        config.optim.accum_steps = accum
        trainer.train(config, str(tmp_path / str(accum)), BlobImages(), num_classes=4)
        return checkpoint.load_params(str(tmp_path / str(accum)))[0]

    for a, b in zip(jax.tree.leaves(run(1)), jax.tree.leaves(run(2))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
