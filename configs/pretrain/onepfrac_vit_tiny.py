"""1p-frac pre-training (Nakamura et al., ECCV 2024): ViT-Tiny/16 at 224 px on one fractal's
1,000 perturbations (sigma 3.5, Delta 0.1), 80,000 epochs = 80M samples, the paper's recipe.

    synth-jax pretrain --config configs/pretrain/onepfrac_vit_tiny.py --workdir runs/onepfrac_ti

Hardware: one H100/H200 (or a TPU v4-8). Expected runtime: several hours; an estimate from
FLOPs, not a measurement (80M x ~7.5 GFLOP; measure yours with `synth-jax bench train`).
Expected result (paper): fine-tuned top-1 84.2% on CIFAR-100, 89.0% on ImageNet-100.
Differences from the paper: no RandAugment (the other augmentations are the same), and the
images are rendered on the accelerator inside the step instead of read from disk.
Variants: `:short` runs 1/100 of the samples (800 epochs) for a quick check.
"""

from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config


def get_config(arg=None):
    config = pretrain_config(
        data=data_config("onepfrac", num_classes=1000, image_size=224, sigma=3.5, delta=0.1),
        image_size=224,
        batch_size=256,
        total_epochs=800.0 if arg == "short" else 80_000.0,
        log_every_steps=100,
        model=model_config("Ti/16", drop_path=0.1, dtype="bfloat16"),
    )
    config.optim = optim_config(
        name="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=5.0, end_lr=1e-5
    )
    config.augment = augment_config(
        crop="rrc",
        crop_scale=(0.08, 1.0),
        hflip=True,
        vflip=True,
        color_jitter=0.4,
        random_erasing=0.5,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    config.checkpoint.every_steps = 5000
    return config
