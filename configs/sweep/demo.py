"""The demo: 1p-frac pre-training at four sizes vs from scratch, on handwritten digits, on a CPU.

    synth-jax demo --workdir runs/demo                    # runs this config, ~5 min
    synth-jax demo --workdir runs/demo_quick --quick      # `:quick`, the CI setting, ~3-5 min

(`synth-jax demo` imports the digits and sets `finetune.data.data_dir`; to run it as a plain
sweep: `synth-jax sweep --config configs/sweep/demo.py --workdir DIR
--config.finetune.data.data_dir=DIR_WITH_THE_IMPORTED_DIGITS`.)

Hardware: a laptop CPU, 2 cores. A 2-block, 32-wide ViT with 4 px patches ("mu/4") is
pre-trained on 1p-frac (one fractal, sigma 3.5, Delta 0.1; Nakamura et al. 2024) with 4, 16, 64
and 256 perturbation categories (= unique images), then fine-tuned end to end on scikit-learn's
handwritten digits (1,797 8x8 images, 10 classes; 1,300 train / 497 test), as is a from-scratch
model with the same recipe. Then the Mikami et al. law err(n) = D n^-alpha + C is fitted to
fine-tuning error against the number of unique pre-training images.

Measured (2026-11-22, CPU, 2 cores shared with other jobs, load average ~2): 5.3 min end to
end (the same command with 200 / 150 steps: 3.6 min). Digits top-1 error after 300 fine-tuning
steps: from scratch 0.131; from 1p-frac with 4, 16, 64, 256 images 0.159, 0.145, 0.121, 0.207.
The best pre-training (64 images) is 1 point better than scratch, within one seed's noise, and
the law does not fit these four points (R^2 0.00; with 200 / 150 steps pre-training was 11
points worse than scratch). The paper's gap (CIFAR-100, ViT-Ti at 224 px, 80M pre-training
samples: 84.2 vs 64.2) needs the scale of configs/experiments/scaling_backwards.py. The demo
shows the method end to end (render, pre-train, transfer, fit, plan), not a published number.
`:quick` (3 sizes, 40 + 40 steps): 3-5 min on 2 busy cores; its accuracies are near chance for
some runs: it checks the plumbing and that a law gets fitted.
"""

import ml_collections

from synth_jax.config import config_args
from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.transfer.finetune import finetune_config

IMAGE_SIZE = 32


def get_config(arg=None):
    quick = config_args(arg, quick=False).quick
    config = ml_collections.ConfigDict()
    config.name = "demo_quick" if quick else "demo"

    pretrain = ml_collections.ConfigDict()
    pretrain.seed = 0
    pretrain.data = data_config(
        "onepfrac",
        num_classes=16,  # swept below
        image_size=IMAGE_SIZE,
        points=2048,
        chains=128,
        pad=2,
        search_points=6400,  # the fill-rate check at 128 px: the table builds in seconds
        search_size=128,
    )
    pretrain.image_size = IMAGE_SIZE
    pretrain.batch_size = 64
    pretrain.total_steps = 40 if quick else 500
    pretrain.total_epochs = 0.0
    pretrain.log_every_steps = 10
    pretrain.model = model_config("mu/4")
    pretrain.optim = optim_config(
        name="adamw", lr=2e-3, weight_decay=0.05, warmup_steps=10, end_lr=1e-5, grad_clip_norm=1.0
    )
    # 1p-frac lives on augmentation: one image per class, seen through random crops and flips.
    pretrain.augment = augment_config(crop="rrc", crop_scale=(0.25, 1.0), hflip=True, vflip=True)
    pretrain.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    pretrain.checkpoint = ml_collections.ConfigDict(dict(every_steps=100, keep=1, async_save=False))
    config.pretrain = pretrain

    finetune = finetune_config()
    finetune.data.name = "sklearn_digits"
    finetune.data.data_dir = ""  # set by `synth-jax demo` to where it imported the digits
    finetune.data.num_threads = 2
    finetune.image_size = IMAGE_SIZE
    finetune.batch_size = 64
    finetune.eval_batch_size = 256
    finetune.total_steps = 40 if quick else 300
    finetune.log_every_steps = 10
    finetune.model = model_config("mu/4")
    finetune.optim = optim_config(
        name="adamw", lr=2e-3, weight_decay=0.05, warmup_steps=10, end_lr=1e-5, grad_clip_norm=1.0
    )
    finetune.augment = augment_config(crop="rrc", crop_scale=(0.6, 1.0))
    finetune.checkpoint = ml_collections.ConfigDict(dict(every_steps=100, keep=1, async_save=False))
    config.finetune = finetune

    sizes = [4, 16, 64] if quick else [4, 16, 64, 256]
    config.axes = [{"pretrain.data.num_classes": sizes}]
    config.scratch = True

    config.law = ml_collections.ConfigDict(
        dict(
            name="mikami",
            x="pretrain_images",
            y="top1_error",
            group=["model", "dataset", "mode"],
            fix={},
            bootstrap=200,
            holdout=1,
            target=0.0,  # 0: ask the planner for 10% less error than the best run
            seed=0,
        )
    )
    config.report = ml_collections.ConfigDict(
        dict(families=["onepfrac", "fractaldb"], samples=8, image_size=64)
    )
    return config
