"""Scaling backwards (Nakamura et al., ECCV 2024): 1p-frac vs FractalDB-1k vs scratch, ViT-Tiny.

    synth-jax sweep --config configs/experiments/scaling_backwards.py --workdir runs/sb \
        --config.finetune.data.data_dir=~/tensorflow_datasets
    synth-jax data import fashion_mnist --from FASHION_MNIST_FOLDER --data_dir runs/tfds
    synth-jax sweep --config configs/experiments/scaling_backwards.py:mini --workdir runs/sb_mini \
        --config.finetune.data.data_dir=runs/tfds

Default: the published recipe. ViT-Ti/16 at 224 px pre-trained on 1p-frac (one fractal, 1,000
perturbations, sigma 3.5, Delta 0.1, 80M samples; configs/pretrain/onepfrac_vit_tiny.py) and on
FractalDB-1k (1M images, 300 epochs; configs/pretrain/fractaldb1k_vit_tiny.py), each fine-tuned
on CIFAR-100 with the paper's recipe (configs/finetune/cifar100.py), plus a from-scratch run.
Hardware: a TPU v4-32 or 8 GPUs; days (estimates from FLOPs, not measurements).
Published (CIFAR-100 top-1): scratch 64.2, FractalDB-1k 81.6, 1p-frac 84.2 (the paper above).

`:mini` (one GPU, about 10 minutes in all; 32 px, Fashion-MNIST imported offline with
`synth-jax data import`): ViT-Ti/4, 1p-frac (1,000 perturbations) and FractalDB-1k (1,000
categories, one weight row and patch seed each, 4 flips) for 3,000 steps of 256 each, then
1,000 fine-tuning steps of 128; scratch gets the same fine-tuning. Not measured here. At this
budget the published 20-point gap shrinks; expect pre-training to beat scratch by a few points.
The report (runs/.../report.md) lists every run's error and the gain of the best pre-training
over scratch; there is one size per family, so no law is fitted (see synthetic_scaling_law.py).
"""

import os

import ml_collections

from synth_jax.config import config_args, load_config_file
from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.scaling.config import law_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def load(relative: str, arg=None):
    """get_config(arg) of another config file of this checkout (one recipe, one place)."""
    path = os.path.join(CONFIGS, relative)
    return load_config_file(f"{path}:{arg}" if arg else path)


def report_config(families=("onepfrac", "fractaldb")):
    return ml_collections.ConfigDict(dict(families=list(families), samples=8, image_size=64))


def mini_pretrain(family: str, **data_overrides):
    """Pre-training at 32 px on one GPU: ViT-Ti/4, 3,000 steps of 256, AdamW with warmup."""
    config = pretrain_config(
        data=data_config(family, image_size=32, points=20_000, **data_overrides),
        image_size=32,
        batch_size=256,
        total_steps=3000,
        log_every_steps=100,
        model=model_config("Ti/4"),
        optim=optim_config(
            name="adamw",
            lr=1e-3,
            weight_decay=0.05,
            warmup_steps=300,
            end_lr=1e-5,
            grad_clip_norm=1.0,
        ),
        augment=augment_config(crop="rrc", crop_scale=(0.25, 1.0), hflip=True, vflip=True),
    )
    config.checkpoint.update(dict(every_steps=500, keep=1))
    return config


def mini_finetune(dataset: str = "fashion_mnist"):
    """Fine-tuning at 32 px: the fashion_mnist.py recipe, 1,000 steps of 128."""
    config = load("finetune/fashion_mnist.py", "cpu")
    config.data.name = dataset
    config.data.num_threads = 8
    config.model = model_config("Ti/4")
    config.batch_size = 128
    config.total_steps = 1000
    config.log_every_steps = 100
    config.checkpoint.every_steps = 500
    config.results_csv = ""  # the sweep appends to WORKDIR/results.csv
    return config


def get_config(arg=None):
    mini = config_args(arg, mini=False).mini
    config = ml_collections.ConfigDict()
    config.name = "scaling_backwards_mini" if mini else "scaling_backwards"
    if mini:
        onepfrac = mini_pretrain("onepfrac", num_classes=1000, search_size=128)
        fractaldb = mini_pretrain("fractaldb", num_classes=1000, instances=1)
        config.finetune = mini_finetune()
    else:
        onepfrac = load("pretrain/onepfrac_vit_tiny.py")
        fractaldb = load("pretrain/fractaldb1k_vit_tiny.py")
        config.finetune = load("finetune/cifar100.py")
        config.finetune.results_csv = ""
    config.pretrain = onepfrac
    # The family and its recipe vary together (each value replaces the whole sub-config); keys
    # on which the two recipes agree stay out of the axis.
    axis = {}
    for key in ("data", "total_epochs", "augment"):
        values = [onepfrac[key], fractaldb[key]]
        values = [v.to_dict() if hasattr(v, "to_dict") else v for v in values]
        if values[0] != values[1]:
            axis[f"pretrain.{key}"] = values
    config.axes = [axis]
    config.scratch = True
    config.law = law_config()
    config.report = report_config()
    return config
