"""Supervised pre-training on a real TFDS dataset: the baseline every synthetic source is
compared with (same model, same trainer, same fine-tuning afterwards; only the data differs).

    synth-jax data import cifar10 --from cifar-10-batches-py --data_dir ~/tensorflow_datasets
    synth-jax pretrain --config configs/pretrain/real_supervised.py --workdir runs/real_cifar10 \
        --config.data.name=cifar10
    synth-jax pretrain --config configs/pretrain/real_supervised.py:cpu --workdir runs/real_fmnist

Default (one GPU): ViT-Ti/4 at 32 px, 100 epochs of batch 256, AdamW 1e-3, wd 0.05, cosine, RRC
and flips: an hour or two on one GPU for CIFAR-10's 50,000 images (estimated from FLOPs, not
measured). `:cpu` (laptop, 2 cores): the `Nano/4` ViT of cpu_tiny.py on Fashion-MNIST (import it
first: `synth-jax data import fashion_mnist --from /usr/share/datasets/fashion-mnist`), 300 steps of
64 images, a few minutes; the training loss falls from ln(10) = 2.30.
"""

from synth_jax.data.pipeline import tfds_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config


def get_config(arg=None):
    cpu = arg == "cpu"
    config = pretrain_config(
        data=tfds_config(name="fashion_mnist" if cpu else "cifar10", num_threads=2 if cpu else 8),
        image_size=32,
        batch_size=64 if cpu else 256,
        total_steps=300 if cpu else 0,
        total_epochs=0.0 if cpu else 100.0,
        log_every_steps=10 if cpu else 100,
        model=model_config("Nano/4" if cpu else "Ti/4"),
    )
    config.optim = optim_config(
        name="adamw",
        lr=1e-3,
        weight_decay=0.05,
        warmup_steps=20 if cpu else 2000,
        end_lr=1e-5,
        grad_clip_norm=1.0,
    )
    # Fashion-MNIST items have a canonical orientation: no flips there.
    config.augment = augment_config(crop="rrc", crop_scale=(0.6, 1.0), hflip=not cpu)
    config.checkpoint.update(dict(every_steps=100 if cpu else 1000, keep=2))
    return config
