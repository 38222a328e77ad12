"""Anderson & Farrell's multi-instance pre-training (WACV 2022): ResNet-50 from scratch on
1-5 fractals per image (1,000 sigma-factor classes, multi-hot labels, their weighted binary
cross-entropy), 90 epochs of 1M images, SGD lr 0.1, momentum 0.9, wd 1e-4, batch 256.

    synth-jax pretrain --config configs/pretrain/multi_instance_resnet50.py --workdir runs/multi

Hardware: one H100/H200 or more (`--config.mesh.data=-1` uses them all). Expected runtime:
about two days on one H100 (90M samples x ~12 GFLOP per ResNet-50 training step and image, plus
rendering 5 fractal objects per image; an estimate, not a measurement: see BENCHMARKS.md).
Expected result (paper, fine-tuned ResNet-50): CUB 73.5, Cars 89.0, Dogs 69.4, Aircraft 81.4,
CIFAR-100 81.0 (top-1), GlaS 63.7 mIoU. The logged `accuracy` is top-1-in-positives.
Differences: a cosine schedule after a 1-epoch warmup instead of their one-cycle schedule; the
images are rendered on the device inside the step (their code: numba workers and a cache).
Variants: `:short` runs 1 epoch; `:tiny` a CPU-sized run that the tests use (4 classes, 32 px,
1-2 large grey objects on black, a 2-block ViT, 80 steps: the loss falls from ~1.13 to ~0.96
and the top-1-in-positives rises from ~0.42 to ~0.58; about a minute on 2 busy cores, mostly
compilation).
"""

from synth_jax.config import config_variant
from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config


def get_config(arg=None):
    arg = config_variant(arg, "short", "tiny")
    config = pretrain_config(
        data=data_config("multi_instance", num_classes=1000),
        image_size=224,
        batch_size=256,
        total_epochs=1.0 if arg == "short" else 90.0,
        log_every_steps=100,
        model=model_config("ResNet-50", norm="batch", dtype="bfloat16"),
    )
    config.optim = optim_config(
        name="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        wd_mask="all",
        warmup_epochs=1.0,
        end_lr=1e-4,
    )
    config.augment = augment_config(crop="resize")  # the renderer already flips and places
    config.checkpoint.every_steps = 5000
    if arg == "tiny":
        # Learnable in 80 steps: 1-2 large grey objects on black (measured: with colours,
        # flips, plasma and blur, a 2-block ViT shows no fall in 100 steps at 48 px).
        config.data.update(
            dict(
                num_classes=4,
                image_size=32,
                points=2048,
                chains=128,
                burn_in=16,
                images_per_category=256,
                max_objects=2,
                object_scale=(0.5, 0.9),
                colour="gray",
                background="black",
                flip="none",
                blur=0.0,
            )
        )
        config.image_size = 32
        config.batch_size = 32
        config.total_epochs = 0.0
        config.total_steps = 80
        config.log_every_steps = 1
        config.model = model_config("mu/4")
        config.optim = optim_config(name="adamw", lr=3e-3, weight_decay=0.05, warmup_steps=3)
        config.checkpoint.every_steps = 80
    return config
