"""Bridged transfer: stage 1 fine-tunes on synthetic images of the target classes with mixup,
stage 2 re-initialises the head and fine-tunes on the real data ("bridged transfer++").

    synth-jax finetune --config configs/finetune/bridged.py --workdir runs/bridged_c10 \
        --config.init_from=runs/onepfrac_vit_tiny --config.bridged.folder=generated_c10
    synth-jax finetune --config configs/finetune/bridged.py:cpu --workdir runs/bridged_cpu \
        --config.init_from=runs/cpu_tiny

The synthetic images are the user's input: an image folder `generated_c10/train/<class>/*.png`
(classes in the real dataset's label order; imported once into WORKDIR/synthetic_tfds) or a
prepared TFDS dataset (`--config.bridged.name=NAME`). Each stage appends its row to the results
table (modes bridged_stage1 and bridged), both evaluated on the real test split.
Default (one GPU): CIFAR-10 at 224 px, ViT-Ti/16, 2,000 stage-1 steps then 10 epochs; an hour
or two. `:cpu` (laptop, 2 cores): a plumbing check that needs no generated images: stage 1 on 2%
of Fashion-MNIST's own training images standing in for generated ones (100 steps), stage 2 200
steps of real data; a few minutes. Neither measured here.
"""

from synth_jax.config import config_args
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.transfer.finetune import finetune_config


def get_config(arg=None):
    cpu = config_args(arg, cpu=False).cpu
    config = finetune_config(mode="bridged")
    config.data.name = "fashion_mnist" if cpu else "cifar10"
    config.data.num_threads = 2 if cpu else 8
    config.image_size = 32 if cpu else 224
    config.model = model_config("Nano/4" if cpu else "Ti/16")
    config.batch_size = 64 if cpu else 128
    config.total_steps = 200 if cpu else 0
    config.total_epochs = 0.0 if cpu else 10.0
    config.log_every_steps = 50
    config.optim = optim_config(
        name="adamw",
        lr=1e-3 if cpu else 3e-4,
        weight_decay=0.1,
        warmup_steps=20 if cpu else 500,
        end_lr=1e-6,
        grad_clip_norm=1.0,
    )
    config.augment = augment_config(crop="rrc", crop_scale=(0.35, 1.0), hflip=not cpu)
    config.bridged.total_steps = 100 if cpu else 2000
    config.bridged.mixup = 0.8
    config.bridged.reinit_head = True
    if cpu:
        config.bridged.name = "fashion_mnist"
        config.bridged.split = "train[:2%]"
    config.checkpoint.every_steps = 100 if cpu else 1000
    config.eval_batch_size = 256
    config.results_csv = "runs/results.csv"
    return config
