"""FractalDB-1k pre-training of ResNet-50, the original recipe (Kataoka et al., ACCV 2020):
SGD lr 0.1, momentum 0.9, wd 1e-4, batch 256, 90 epochs, lr x0.1 at epochs 30 and 60, random
224 px crops of 362 px images, normalised with mean 0.2, std 0.5.

    synth-jax pretrain --config configs/pretrain/fractaldb1k_resnet50.py --workdir runs/fdb1k_r50

Hardware: 8 GPUs or a TPU v4-8 (`--config.mesh.data=-1` uses them all). Expected runtime:
about two days on one H100 (90M samples x ~12 GFLOP; an estimate, not a measurement).
Expected result: the training loss falls through the two lr steps; transfer quality is what
`synth-jax finetune` measures (not yet measured with this code).
Variants: `:short` runs 1 epoch.
"""

from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config


def get_config(arg=None):
    # RandomCrop(224) of 362: a box of fixed area (224/362)^2 and aspect 1, kept at 1:1 scale.
    side = (224 / 362) ** 2
    config = pretrain_config(
        data=data_config(
            "fractaldb", num_classes=1000, image_size=362, points=200_000, flip="index"
        ),
        image_size=224,
        batch_size=256,
        total_epochs=1.0 if arg == "short" else 90.0,
        log_every_steps=100,
        model=model_config("ResNet-50", norm="batch", dtype="bfloat16"),
        augment=augment_config(
            crop="rrc",
            crop_scale=(side, side),
            crop_ratio=(1.0, 1.0),
            mean=(0.2,) * 3,
            std=(0.5,) * 3,
        ),
    )
    config.optim = optim_config(
        name="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        wd_mask="all",
        schedule="step",
        decay_epochs=(30, 60),
        decay_factor=0.1,
    )
    config.checkpoint.every_steps = 5000
    return config
