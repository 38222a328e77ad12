"""FractalDB-21k pre-training of ViT-Base/16 at the published large scale (ExFractalDB-21k /
VisualAtom-21k recipes: 21,000 categories, batch 8,192, 90 epochs of 1,000 instances per
category, AdamW 1e-3, warm-up 5 epochs; 128 GPUs in the papers).

    synth-jax compile --config configs/pretrain/fractaldb21k_vit_base.py --topology v5p-128
    synth-jax pretrain --config configs/pretrain/fractaldb21k_vit_base.py --workdir gs://b/runs/x

Slice: a TPU v5p-128 (64 chips, 128 images per chip, data-parallel; each chip renders its
images 8 at a time, `render_chunk`). Compiled for it with the command above (2026-12-06, JAX
0.10.2, libtpu 0.0.42.1, 9:30 on a loaded 2-core CPU; BENCHMARKS.md, "compiled, not run"):
train step 23.93 GiB per chip of 95 GiB (fits; temporaries 22.64 GiB), collectives only the
gradients' all-reduce (222 MB per chip per step, no image), 860 TFLOP per step, roofline
>= 29.3 ms per step (compute-bound; HBM >= 20.6 ms: 42.5 GB per chip for the model, 14.4 GB
for rendering, 112 MB per image at 200k points), <= 280,000 images/s. Expected runtime: not
measured (no TPU was run). The category search of 21,000
systems runs once on the host before the first step (set data.table_path to keep it).
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
        batch_size=8192,
        total_epochs=1.0 if short else 90.0,
        log_every_steps=100,
        model=model_config("B/16", drop_path=0.1, dtype="bfloat16"),
    )
    config.optim = optim_config(
        name="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=5.0, end_lr=1e-5
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
    config.render_chunk = 8  # each chip renders its 128 images 8 at a time: compiles faster
    config.checkpoint.every_steps = 2000
    return config
