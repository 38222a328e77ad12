"""In-memory laptop training (synth_jax.experiments.lab), the ConvNet and the protocol search's
bookkeeping, on tiny problems."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from synth_jax import models
from synth_jax.errors import UsageError
from synth_jax.experiments import lab, protocol
from synth_jax.models import adapt

TINY = lab.Recipe(model="ConvNet-4", image_size=8, steps=60, batch_size=32, lr=1e-2, shift=0)


def toy(n=128, seed=0):
    """Class 0: ink in the left half; class 1: in the right half (8x8, uint8)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = np.zeros((n, 8, 8), np.uint8)
    for i, y in enumerate(labels):
        cols = slice(4, 8) if y else slice(0, 4)
        images[i, :, cols] = rng.integers(100, 256, (8, 4))
    return lab.prepare(images, 8), labels


def test_convnet_is_a_registered_model_with_features_and_a_head():
    config = models.model_config("ConvNet-4")
    model = models.create_model(config, 3, 8, nnx.Rngs(0))
    x = np.zeros((2, 8, 8, 3), np.float32)
    assert model(x).shape == (2, 3) and model.features(x).shape == (2, 16)
    with pytest.raises(UsageError, match="model.name"):
        config.name = "ConvNet-x"
        models.check_model_config(config, 8)


def test_prepare_scales_to_minus_one_one_and_resizes():
    x = lab.prepare(np.array([[[0, 255], [255, 0]]], np.uint8), 4)
    assert x.shape == (1, 4, 4, 3) and x.min() >= -1 and x.max() <= 1 and x.max() > 0


def test_augment_shift_moves_images_and_zero_shift_is_identity():
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    same = lab.augment(jax.random.key(0), x, 0, False)
    np.testing.assert_array_equal(np.asarray(same), x)
    moved = np.asarray(lab.augment(jax.random.key(0), x, 2, False))
    assert moved.shape == x.shape and not np.allclose(moved, x)


def test_training_learns_a_separable_task_and_beats_chance():
    x, y = toy()
    tx, ty = toy(64, seed=1)
    net = lab.train(TINY, x, y, 2, seed=0)
    assert lab.error(net, tx, ty) < 0.1
    assert lab.probe_error(net, x, y, tx, ty) < 0.1
    base = lab.pixel_baselines(x, y, tx, ty)
    assert set(base) == {"logistic_regression", "nearest_neighbour"}
    assert base["nearest_neighbour"] < 0.2


def test_fine_tuning_starts_from_the_backbone_with_a_fresh_head():
    x, y = toy()
    net = lab.train(TINY, x, y, 2, seed=0)
    params, _ = lab.init_arrays(TINY, 5, seed=3, init=net)
    new, old = adapt.flatten(params), adapt.flatten(net.params)
    for name, value in new.items():
        if name.startswith("head/"):
            assert value.shape[-1] == 5 and not np.any(np.asarray(value))
        else:
            np.testing.assert_array_equal(np.asarray(value), np.asarray(old[name]))


def test_few_labels_draws_k_per_class_by_seed():
    labels = np.repeat(np.arange(5), 20)
    a, b = protocol.few_labels(labels, 3, 0), protocol.few_labels(labels, 3, 0)
    np.testing.assert_array_equal(a, b)
    assert np.bincount(labels[a]).tolist() == [3] * 5
    assert not np.array_equal(a, protocol.few_labels(labels, 3, 1))
    assert len(protocol.few_labels(labels, 0, 0)) == 100


def test_analyse_pairs_each_cell_with_scratch_seed_by_seed():
    rows = []
    for seed, (scratch, pre) in enumerate([(0.30, 0.20), (0.40, 0.31), (0.35, 0.24)]):
        for source, err in (("scratch", scratch), ("digits_0_4", pre)):
            steps = 0 if source == "scratch" else 100
            cell = protocol.cell_id(source, steps, "finetune", 5)
            rows.append(
                dict(
                    cell=cell,
                    source=source,
                    pretrain_steps=steps,
                    mode="finetune",
                    shots=5,
                    seed=seed,
                    val_error=err,
                    test_error=err,
                    cpu_s=1.0,
                )
            )
    rows = [{k: str(v) for k, v in r.items()} for r in rows]
    table = {e["cell"]: e for e in protocol.analyse(rows)}
    d = table["finetune_k5_digits_0_4_100"]["vs_scratch_test"]
    assert d["pairs"] == 3 and d["difference"] == pytest.approx(-0.1)
    assert d["verdict"] == "lower"
    assert "finetune | 5 | digits_0_4 | 100" in protocol.markdown(list(table.values()))


def test_a_bad_recipe_key_is_a_usage_error():
    with pytest.raises(UsageError, match="stepz"):
        protocol.recipe_of({"stepz": 3})


def test_protocol_search_runs_end_to_end_and_resumes(tmp_path, capsys):
    from synth_jax.config import load_config_file

    config = load_config_file("configs/experiments/protocol_search.py:quick")
    config.recipe.update(model="ConvNet-4", image_size=8, steps=10)
    config.sources, config.pretrain_steps = ["digits_0_4"], [10]
    config.modes = ["finetune", "probe"]
    result = protocol.run(config, str(tmp_path))
    table = {e["cell"]: e for e in result["cells"]}
    assert set(table) == {
        "finetune_k5_scratch",
        "finetune_k5_digits_0_4_10",
        "probe_k5_scratch",
        "probe_k5_digits_0_4_10",
    }
    pre = table["probe_k5_digits_0_4_10"]
    assert pre["vs_scratch_test"]["pairs"] == 2 and pre["pretrain_cpu_s"] > 0
    assert 0 <= pre["test"]["mean"] <= 1
    assert (tmp_path / "search.md").read_text().count("\n") == 2 + 4
    rows = (tmp_path / "results.csv").read_text()
    protocol.run(config, str(tmp_path))  # everything finished: nothing runs again
    assert (tmp_path / "results.csv").read_text() == rows
    assert "0 runs to do" in capsys.readouterr().out


def test_the_positive_control_never_sees_an_image_that_a_run_labels():
    task = protocol.digits_task(16)
    images, labels = protocol.unlabelled_pool(task, [1, 5], [0, 1, 2])
    pool_images = task["pool"][0]
    used = np.concatenate(
        [protocol.few_labels(task["pool"][1], k, s) for k in (1, 5) for s in (0, 1, 2)]
    )
    kept = {im.tobytes() for im in images}
    assert not any(pool_images[i].tobytes() in kept for i in used)
    assert len(labels) == len(task["pool"][1]) - len(np.unique(used))
    with pytest.raises(UsageError, match="digits_5_9 needs every k"):
        protocol.unlabelled_pool(task, [0], [0])
