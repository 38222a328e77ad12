"""Mixed-source pre-training: ViT-Tiny/16 at 224 px on configs/data/mixture.py (FractalDB-1k
0.5, sigma-factor systems 0.25, 2D-OFDB-1k 0.25: 3,000 disjoint classes), every image drawn on
the device from (seed, index), DeiT-style recipe: AdamW lr 1e-3, wd 0.05, warmup 5 epochs,
cosine, drop-path 0.1, random-resized crops, random erasing 0.25, mixup 0.8 / cutmix 1.0,
label smoothing 0.1, 150 epochs of the mixture's 2.0M-image epoch (about 300M samples, as 300
epochs of FractalDB-1k).

    synth-jax pretrain --config configs/pretrain/mixture_vit_tiny.py --workdir runs/mixture

Hardware: one H100/H200 or more. Expected runtime: about a day on one H100 (300M samples x ~7.5
GFLOP; an estimate from FLOPs, not a measurement). Expected result: none published (no public
project mixes families); compare its `synth-jax finetune` numbers with each component's own
pre-training (FractalDB-1k ViT-T averages 87.1 over the seven VisualAtom-paper tasks, OFDB-1k 87.2).
Variants: `:multi` uses the `:multi` mixture (multi_instance + OFDB, multi-hot labels and the
weighted binary cross-entropy); `:tiny` a CPU-sized run that the tests use (sigma 3 classes +
OFDB 2 classes, 32 px, a 2-block ViT, 60 steps: the loss falls from ln 5 = 1.61 to ~0.93; about
a minute on 2 busy cores); `:tiny_multi` the same with multi_instance in place of sigma.
"""

from synth_jax.config import config_variant, sibling
from synth_jax.fractals import data_config
from synth_jax.fractals.families.mixture import mixture_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config

TINY = dict(image_size=32, points=2048, chains=128, burn_in=16)


def tiny_data(multi: bool):
    ofdb = data_config(
        "ofdb",
        num_classes=2,
        pad=2,
        search_points=4096,
        search_size=64,
        fill_threshold=0.05,
        seed=1,
        **TINY,
    )
    if multi:
        other = data_config("multi_instance", num_classes=3, images_per_category=256, **TINY)
    else:
        other = data_config("sigma", num_classes=3, colour="gray", background="black", **TINY)
    name = "multi" if multi else "sigma"
    return mixture_config({name: other, "ofdb": ofdb}, {name: 0.75, "ofdb": 0.25}, period=4)


def get_config(arg=None):
    arg = config_variant(arg, "multi", "tiny", "tiny_multi")
    mixture = sibling(__file__, "../data/mixture.py")
    config = pretrain_config(
        data=mixture.get_config("multi" if arg == "multi" else None),
        image_size=224,
        batch_size=256,
        total_epochs=150.0,
        log_every_steps=100,
        model=model_config("Ti/16", drop_path=0.1, dtype="bfloat16"),
    )
    config.optim = optim_config(
        name="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=5.0, end_lr=1e-5
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
    if arg in ("tiny", "tiny_multi"):
        config.data = tiny_data(arg == "tiny_multi")
        config.image_size = 32
        config.batch_size = 32
        config.total_epochs = 0.0
        config.total_steps = 60
        config.log_every_steps = 1
        config.model = model_config("mu/4")
        config.optim = optim_config(name="adamw", lr=3e-3, weight_decay=0.05, warmup_steps=3)
        config.augment = augment_config(crop="resize")
        config.checkpoint.every_steps = 60
    return config
