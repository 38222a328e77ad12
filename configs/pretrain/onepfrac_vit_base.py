"""1p-frac pre-training (Nakamura et al., ECCV 2024) of ViT-Base/16 at 224 px: one fractal's
1,000 perturbations (sigma 3.5, Delta 0.1), the ViT-Ti recipe (onepfrac_vit_tiny.py) scaled to
the base model and a batch of 2,048 over a slice.

    synth-jax compile --config configs/pretrain/onepfrac_vit_base.py --topology v5p-64
    synth-jax pretrain --config configs/pretrain/onepfrac_vit_base.py --workdir gs://b/runs/1p_b

Slice: a TPU v5p-64 (32 chips, 64 images per chip, data-parallel). Compiled for it with the
command above (2026-11-30, JAX 0.10.2, libtpu 0.0.42.1; BENCHMARKS.md, "compiled, not run"):
train step 12.95 GiB per chip of 95 GiB (fits), collectives only the gradients' all-reduce
(161 MB per chip per step, no image), 215 TFLOP per step, roofline >= 26.7 ms per step
(HBM-bound), <= 76,800 images/s. Expected runtime: not measured (no TPU was run).
Variants: `:short` runs 1/100 of the samples.
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config


def get_config(arg=None):
    short = config_args(arg, short=False).short
    config = pretrain_config(
        data=data_config("onepfrac", num_classes=1000, image_size=224, sigma=3.5, delta=0.1),
        image_size=224,
        batch_size=2048,
        total_epochs=800.0 if short else 80_000.0,
        log_every_steps=100,
        model=model_config("B/16", drop_path=0.1, dtype="bfloat16"),
    )
    config.optim = optim_config(
        name="adamw", lr=2e-3, weight_decay=0.05, warmup_epochs=5.0, end_lr=1e-5
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
