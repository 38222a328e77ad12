"""FractalDB-21k pre-training of ViT-Large/16 with the parameters and optimiser state split
over the chips (FSDP) and each block recomputed in the backward pass (remat "minimal": keep the
matrix products, recompute norms, activations and softmax): 21,000 categories, batch 4,096.

    synth-jax compile --config configs/pretrain/fractaldb21k_vit_large_fsdp.py --topology v5p-128
    synth-jax pretrain --config configs/pretrain/fractaldb21k_vit_large_fsdp.py --workdir DIR

Slice: a TPU v5p-128 (64 chips: fsdp 64). Compiled for it with the command above (2026-11-30,
JAX 0.10.2, libtpu 0.0.42.1, 5.0 min on a 2-core CPU; BENCHMARKS.md, "compiled, not run"): fits,
12.96 GiB of the chip's 95 GiB (temporaries 12.73 GiB; parameters + optimiser state 0.06 GiB per
chip); collectives 1.69 GB per chip per step, all weight-sized (largest f32[1024,21000], the
head), no activation; 1.51 PFLOP of model FLOPs per step, roofline >= 51.2 ms per step (compute-
bound), <= 79,900 images/s. (Before each block's activations were pinned to the batch axes, the
partitioner all-reduced activations of the whole global batch and it did not fit: 546.75 GiB
over.) Expected runtime: not measured (no TPU was run): 90 epochs of 21M images at the roofline
is >= 6.6 h.
Variants: `:short` runs 1 epoch.
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
        data=data_config("fractaldb", num_classes=21_000, image_size=224, flip="index"),
        image_size=224,
        batch_size=4096,
        total_epochs=1.0 if short else 90.0,
        log_every_steps=100,
        model=model_config("L/16", drop_path=0.1, dtype="bfloat16", remat="minimal"),
        mesh=dict(data=1, fsdp=-1, model=1),
    )
    config.optim = optim_config(
        name="adamw", lr=5e-4, weight_decay=0.05, warmup_epochs=5.0, end_lr=1e-5
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
    config.checkpoint.every_steps = 2000
    return config
