"""2D-OFDB-1k pre-training (Nakamura et al., ICCV 2023): ViT-Tiny/16 at 224 px on ONE fixed image
per class (1,000 images), 80,000 epochs (about 312k steps of 256), AdamW lr 1e-3, wd 0.05,
warmup 5 epochs, cosine, drop-path 0.1, and the per-sample augmentation that replaces instances:
random-resized crops (scale 0.08-1), horizontal and vertical flips, random erasing p 0.5, mixup
0.8 / cutmix 1.0, label smoothing 0.1, mean = std = 0.5.

    synth-jax pretrain --config configs/pretrain/ofdb_vit_tiny.py --workdir runs/ofdb1k

Hardware: one H100/H200 (or a TPU v4-8). Expected runtime: several hours (80M samples x ~7.5
GFLOP; an estimate from FLOPs, not a measurement; the class images are re-rendered every step,
see BENCHMARKS.md for their cost). Expected result (paper, Table 2, fine-tuned ViT-T): C10 96.9,
C100 84.0, Cars 84.5, Flowers 97.1, VOC12 79.9, P30 79.9, IN100 88.0 (average 87.2).
Differences: no RandAugment (rand-m9-mstd0.5-inc1 is not implemented in synth_jax; the paper's
other augmentations are all here), bilinear instead of bicubic crops, and the paper's "random
pattern / texture" augmentations are not in its public code, so not here either.
"First weights row": the accepted search fractal is rendered (`--config.data.first_weights_row
=true` renders the public renderer's a x 0.2 version instead;
see synth_jax/fractals/families/ofdb.py).
Variants: `:21k` (21,000 classes, batch 1,024, lr 5e-4, 15,238 epochs = 300k steps: Table 3,
ViT-T 73.8 / ViT-B 82.2 on ImageNet-1k); `:short` 1/100 of the 1k run; `:tiny` a CPU-sized run
that the tests use (4 classes, 32 px, a 2-block ViT, 60 steps, lighter crops and erasing, no
mixup / cutmix: the loss falls from ln 4 = 1.39 to ~1.15; about a minute on 2 busy cores).
"""

from synth_jax.config import config_variant
from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config


def get_config(arg=None):
    arg = config_variant(arg, "21k", "short", "tiny")
    config = pretrain_config(
        data=data_config("ofdb", num_classes=21_000 if arg == "21k" else 1000),
        image_size=224,
        batch_size=1024 if arg == "21k" else 256,
        total_epochs={"21k": 15_238.0, "short": 800.0}.get(arg, 80_000.0),
        log_every_steps=100,
        model=model_config("Ti/16", drop_path=0.1, dtype="bfloat16"),
    )
    config.optim = optim_config(
        name="adamw",
        lr=5e-4 if arg == "21k" else 1e-3,
        weight_decay=0.05,
        warmup_epochs=5.0,
        end_lr=1e-5,
    )
    config.augment = augment_config(
        crop="rrc",
        crop_scale=(0.08, 1.0),
        hflip=True,
        vflip=True,
        random_erasing=0.5,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    config.checkpoint.every_steps = 5000
    if arg == "tiny":
        config.data.update(
            dict(
                num_classes=4,
                image_size=32,
                points=4096,
                chains=128,
                burn_in=16,
                pad=2,
                search_points=4096,
                search_size=64,
                fill_threshold=0.05,
            )
        )
        config.image_size = 32
        config.batch_size = 32
        config.total_epochs = 0.0
        config.total_steps = 60
        config.log_every_steps = 1
        config.model = model_config("mu/4")
        config.optim = optim_config(name="adamw", lr=3e-3, weight_decay=0.05, warmup_steps=3)
        # Mixup / cutmix off: with them the per-batch loss of 60 steps is too noisy to show.
        config.augment.update(
            dict(crop_scale=(0.35, 1.0), random_erasing=0.25, mixup=0.0, cutmix=0.0)
        )
        config.checkpoint.every_steps = 60
    return config
