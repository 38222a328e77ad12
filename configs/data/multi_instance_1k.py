"""Anderson & Farrell's multi-instance fractal images (WACV 2022): 1,000 sigma-factor classes,
1-5 fractals per 224 px image (graded 112 px renders of 100k points, random dihedral, fresh
8-bit HSV colour, side U(0.15, 0.6) x 224, anywhere up to half off the canvas, later on top) on
a colourised diamond-square background, a 3x3 Gaussian blur with p = 0.5; multi-hot labels,
trained with the weighted binary cross-entropy of their `multilabel.py`.

    synth-jax render --config configs/data/multi_instance_1k.py --num 16 --out multi.png

An epoch is 1,000 x 1,000 images (A&F's 1M images per epoch, generated on the fly). CPU, 2
shared cores: the table (1,000 systems, each rendered once to check it) takes about a minute
and `synth-jax bench render --config configs/data/multi_instance_1k.py` measured 11-15 images/s
on the busy cores (about half the sigma family's rate; BENCHMARKS.md).
Published (ResNet-50, 90 epochs, fine-tuned; CUB / Cars / Dogs / Aircraft /
CIFAR-100 top-1, GlaS mIoU): 73.5 / 89.0 / 69.4 / 81.4 / 81.0 / 63.7 (the single-fractal
"multi-class" images: 69.3 / 88.1 / 67.6 / 80.6 / 80.4 / 63.5).
Differences: see synth_jax/fractals/families/multi_instance.py (classes drawn uniformly
instead of from a cache of recent renders; stamps never empty). Maps per system:
2..4 (the README's example; the range of A&F's shipped systems is unknown).
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config


def get_config(arg=None):
    config_args(arg)  # no variants: refuses any argument
    return data_config("multi_instance", num_classes=1000)
