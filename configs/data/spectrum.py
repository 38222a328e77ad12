"""Spectrum noise ("Learning to See by Looking at Noise", Baradad et al., NeurIPS 2021) at the
paper's small scale: 105,000 images of 128 px of random-phase noise with an anisotropic
1 / (|fx|^ax + |fy|^ay) spectrum (slopes s ~ U(0.5, 3.5), ax, ay = s +- N(0, 1) * 3/60) in a
random colour basis. Each image is its own category (as the paper's generator draws every value
per image); `--config.images_per_category=N` gives categories of N images sharing slopes and
colours, with fresh phases.

    synth-jax render --config configs/data/spectrum.py --num 64 --out spectrum.png

Arguments: `:large` (the large scale: 1.3M images of 256 px).
Hardware: anything. Runtime: no table; 2 shared CPU cores draw ~50 images/s at 128 px (~12 at 256)
(BENCHMARKS.md); GPU not yet measured.
Published (contrastive alignment + uniformity, AlexNet; ImageNet-100 linear top-1 read off a bar
chart, +-0.5): Spectrum ~30.7 (dead leaves shapes ~39.0, real ImageNet-100 ~63). The paper's
large-scale row is a richer model (Spectrum + Colour + WMM, 35.28 on ImageNet-1k), not this one.
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config


def get_config(arg=None):
    large = config_args(arg, large=False).large
    return data_config(
        "spectrum", image_size=256 if large else 128, num_classes=1_300_000 if large else 105_000
    )
