"""VisualAtom-21k (Takashima et al., CVPR 2023): 21,000 categories x 1,000 instances = 21M
images (the paper: 1/14 of JFT-300M), with the VisualAtom-1k ranges (the authors ship only the
1k script; whether 21k used the same ranges is unknown).

    synth-jax render --config configs/data/visualatom21k.py --num 64 --out visualatom21k.png

Hardware: pre-training at this scale needs accelerators (the paper: ViT-B, batch 8,192,
90 epochs). Runtime: the 21,000-category table builds in about 5 s on a CPU; the images are
rendered inside the training step (CPU: ~7 images/s at 224 px, BENCHMARKS.md; GPU: not yet
measured). Published (ViT-Base pre-trained on VisualAtom-21k, fine-tuned): C10 97.7, C100 86.7,
Cars 89.2, Flowers 99.0, VOC12 82.4, P30 81.6, IN100 91.3, average 89.7; ImageNet-1k top-1 82.7
at 224 px and 83.7 at 384 px (ImageNet-21k: 81.8 / 83.0; JFT-300M 84.2 at 384 px).
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config


def get_config(arg=None):
    config_args(arg)  # no arguments: refuse any
    return data_config("visualatom", num_classes=21_000, images_per_category=1000)
