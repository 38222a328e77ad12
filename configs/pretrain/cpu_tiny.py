"""A few-minute CPU pre-training run: a 6-block, 96-wide ViT ("Nano/4") on 32 px FractalDB-10
(10 categories x 1,000 images), loss visibly falling.

    synth-jax pretrain --config configs/pretrain/cpu_tiny.py --workdir runs/cpu_tiny

Hardware: a laptop CPU. Measured on 2 busy cores: 7 minutes end to end (the category search
~10 s, compilation ~1 minute, 300 steps of 64 images at ~0.8 steps/s); the training loss falls
from ln(10) = 2.30 to about 1.6-1.7 and the per-batch training accuracy reaches about 40%.
Variants (combine them with commas, `:mu,knn`): `:mu` swaps in a 2-block, 32-wide ViT (seconds
per hundred steps; for smoke tests); `:knn` adds a k-NN evaluator on Fashion-MNIST (k = 20,
T = 0.07, 5,000 reference and 1,000 query images from the pre-logit features) every 100 steps,
logged as knn/top1 beside the loss. Import Fashion-MNIST first and point the evaluator at it:

    synth-jax data import fashion_mnist --from /usr/share/datasets/fashion-mnist --data_dir DIR
    synth-jax pretrain --config configs/pretrain/cpu_tiny.py:knn --workdir runs/cpu_tiny_knn \
        --config.evals.knn.data.data_dir=DIR

Measured (2026-11-30, CPU, 2 cores shared with other jobs, load average ~10): the import takes
1 min; the run 24 min (three evaluations of 6,000 images each included). k-NN top-1 on the
1,000 queries (standard error +-0.016): 0.405, 0.403, 0.408 at steps 100, 200, 300, while the
same network at initialisation scores 0.551 (evaluated separately): at this budget the 32 px
FractalDB-10 features transfer to Fashion-MNIST worse than random ones, and do not move
detectably between steps 100 and 300. The loss falls from 2.21 to 1.74 (first and last five
logged steps).

Pre-training methods (synth_jax.train.objectives; combine with `:knn`, not with each other):
`:simclr` pre-trains the same ViT contrastively (SimCLR: two views of each image made on the
device, a 256-wide projection head to 64 dimensions, NT-Xent at temperature 0.2 with the other
126 embeddings of the batch as negatives; the FractalDB labels unused); `:mae` as a masked
autoencoder (75% of the 64 patches hidden, a 2-block, 64-wide decoder, normalised-pixel loss).
Both keep the schedule above; docs/training.md ("Objectives") records what they measured:

    synth-jax pretrain --config configs/pretrain/cpu_tiny.py:simclr,knn \
        --workdir runs/cpu_tiny_simclr --config.evals.knn.data.data_dir=DIR
    synth-jax pretrain --config configs/pretrain/cpu_tiny.py:mae,knn \
        --workdir runs/cpu_tiny_mae --config.evals.knn.data.data_dir=DIR
"""

from synth_jax.config import config_args
from synth_jax.data.pipeline import tfds_config
from synth_jax.errors import UsageError
from synth_jax.evaluators import eval_config
from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.objectives import objective_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config


def get_config(arg=None):
    variants = config_args(arg, mu=False, knn=False, simclr=False, mae=False)
    if variants.simclr and variants.mae:
        raise UsageError("config arguments 'simclr' and 'mae' are alternatives; choose one")
    # FractalDB recipe at thumbnail size; a coarser category search keeps the table build short.
    data = data_config(
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
    config = pretrain_config(
        data=data,
        image_size=32,
        batch_size=64,
        total_steps=300,
        log_every_steps=10,
        model=model_config("mu/4" if variants.mu else "Nano/4"),
        optim=optim_config(
            name="adamw",
            lr=1e-3,
            weight_decay=0.05,
            warmup_steps=20,
            end_lr=1e-5,
            grad_clip_norm=1.0,
        ),
        augment=augment_config(crop="resize"),
    )
    config.checkpoint.update(dict(every_steps=100, keep=2))
    if variants.simclr:
        # The views' augmentations replace the trainer's (which only resizes here).
        config.objective = objective_config(
            "simclr", temperature=0.2, proj_hidden=256, proj_dim=64, crop_scale=(0.2, 1.0)
        )
    if variants.mae:
        config.objective = objective_config(
            "mae", mask_ratio=0.75, decoder_width=64, decoder_depth=2, decoder_heads=4
        )
    if variants.knn:
        fashion = tfds_config(name="fashion_mnist", num_threads=2)
        config.evals.knn = eval_config("knn", every_steps=100, data=fashion)
    return config
