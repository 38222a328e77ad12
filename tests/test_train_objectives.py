"""Pre-training objectives (SimCLR, MAE) and label noise: the losses against NumPy references,
the contrastive loss on 4 devices equal to 1 device (its negatives span the devices), a SimCLR
step for a v5e 2x2 slice that sends no image between chips, MAE masks that depend only on
(key, row), checkpoints that keep their own parameters apart from the model's, and label noise
that is the same on any number of devices."""

import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_sources import BlobImages, tiny_config

from synth_jax import cli
from synth_jax.aot import hlo
from synth_jax.errors import UsageError
from synth_jax.fractals import FractalDataset, data_config
from synth_jax.fractals.dataset import noisy_labels
from synth_jax.models import model_config
from synth_jax.train import checkpoint, mae, objectives, prepare, simclr, trainer
from synth_jax.train import mesh as mesh_lib
from synth_jax.train import step as step_lib

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None


def nt_xent_reference(z: np.ndarray, t: float) -> float:
    """NT-Xent written out: 2B anchors, each against its positive and the 2B - 2 others."""
    b = z.shape[0]
    flat = z.reshape(2 * b, -1).astype(np.float64)
    flat = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    total = 0.0
    for i in range(2 * b):
        j = i + 1 if i % 2 == 0 else i - 1
        others = [k for k in range(2 * b) if k != i]
        logits = np.array([flat[i] @ flat[k] / t for k in others])
        total += -(flat[i] @ flat[j] / t) + np.log(np.sum(np.exp(logits)))
    return total / (2 * b)


def test_nt_xent_matches_numpy():
    z = np.random.default_rng(0).normal(size=(5, 2, 7)).astype(np.float32)
    loss, correct = simclr.nt_xent(jnp.asarray(z), 0.3)
    np.testing.assert_allclose(float(loss), nt_xent_reference(z, 0.3), rtol=1e-5)
    # Identical views: every anchor's nearest other embedding is its positive.
    same = np.repeat(z[:, :1], 2, axis=1)
    assert float(simclr.nt_xent(jnp.asarray(same), 0.3)[1]) == 10


def test_mae_loss_matches_numpy():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    pred = rng.normal(size=(2, 4, 48)).astype(np.float32)
    mask = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], np.float32)
    expected, count = 0.0, 0
    for b in range(2):
        for t in range(4):
            y, x = divmod(t, 2)
            patch = images[b, 4 * y : 4 * y + 4, 4 * x : 4 * x + 4].reshape(-1)
            target = (patch - patch.mean()) / np.sqrt(patch.var() + 1e-6)
            if mask[b, t]:
                expected += np.mean((pred[b, t] - target) ** 2)
                count += 1
    got = mae.reconstruction_loss(jnp.asarray(pred), jnp.asarray(images), jnp.asarray(mask), 4)
    np.testing.assert_allclose(float(got), expected / count, rtol=1e-5)


def test_mae_masks_depend_only_on_key_and_row():
    key = jax.random.key(3)
    keep, mask = mae.random_mask(key, jnp.arange(8), 16, 0.75)
    assert keep.shape == (8, 4) and np.all(np.asarray(mask).sum(1) == 12)
    # Row 5 alone, or in another batch, gets the same mask; another key another one.
    keep5, _ = mae.random_mask(key, jnp.array([5, 0]), 16, 0.75)
    np.testing.assert_array_equal(keep5[0], keep[5])
    other, _ = mae.random_mask(jax.random.key(4), jnp.arange(8), 16, 0.75)
    assert not np.array_equal(other, keep)
    assert len({tuple(sorted(k)) for k in np.asarray(keep).tolist()}) > 1  # per image


def contrastive_config(**objective):
    config = tiny_config(1, data=1)
    config.model = model_config("mu/4")
    config.augment.update(dict(crop="resize", hflip=False, mixup=0.0, label_smoothing=0.0))
    config.objective = objectives.objective_config(
        "simclr", proj_hidden=32, proj_dim=8, blur_prob=(0.5, 0.5), solarize_prob=(0.0, 0.5)
    )
    config.objective.update(objective)
    return config


def first_step(config, devices):
    """The metrics and state of one step on a mesh of `devices` (data-parallel)."""
    source = BlobImages()
    config.mesh.data = len(devices)
    resolved = prepare.validate(config, source.num_images, source.image_size, len(devices))
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    program = step_lib.build_step(config, resolved, source, num_classes=4, mesh=mesh)
    state = jax.jit(program.init_state, out_shardings=program.state_shardings)(None, None)
    state, metrics = program.step_fn(state)
    return jax.device_get(metrics), jax.device_get(state)


