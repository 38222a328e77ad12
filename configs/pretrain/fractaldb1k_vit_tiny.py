"""FractalDB-1k pre-training of ViT-Tiny/16 (DeiT recipe of the FractalDB ViT follow-up):
1,000 categories x 1,000 instances (25 weight rows x 10 patch seeds x 4 flips), 300 epochs.

    synth-jax pretrain --config configs/pretrain/fractaldb1k_vit_tiny.py --workdir runs/fdb1k_ti

Hardware: one H100/H200 or a TPU v4-8; more devices split the batch (`--config.mesh.data=-1`).
Expected runtime: about a day on one GPU (300M samples; an estimate, not a measurement). The
category search (1,000 systems with fill rate >= 0.2) runs once on the host, a few minutes.
Expected result (published): fine-tuned top-1 81.6% on CIFAR-100 (1p-frac paper, Table 5).
No RandAugment here; no horizontal flip, as in the recipe (the data has flips by index).
Variants: `:short` runs 3 epochs. Pre-training methods (combine with `:short`): `:simclr`
pre-trains contrastively (SimCLR at temperature 0.2, its own views, no mixing; the labels
unused) and `:mae` as a masked autoencoder (75% masking, a 4-block, 256-wide decoder), for
FractalDB with SimCLR vs supervised and MAE ViT-Ti on FractalDB:

    synth-jax pretrain --config configs/pretrain/fractaldb1k_vit_tiny.py:simclr --workdir runs/fdb_s
    synth-jax pretrain --config configs/pretrain/fractaldb1k_vit_tiny.py:mae --workdir runs/fdb_m

Same hardware; SimCLR's step sees two views (about twice the time), MAE's encoder a quarter of
the patches (less time). No published numbers for these on FractalDB.
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.objectives import objective_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config


def get_config(arg=None):
    args = config_args(arg, short=False, simclr=False, mae=False)
    short = args.short
    config = pretrain_config(
        data=data_config("fractaldb", num_classes=1000, image_size=224, flip="index"),
        image_size=224,
        batch_size=1024,
        total_epochs=3.0 if short else 300.0,
        log_every_steps=100,
        model=model_config("Ti/16", drop_path=0.1, dtype="bfloat16"),
    )
    config.optim = optim_config(
        name="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=10.0, end_lr=1e-5
    )
    config.augment = augment_config(
        crop="rrc",
        crop_scale=(0.08, 1.0),
        hflip=False,
        random_erasing=0.25,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
    )
    config.checkpoint.every_steps = 5000
    if args.simclr or args.mae:
        config.augment = augment_config(crop="resize")  # the objective makes its own views
        config.model.drop_path = 0.0
    if args.simclr:
        config.objective = objective_config("simclr", temperature=0.2)
    elif args.mae:
        config.objective = objective_config(
            "mae", decoder_width=256, decoder_depth=4, decoder_heads=8
        )
        config.optim.update(dict(lr=1.5e-4 * config.batch_size / 256, b2=0.95))  # MAE's
    return config
