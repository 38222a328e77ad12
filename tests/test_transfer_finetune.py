"""Transfer end to end on real data (a Fashion-MNIST subset from the Debian idx files).

A tiny ViT is pre-trained on five Fashion-MNIST classes (the real-data pre-training source), then
transferred to all ten: full fine-tuning vs scratch, resume after preemption, linear probe,
few-shot repeats and bridged transfer, each writing its row of the results table.
"""

import json
import os
import signal

import numpy as np
import pytest
from flax import nnx

from synth_jax import cli
from synth_jax.data import importer, pipeline, readers
from synth_jax.errors import UsageError
from synth_jax.models import model_config, vit
from synth_jax.train import checkpoint, trainer
from synth_jax.transfer import finetune, linear_probe, results, runs

FASHION = "/usr/share/datasets/fashion-mnist"
pytestmark = pytest.mark.skipif(
    not os.path.isdir(FASHION), reason="Debian package dataset-fashion-mnist is not installed"
)
STEPS = 40


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    local = readers.read_local(FASHION)
    rng = np.random.default_rng(0)
    train = rng.choice(60000, 2000, replace=False)
    test = rng.choice(10000, 500, replace=False)
    np.savez(
        root / "fashion_small.npz",
        train_images=local.splits["train"].images[train],
        train_labels=local.splits["train"].labels[train],
        test_images=local.splits["test"].images[test],
        test_labels=local.splits["test"].labels[test],
    )
    data_dir = str(root / "tfds")
    importer.import_dataset("fashion_small", str(root / "fashion_small.npz"), data_dir)

    # Supervised pre-training on classes 0-4 only: fine-tuning then meets five new classes.
    data = pipeline.tfds_config(name="fashion_small", data_dir=data_dir, num_threads=2)
    labels = local.splits["train"].labels[train]
    five = np.flatnonzero(labels < 5)
    source = pipeline.make_source(data, "train", 64, 0, True, indices=five)
    pre = trainer.train_config(
        batch_size=64, total_steps=30, image_size=32, log_every_steps=10, model=model_config("mu/4")
    )
    pre.data = data
    pre.optim.lr, pre.optim.warmup_steps = 1e-2, 5
    pre.checkpoint.async_save = False
    pre_dir = str(root / "pretrain")
    trainer.train(
        pre,
        pre_dir,
        source,
        num_classes=5,
        extra_summary=dict(
            pretrain_family="fashion_small", pretrain_classes=5, pretrain_images=len(five)
        ),
    )

    def config(**overrides):
        c = finetune.finetune_config(
            batch_size=64,
            total_steps=STEPS,
            image_size=32,
            log_every_steps=10,
            model=model_config("mu/4"),
            eval_batch_size=128,
            init_from=pre_dir,
            results_csv=str(root / "results.csv"),
        )
        c.data = pipeline.tfds_config(name="fashion_small", data_dir=data_dir, num_threads=2)
        c.optim.lr, c.optim.warmup_steps = 1e-2, 5
        c.checkpoint.async_save = False
        c.update(overrides)
        return c

    return dict(
        root=root,
        config=config,
        pre_dir=pre_dir,
        data_dir=data_dir,
        train_images=local.splits["train"].images[train],
        labels=labels,
    )


def _rows(setup):
    return results.read_rows(str(setup["root"] / "results.csv"))


