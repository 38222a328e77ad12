"""Transfer mode `bridged`: pre-trained model -> synthetic images of the target classes -> real
data.

Stage 1 fine-tunes the pre-trained model on a synthetic dataset of the target classes (a TFDS
dataset by name, or an image folder `SPLIT/CLASS/*.png` imported once into the workdir) with a
mixup loss; stage 2 fine-tunes the stage-1 model on the real training data, re-initialising the
head first when `bridged.reinit_head` ("bridged transfer++"). Generated images are the user's
input: producing them (e.g. with dataset style inversion) is outside synth_jax.

One command runs both stages, in `WORKDIR/stage1/` and `WORKDIR/stage2/`, resumably, and
records both: each appends its row (stage 1 evaluated on the real test split, mode
`bridged_stage1`; stage 2 mode `bridged`). Classes are matched by label index, so the synthetic
dataset must have the real dataset's number of classes in the same order.
"""

from __future__ import annotations

import os

import jax
import ml_collections
from jax.experimental import multihost_utils

from synth_jax import files
from synth_jax.config import config_to_dict
from synth_jax.data import importer, tfds_source
from synth_jax.errors import UsageError
from synth_jax.train import trainer
from synth_jax.transfer import results, runs

SYNTHETIC_NAME = "bridged_synthetic"
DEFAULTS = {
    "bridged": dict(
        name="",  # TFDS name of the synthetic dataset of the target classes
        data_dir="",  # its TFDS data_dir ('' = data.data_dir)
        folder="",  # or an image folder SPLIT/CLASS/*.png, imported once
        split="train",
        total_steps=100,
        lr=0.0,  # 0 = optim.lr
        mixup=0.8,  # Beta(alpha, alpha) mixup in stage 1
        reinit_head=True,  # stage 2 starts with a fresh head ("bridged transfer++")
    )
}


def validate(config) -> None:
    if config.shots:
        raise UsageError(f"shots={config.shots} applies to mode fewshot or linear_probe")
    if len(config.seeds) > 1:
        raise UsageError("mode=bridged runs one seed; set seeds=() and seed=S, one run per seed")
    if config.bridged.total_steps < 1:
        raise UsageError("bridged.total_steps: the length of stage 1, must be >= 1")
    trainer.validate(config, num_images=1, data_image_size=config.image_size)


def synthetic_data_config(config, workdir: str) -> ml_collections.ConfigDict:
    """The stage-1 data config: `bridged.name` in its data_dir, or the imported image folder."""
    bridged = config.bridged
    data = ml_collections.ConfigDict(config_to_dict(config.data))
    if bridged.folder:
        data_dir = os.path.join(workdir, "synthetic_tfds")
        if not os.path.isdir(os.path.join(data_dir, SYNTHETIC_NAME)):
            if jax.process_index() == 0:
                importer.import_dataset(SYNTHETIC_NAME, bridged.folder, data_dir, "folder")
            if jax.process_count() > 1:
                multihost_utils.sync_global_devices("bridged synthetic import")
        data.name, data.data_dir = SYNTHETIC_NAME, data_dir
        if not data.decode_size:
            data.decode_size = int(config.image_size)  # folder images may differ in size
    elif bridged.name:
        data.name = bridged.name
        data.data_dir = bridged.data_dir or config.data.data_dir
    else:  # (checked here, not before: a config may leave it to the command line)
        raise UsageError("mode=bridged: set bridged.name (a TFDS dataset) or bridged.folder")
    data.train_split = bridged.split
    return data


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs stage 1 then stage 2 (each skipped when already finished); returns the summary."""
    workdir = os.path.abspath(workdir)
    results.check_table(runs.results_path(config, workdir))
    synthetic = synthetic_data_config(config, workdir)
    real = tfds_source.open_split(
        config.data.name, config.data.train_split, config.data.data_dir or None
    )
    fake = tfds_source.open_split(synthetic.name, synthetic.train_split, synthetic.data_dir or None)
    if fake.num_classes != real.num_classes:
        raise UsageError(
            f"bridged: the synthetic dataset {synthetic.name} has {fake.num_classes} classes but "
            f"{config.data.name} has {real.num_classes}; it must hold the target classes, in the "
            f"same label order"
        )
    pretrain = runs.pretrain_columns(config.init_from)
    seed = int(config.seed)

    # Stage 1: synthetic images of the target classes, mixup.
    stage1 = ml_collections.ConfigDict(config_to_dict(config))
    stage1.total_steps, stage1.total_epochs = int(config.bridged.total_steps), 0.0
    stage1.augment.mixup = float(config.bridged.mixup)
    if config.bridged.lr:
        stage1.optim.lr = float(config.bridged.lr)
    stage1_dir = os.path.join(workdir, "stage1")
    first = runs.train_and_evaluate(
        stage1, workdir, stage1_dir, seed, "bridged_stage1", pretrain, train_data=synthetic
    )
    if first is None:
        return dict(status="preempted", stage=1)

    # Stage 2: real data, from the stage-1 model; optionally a fresh head.
    stage2 = ml_collections.ConfigDict(config_to_dict(config))
    stage2.init_from = stage1_dir
    stage2.dont_load = list(config.dont_load) if config.bridged.reinit_head else []
    second = runs.train_and_evaluate(
        stage2, workdir, os.path.join(workdir, "stage2"), seed, "bridged", pretrain
    )
    if second is None:
        return dict(status="preempted", stage=2)
    rows = [first["row"], second["row"]]
    summary = dict(
        status="done",
        mode="bridged",
        rows=rows,
        row=second["row"],
        stage1_top1=first["row"]["top1"],
        top1=second["row"]["top1"],
        results_csv=runs.results_path(config, workdir),
    )
    if jax.process_index() == 0:
        files.write_json(os.path.join(workdir, "summary.json"), summary)
    return summary
