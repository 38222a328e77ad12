"""Few-shot transfer: k training images per class (drawn without replacement, per seed), full
fine-tuning, repeated over three seeds and reported as mean and standard deviation.

    synth-jax finetune --config configs/finetune/fewshot.py:cpu --workdir runs/fewshot10 \
        --config.init_from=runs/cpu_tiny --config.shots=10
    synth-jax finetune --config configs/finetune/fewshot.py --workdir runs/fewshot_c100_5 \
        --config.init_from=runs/onepfrac_vit_tiny --config.data.name=cifar100 --config.shots=5

Entezari et al.'s protocol: k in {1, 5, 10, 20, 100, 200}, AdamW (wd 0.1), cosine, batch 128. The
pre-training source matters most here. Each seed lives in WORKDIR/seed_<s>/ and appends its row
(shots=k) to the results table; WORKDIR/summary.json holds top1_mean / top1_std. `:cpu` (laptop, 2
cores): Fashion-MNIST, ViT-Nano/4 at 32 px (cpu_tiny's model), 10 shots (100 images), 150 steps per
seed; a few minutes for the three seeds. Default (one GPU): CIFAR-10 at 224 px with ViT-Ti/16, 500
steps per seed; about ten minutes per seed. Neither measured here.
"""

from synth_jax.config import config_args
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.transfer.finetune import finetune_config


def get_config(arg=None):
    cpu = config_args(arg, cpu=False).cpu
    config = finetune_config(mode="fewshot", shots=10, seeds=(0, 1, 2))
    config.data.name = "fashion_mnist" if cpu else "cifar10"
    config.data.num_threads = 2 if cpu else 8
    config.image_size = 32 if cpu else 224
    config.model = model_config("Nano/4" if cpu else "Ti/16")
    config.batch_size = 32 if cpu else 128
    config.total_steps = 150 if cpu else 500
    config.log_every_steps = 50
    config.optim = optim_config(
        name="adamw",
        lr=3e-4,
        weight_decay=0.1,
        warmup_steps=15 if cpu else 50,
        end_lr=1e-6,
        grad_clip_norm=1.0,
    )
    config.augment = augment_config(crop="rrc", crop_scale=(0.35, 1.0), hflip=not cpu)
    config.checkpoint.every_steps = 100
    config.eval_batch_size = 256
    config.results_csv = "runs/results.csv"
    return config