def test_finetune_beats_chance_and_scratch_differs_only_in_init_from(setup):
    root = setup["root"]
    pretrained = finetune.run(setup["config"](), str(root / "ft"))
    scratch = finetune.run(setup["config"](init_from=""), str(root / "scratch"))
    row, base = pretrained["row"], scratch["row"]
    assert row["top1"] > 0.3  # chance is 0.1
    assert (row["pretrain_family"], row["pretrain_classes"]) == ("fashion_small", 5)
    assert row["pretrain_images_seen"] == 30 * 64 and row["pretrain_images"] > 0
    assert base["pretrain_family"] == "scratch" and base["init_from"] is None
    with open(root / "ft" / "config.json") as f:
        a = json.load(f)
    with open(root / "scratch" / "config.json") as f:
        b = json.load(f)
    assert {k for k in a if a[k] != b[k]} == {"init_from"}
    csv_rows = {r["run_id"]: r for r in _rows(setup)}
    assert csv_rows["ft"]["mode"] == "full" and csv_rows["ft"]["fraction"] == "1.0"
    assert csv_rows["scratch"]["pretrain_classes"] == ""
    with open(root / "ft" / "result.json") as f:
        assert len(json.load(f)["per_class"]) == 10
    # A finished run is not run (or recorded) twice.
    again = finetune.run(setup["config"](), str(root / "ft"))
    assert again["row"] == row and len(_rows(setup)) == len(csv_rows)
    assert again["appended"] == 0 and pretrained["appended"] == 1
    # ... nor returned for another config: one line naming the key, nothing changed.
    table = (root / "results.csv").read_bytes()
    other = setup["config"]()
    other.optim.lr = 0.5
    with pytest.raises(UsageError, match="'optim.lr'") as refused:
        finetune.run(other, str(root / "ft"))
    assert len(str(refused.value).splitlines()) == 1
    assert (root / "results.csv").read_bytes() == table
    # Killed after result.json, before its row: the rerun appends the row, once.
    lines = table.decode().splitlines(keepends=True)
    (root / "results.csv").write_text("".join(x for x in lines if not x.startswith("ft,")))
    mended = finetune.run(setup["config"](), str(root / "ft"))
    assert mended["appended"] == 1
    assert sorted(r["run_id"] for r in _rows(setup)) == sorted(csv_rows)


class _Preempted:
    """Wraps a training source: records each batch's labels; sends SIGTERM at batch `at`."""

    def __init__(self, inner, seen, at):
        self.inner, self.seen, self.at = inner, seen, at

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.inner)
        self.seen.append(batch["label"].tolist())
        if len(self.seen) == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return batch

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_resumed_finetune_sees_the_same_batches(setup, monkeypatch):
    root, make_source = setup["root"], pipeline.make_source
    config = setup["config"](total_steps=8, log_every_steps=2, results_csv=str(root / "r.csv"))

    def recording(seen, at):
        def make(data, split, batch_size, seed, train, indices=None):
            source = make_source(data, split, batch_size, seed, train, indices)
            return _Preempted(source, seen, at) if train else source

        return make

    straight = []
    monkeypatch.setattr(pipeline, "make_source", recording(straight, at=-1))
    full = finetune.run(config, str(root / "straight"))
    interrupted = []
    monkeypatch.setattr(pipeline, "make_source", recording(interrupted, at=3))
    first = finetune.run(config, str(root / "resumed"))
    assert first["status"] == "preempted" and len(interrupted) < 8
    assert not os.path.exists(root / "resumed" / "result.json")
    second = finetune.run(config, str(root / "resumed"))
    assert second["status"] == "done"
    assert interrupted == straight
    a, _ = checkpoint.load_params(str(root / "straight"))
    b, _ = checkpoint.load_params(str(root / "resumed"))
    np.testing.assert_array_equal(np.concatenate(_leaves(a)), np.concatenate(_leaves(b)))
    assert second["row"]["top1"] == full["row"]["top1"]


def _leaves(tree):
    import jax

    return [np.ravel(x) for x in jax.tree.leaves(tree)]


def test_linear_probe_leaves_the_backbone_untouched(setup):
    root = setup["root"]
    config = setup["config"](mode="linear_probe", image_size=48)  # posemb 8x8 -> 12x12
    result = finetune.run(config, str(root / "probe"))
    row = result["row"]
    assert row["mode"] == "linear_probe" and row["top1"] > 0.3
    again = linear_probe.run_probe(
        config, str(root), str(root / "probe_again"), 0, runs.pretrain_columns(config.init_from)
    )
    assert again["row"]["top1"] == row["top1"]  # same backbone, same features, same solver
    model = nnx.state(again["backbone"], nnx.Param).to_pure_dict()
    loaded, _ = checkpoint.load_params(setup["pre_dir"])
    np.testing.assert_array_equal(model["embedding"]["kernel"], loaded["embedding"]["kernel"])
    np.testing.assert_array_equal(
        model["blocks"][1]["mlp2"]["kernel"], loaded["blocks"][1]["mlp2"]["kernel"]
    )
    np.testing.assert_allclose(
        model["posemb"], vit.resample_posemb(loaded["posemb"], 144), rtol=1e-6
    )
    # Features are cached: another regularisation strength reuses them.
    cache = [f for f in os.listdir(root / "probe") if f.startswith("features_train")]
    assert len(cache) == 1
    stamp = os.path.getmtime(root / "probe" / cache[0])
    os.remove(root / "probe" / "result.json")
    config.linear_probe.l2 = 1e-2
    finetune.run(config, str(root / "probe"))
    assert os.path.getmtime(root / "probe" / cache[0]) == stamp


