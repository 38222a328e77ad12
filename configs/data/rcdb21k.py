"""RCDB-21k (Kataoka et al., CVPR 2022): 21,000 categories x 1,000 instances = 21M images with
the RCDB-1k ranges (the authors' exe_rcdb_21k.sh uses the same renderer arguments).

    synth-jax render --config configs/data/rcdb21k.py --num 64 --out rcdb21k.png

Hardware: accelerators (the paper: 90 epochs, batch 8,192). Runtime: the table builds in about
2 s on a CPU; images are rendered inside the step (CPU: ~20 images/s at 224 px, BENCHMARKS.md;
GPU not yet measured). Published ImageNet-1k top-1 after RCDB-21k pre-training: 73.1 (ViT-Ti;
the VisualAtom paper reports 72.8) and 82.4 (ViT-B); ImageNet-21k 74.1 / 81.8, scratch 72.6 /
79.8. RCDB-50k: 73.4 / 82.6 (`--config.num_classes=50000`).
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config


def get_config(arg=None):
    config_args(arg)  # no arguments: refuse any
    return data_config("rcdb", num_classes=21_000, images_per_category=1000)
