"""RCDB-1k, the Radial Contour DataBase (Kataoka et al., CVPR 2022): 1,000 categories x 1,000
instances = 1M images of noisy radial contours: V = floor(Exponential(mean 100)) in 3..200
vertices, K ~ U{1..200} contours, noise c ~ U(0, 4) (doubled), line_width ~ U(0, 0.1) per
category; start radius U{0..100} px@512, ovality U(1, 2) and centre per instance; light lines
on black (`--config.invert=false`: the code's original white background).

    synth-jax render --config configs/data/rcdb1k.py --num 64 --out rcdb.png
    synth-jax export --config configs/data/rcdb1k.py --out rcdb1k --format tfds

Hardware: anything; a GPU for pre-training (the paper: 300 epochs, batch 256). Runtime: the
table builds in about 0.1 s; 2 shared CPU cores draw ~20 images/s at 224 px (BENCHMARKS.md);
GPU not yet measured. Published (ViT-Tiny pre-trained on RCDB-1k, fine-tuned): C10 97.0,
C100 82.2, Cars 86.5, Flowers 98.9, VOC12 80.9, P30 79.7, IN100 88.5, average 87.6; COCO
detection AP50/AP/AP75 68.3/47.4/51.9. Variants: `:small` (16 categories, 64 px, 128 canvas),
`:white` (the original white background).
"""

from synth_jax.config import config_variant
from synth_jax.fractals import data_config


def get_config(arg=None):
    variant = config_variant(arg, "small", "white")
    config = data_config("rcdb", num_classes=1000, images_per_category=1000)
    if variant == "small":
        config.update(dict(num_classes=16, image_size=64, canvas_size=128, stroke_samples=1 << 14))
    elif variant == "white":
        config.invert = False
    return config
