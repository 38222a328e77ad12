"""A few-minute CPU pre-training run: a 6-block, 96-wide ViT ("Nano/4") on 32 px FractalDB-10
(10 categories x 1,000 images), loss visibly falling.

    synth-jax pretrain --config configs/pretrain/cpu_tiny.py --workdir runs/cpu_tiny

Hardware: a laptop CPU. Measured on 2 busy cores: 7 minutes end to end (the category search
~10 s, compilation ~1 minute, 300 steps of 64 images at ~0.8 steps/s); the training loss falls
from ln(10) = 2.30 to about 1.6-1.7 and the per-batch training accuracy reaches about 40%.
Variants: `:mu` swaps in a 2-block, 32-wide ViT (seconds per hundred steps; for smoke tests).
"""

import ml_collections

from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.seed = 0
    # FractalDB recipe at thumbnail size; a coarser category search keeps the table build short.
    config.data = data_config(
        "fractaldb",
        num_classes=10,
        image_size=32,
        points=4096,
        chains=256,
        pad=2,
        flip="index",
        search_size=128,
        search_points=20_000,
    )
    config.image_size = 32
    config.batch_size = 64
    config.total_steps = 300
    config.total_epochs = 0.0
    config.log_every_steps = 10
    config.model = model_config("mu/4" if arg == "mu" else "Nano/4")
    config.optim = optim_config(
        name="adamw", lr=1e-3, weight_decay=0.05, warmup_steps=20, end_lr=1e-5, grad_clip_norm=1.0
    )
    config.augment = augment_config(crop="resize")
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    config.checkpoint = ml_collections.ConfigDict(dict(every_steps=100, keep=2, async_save=True))
    return config
