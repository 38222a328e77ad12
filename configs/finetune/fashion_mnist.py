"""Full fine-tuning on Fashion-MNIST (10 classes, 28 px grayscale shown to the model as 32 px RGB).

    synth-jax data import fashion_mnist --from /usr/share/datasets/fashion-mnist \
        --data_dir ~/tensorflow_datasets
    synth-jax finetune --config configs/finetune/fashion_mnist.py:cpu --workdir runs/ft_fmnist \
        --config.init_from=runs/cpu_tiny
    synth-jax finetune --config configs/finetune/fashion_mnist.py:cpu --workdir runs/ft_scratch

`init_from` is a pre-training workdir (here the one of configs/pretrain/cpu_tiny.py, ViT-Nano/4 at
32 px); leave it empty for the from-scratch baseline. `--config.fraction=0.1` fine-tunes on a
class-stratified 10% of the training set (Mikami et al.'s fine-tuning size).

`:cpu` (laptop, 2 cores): ViT-Nano/4 (cpu_tiny's model), 300 steps of 64 images (a third of an
epoch). Measured on 2 busy cores with `--config.model.name=mu/4` (the 2-block ViT of
configs/pretrain/cpu_tiny.py:mu): about 90 s per run, 47.5% top-1 from cpu_tiny:mu, 48.2% from
scratch (chance 10%); Nano/4 is slower and not measured here. Default (one GPU): 10 epochs of batch
128 with the Entezari et al. protocol (AdamW, wd 0.1, cosine, 500 warmup steps); well under an hour
on one GPU (not measured here).
"""

from synth_jax.config import config_args
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.transfer.finetune import finetune_config


def get_config(arg=None):
    cpu = config_args(arg, cpu=False).cpu
    config = finetune_config()
    config.data.name = "fashion_mnist"
    config.data.num_threads = 2 if cpu else 8
    config.image_size = 32
    config.model = model_config("Nano/4" if cpu else "Ti/4")
    config.batch_size = 64 if cpu else 128
    config.total_steps = 300 if cpu else 0
    config.total_epochs = 0.0 if cpu else 10.0
    config.log_every_steps = 50 if cpu else 100
    config.optim = optim_config(
        name="adamw",
        lr=1e-3 if cpu else 3e-4,
        weight_decay=0.1,
        warmup_steps=30 if cpu else 500,
        end_lr=1e-6,
        grad_clip_norm=1.0,
    )
    # No horizontal flip: Fashion-MNIST items have a canonical orientation.
    config.augment = augment_config(crop="rrc", crop_scale=(0.6, 1.0))
    config.checkpoint.every_steps = 100 if cpu else 1000
    config.eval_batch_size = 256
    config.results_csv = "runs/results.csv"
    return config
