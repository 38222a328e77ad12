"""VisualAtom and RCDB pre-training (Takashima et al., CVPR 2023; Kataoka et al., CVPR 2022): the
DeiT-style recipe of both papers, images rendered inside the step from configs/data/<name>.py.
ViT-Tiny/16 at 224 px, AdamW lr 1e-3, wd 0.05, cosine; label smoothing 0.1, mixup 0.8, cutmix
1.0, random erasing 0.25, no flips, random-resized crops (0.08-1), mean = std = 0.5.

    synth-jax pretrain --config configs/pretrain/contours_vit.py:visualatom --workdir runs/va1k
    synth-jax pretrain --config configs/pretrain/contours_vit.py:rcdb,21k,base --workdir runs/rc21k

Arguments (comma-separated): the family `visualatom` (the default) or `rcdb`; `21k` (21,000
categories, batch 8,192, 90 epochs; lr stays 1e-3, as both papers state); `base` (ViT-B/16,
drop-path 0.1 as for ViT-T: the model of the 21k headline numbers).
1k: batch 256, 300 epochs (RCDB-1k's published recipe; VisualAtom's 1k epoch count is not
public, so the same is used); warm-up 5k iterations (VisualAtom's scripts) for both.
Hardware: one H100/H200 for 1k (GPU); a multi-host slice for 21k. Expected runtime: 1k is 300M
images; at ViT-T's ~7.5 GFLOP a forward-backward image that is days on one GPU (an estimate from
FLOPs, not a measurement); the renderer's own cost is in BENCHMARKS.md (CPU: 7-20 images/s at
224 px; GPU not yet measured). Published (fine-tuned ViT-T, average of C10/C100/Cars/Flowers/
VOC12/P30/IN100): VisualAtom-1k 89.1, RCDB-1k 87.6 (FractalDB-1k 87.1, scratch 62.6); ImageNet-1k
top-1 ViT-T / ViT-B: VisualAtom-1k 74.2 / 82.3, VisualAtom-21k 73.8 / 82.7, RCDB-21k 73.1 / 82.4
(ImageNet-21k 74.1 / 81.8). Differences: no RandAugment (m9 is not implemented in synth_jax),
bilinear instead of bicubic crops. A CPU-sized run of either family: configs/pretrain/
cpu_tiny_family.py.
"""

from synth_jax.config import config_args, config_variant, sibling
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config

DATA = {"visualatom": "visualatom{}.py", "rcdb": "rcdb{}.py"}
OPTIONS = ("21k", "base")


def get_config(arg=None):
    args = config_args(arg, **dict.fromkeys((*DATA, *OPTIONS), False))
    family = config_variant(",".join(f for f in DATA if args[f]), *DATA) or "visualatom"
    large = args["21k"]
    data_file = DATA[family].format("21k" if large else "1k")
    data = sibling(__file__, f"../data/{data_file}").get_config()
    model = "B/16" if args.base else "Ti/16"
    config = pretrain_config(
        data=data,
        image_size=224,
        batch_size=8192 if large else 256,
        total_epochs=90.0 if large else 300.0,
        log_every_steps=100,
        model=model_config(model, drop_path=0.1, dtype="bfloat16"),
    )
    config.data.image_size = 224
    config.optim = optim_config(
        name="adamw", lr=1e-3, weight_decay=0.05, warmup_steps=5000, end_lr=1e-5
    )
    config.augment = augment_config(
        crop="rrc",
        crop_scale=(0.08, 1.0),
        random_erasing=0.25,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
    )
    config.checkpoint.every_steps = 5000
    return config