def test_simclr_on_four_devices_equals_one_device():
    """The loss and the update agree: each device's rows meet every other device's as
    negatives (on their own, 4 rows per device would give a smaller loss)."""
    config = contrastive_config()
    one, state1 = first_step(config, jax.devices()[:1])
    four, state4 = first_step(config, jax.devices()[:4])
    assert math.isfinite(one["loss"])
    np.testing.assert_allclose(four["loss"], one["loss"], rtol=2e-5)
    np.testing.assert_allclose(four["contrastive_accuracy"], one["contrastive_accuracy"])
    for a, b in zip(jax.tree.leaves(state1["objective"]), jax.tree.leaves(state4["objective"])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Negatives from the whole batch of 16: log(30) at chance, more than log(6) of 4 rows.
    assert one["loss"] > math.log(6)


def two_step_config(**objective):
    """A 2-step contrastive run over the 4 devices, saved synchronously (test_transfer_finetune.py
    fine-tunes from the same run: one program compiled for both)."""
    config = contrastive_config(**objective)
    config.total_steps, config.checkpoint.async_save = 2, False
    config.mesh.data = 4
    return config


def test_own_parameters_are_saved_apart_and_fine_tuning_reads_the_model_only(tmp_path, capsys):
    config = two_step_config()
    summary, _ = trainer.train(config, str(tmp_path), BlobImages(), num_classes=4)
    state = checkpoint.load_train_state(str(tmp_path))
    assert sorted(state) == ["model_state", "objective", "opt_state", "params", "step"]
    assert sorted(state["objective"]["projector"]) == ["dense1", "dense2"]
    params, run_config = checkpoint.load_params(str(tmp_path))
    assert "projector" not in str(sorted(params)) and run_config["objective"]["type"] == "simclr"
    # A rerun restores its checkpoint (the tree, objective included) and, finished, keeps the
    # summary it had.
    capsys.readouterr()
    again, _ = trainer.train(config, str(tmp_path), BlobImages(), num_classes=4)
    assert "resumed from the checkpoint at step 2" in capsys.readouterr().err
    assert again == summary


def test_objective_keys_are_checked():
    config = contrastive_config(temperature=0.0)
    with pytest.raises(UsageError, match="objective.temperature"):
        prepare.validate(config, 64, 16, 1)
    config = tiny_config(1, data=1)
    config.model = model_config("ResNet-10")
    config.objective = objectives.objective_config("mae")
    with pytest.raises(UsageError, match="needs a ViT"):
        prepare.validate(config, 64, 16, 1)
    config.objective = objectives.objective_config("supervised")
    config.objective.type = "byol"  # not registered
    with pytest.raises(UsageError, match="objective.type"):
        prepare.validate(config, 64, 16, 1)


@pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu is not installed")
def test_simclr_step_for_a_v5e_2x2_gathers_embeddings_not_images(tmp_path):
    size, batch = 40, 64
    config = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain", "cpu_tiny.py")
    hlo_file = tmp_path / "simclr.hlo"
    argv = [
        "compile",
        "--config",
        config + ":mu,simclr",
        f"--config.image_size={size}",
        f"--config.data.image_size={size}",
        "--topology",
        "v5e:2x2",
        "--out",
        str(tmp_path / "simclr.json"),
        "--hlo",
        str(hlo_file),
    ]
    assert cli.main(argv) == 0
    ops = hlo.collectives(hlo_file.read_text())
    largest = max((math.prod(dims) for op in ops for _, dims in op.shapes), default=0)
    # One channel of one device's 16 images is 16 x 40 x 40 elements; no collective is that big.
    assert largest < (batch // 4) * size * size
    for op in ops:
        for _, dims in op.shapes:
            assert not any(dims[i : i + 2] == (size, size) for i in range(len(dims) - 1))
    # The negatives: each chip's 2 x 16 projected embeddings (64 wide) go to the others.
    gathers = [dims for op in ops if "all-gather" in op.kind for _, dims in op.shapes]
    assert any(math.prod(dims) == 2 * batch // 4 * 64 for dims in gathers), gathers


def test_label_noise_is_a_function_of_seed_and_index():
    indices = jnp.arange(20_000, dtype=jnp.int32)
    labels = indices // 2_000
    noisy = np.asarray(noisy_labels(7, indices, labels, 0.3, 10))
    changed = np.mean(noisy != np.asarray(labels))
    assert abs(changed - 0.3 * 0.9) < 0.02  # a uniform draw keeps the label 1 time in 10
    assert np.all((noisy >= 0) & (noisy < 10))
    np.testing.assert_array_equal(
        noisy_labels(7, indices[::-1], labels[::-1], 0.3, 10), noisy[::-1]
    )
    assert np.array_equal(np.asarray(noisy_labels(7, indices, labels, 0.0, 10)), labels)


def test_label_noise_is_the_same_on_one_and_four_devices():
    """Dead leaves (one image per category): 64 images, half of them with a drawn label."""

    def dataset(p):
        return FractalDataset(
            data_config("dead_leaves", num_classes=64, image_size=32, max_shapes=50, label_noise=p)
        )

    noisy = dataset(0.5)
    indices = jnp.arange(64, dtype=jnp.int32)
    _, one = jax.jit(noisy.render)(0, indices)
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    sharded = jax.device_put(indices, jax.NamedSharding(mesh, jax.P("data")))
    _, four = jax.jit(noisy.render)(0, sharded)
    np.testing.assert_array_equal(np.asarray(one), np.asarray(four))
    _, clean = jax.jit(dataset(0.0).render)(0, indices)
    assert 0.3 < np.mean(np.asarray(one) != np.asarray(clean)) < 0.7
