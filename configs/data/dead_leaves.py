"""Dead leaves ("Learning to See by Looking at Noise", Baradad et al., NeurIPS 2021) at the
paper's small scale: 105,000 images of 128 px, shapes of random colours dropped on top of each
other until the image is covered. Each image is its own category (exemplar classes: the
supervised stand-in for the paper's contrastive training; the trainer's augmentations make the
views of an image differ).

    synth-jax render --config configs/data/dead_leaves.py --num 64 --out dead_leaves.png
    synth-jax render --config configs/data/dead_leaves.py:squares --num 64 --out squares.png

Arguments (comma-separated): the shapes `squares`, `oriented` or `mixed` (the default: the
paper's "Shapes"), and `large` (the large scale: 1.3M images of 256 px).
Hardware: anything. Runtime: no table; 2 shared CPU cores draw ~12 images/s at 128 px (~3 at 256)
(BENCHMARKS.md); GPU not yet measured.
Published (contrastive alignment + uniformity, AlexNet, 200 epochs; ImageNet-100 linear top-1
read off a bar chart, +-0.5): squares ~35.2, oriented ~37.5, shapes ~39.0 (real ImageNet-100
~63). Large scale (ResNet-50, MoCo v2): shapes 20.00 on ImageNet-1k linear, 38.34 on
ImageNet-100. synth_jax trains these with its supervised trainer, so its numbers are not the
paper's protocol.
"""

from synth_jax.config import config_args, config_variant
from synth_jax.fractals import data_config


def get_config(arg=None):
    args = config_args(arg, squares=False, oriented=False, mixed=False, large=False)
    shape_args = ",".join(s for s in ("squares", "oriented", "mixed") if args[s])
    large = args.large
    return data_config(
        "dead_leaves",
        shapes=config_variant(shape_args, "squares", "oriented", "mixed") or "mixed",
        image_size=256 if large else 128,
        num_classes=1_300_000 if large else 105_000,
    )