def test_fewshot_repeats_over_seeds(setup):
    root = setup["root"]
    # 2 steps: the step the SimCLR/MAE test below fine-tunes with (one program for both)
    config = setup["config"](mode="fewshot", shots=2, seeds=(0, 1), total_steps=2)
    summary = finetune.run(config, str(root / "fewshot"))
    assert [r["seed"] for r in summary["rows"]] == [0, 1]
    assert all(r["shots"] == 2 and r["fraction"] is None for r in summary["rows"])
    top1 = [r["top1"] for r in summary["rows"]]
    assert summary["top1_mean"] == pytest.approx(np.mean(top1))
    for seed in (0, 1):
        with open(root / "fewshot" / f"seed_{seed}" / "result.json") as f:
            assert json.load(f)["train_examples"] == 20


def test_bridged_runs_both_stages(setup):
    from PIL import Image

    root = setup["root"]
    folder = root / "generated"
    rng = np.random.default_rng(0)
    for c in range(10):  # stand-ins for generated images: noisy copies of real ones
        (folder / "train" / f"{c:02d}").mkdir(parents=True)
        for i, j in enumerate(np.flatnonzero(setup["labels"] == c)[:3]):
            image = setup["train_images"][j][..., 0].astype(int) + rng.integers(-20, 20, (28, 28))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                folder / "train" / f"{c:02d}" / f"{i}.png"
            )
    # stage 2 at 2 steps: the fine-tune step of the few-shot test (one program for both)
    config = setup["config"](mode="bridged", total_steps=2)
    config.bridged.folder, config.bridged.total_steps = str(folder), 3
    summary = finetune.run(config, str(root / "bridged"))
    assert [r["mode"] for r in summary["rows"]] == ["bridged_stage1", "bridged"]
    with open(root / "bridged" / "stage1" / "config.json") as f:
        stage1 = json.load(f)
    with open(root / "bridged" / "stage2" / "config.json") as f:
        stage2 = json.load(f)
    assert stage1["augment"]["mixup"] == 0.8 and stage1["total_steps"] == 3
    assert stage2["init_from"].endswith("stage1") and stage2["dont_load"] == ["head/.*"]
    assert {r["mode"] for r in _rows(setup)} >= {"bridged_stage1", "bridged"}


def test_bad_inputs_are_one_line_errors(setup, tmp_path, capsys):
    config = setup["config"](model=model_config("mu/8"))
    with pytest.raises(UsageError, match="embedding/kernel"):
        finetune.run(config, str(tmp_path / "wrong_model"))
    spec = str(tmp_path / "missing.py")
    with open(spec, "w") as f:
        f.write(
            "from synth_jax.transfer.finetune import finetune_config\n"
            "def get_config(arg=None):\n"
            "    c = finetune_config(image_size=32, total_steps=1)\n"
            f"    c.data.name, c.data.data_dir = 'cifar10', {str(tmp_path)!r}\n"
            "    return c\n"
        )
    code = cli.main(["finetune", "--config", spec, "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "synth-jax data import cifar10 --from PATH" in err


@pytest.mark.parametrize("method", ["simclr", "mae"])
def test_finetune_from_a_simclr_or_mae_pretraining_records_its_method(setup, method, tmp_path):
    """The backbone loads (the projection head and the decoder stay behind: nothing refused),
    and the row names the method. The pre-training is test_train_objectives.py's 2-step run at
    16 px (the SimCLR one is the very run, so its step compiles once for both files); the
    fine-tune at 32 px resamples its position embedding."""
    from test_train_objectives import two_step_config
    from test_train_sources import BlobImages

    from synth_jax.train.objectives import objective_config

    pre = two_step_config()
    if method == "mae":
        pre.objective = objective_config("mae", decoder_width=32, decoder_depth=1)
    pre_dir = str(tmp_path / method)
    trainer.train(pre, pre_dir, BlobImages(), num_classes=4)
    config = setup["config"](init_from=pre_dir, total_steps=2)
    config.results_csv = str(tmp_path / "results.csv")
    row = finetune.run(config, str(tmp_path / "ft"))["row"]
    assert row["pretrain_method"] == method and row["init_from"] == os.path.abspath(pre_dir)
    (written,) = results.read_rows(str(tmp_path / "results.csv"))
    assert written["pretrain_method"] == method
