"""1p-frac (Nakamura et al., ECCV 2024): one fractal (sigma 3.5) and 1,000 perturbations of it
(Delta 0.1, multiplicative), one image per category.

    synth-jax render --config configs/data/onepfrac.py --num 64 --out onepfrac.png

CPU (2 cores): building the 1,000 categories (100k points at 512 px each, redrawn while the fill
rate <= 0.05) takes about 30 s, the grid included. Variants: `:additive` uses the
paper's additive perturbation U(-Delta/2, Delta/2).
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config


def get_config(arg=None):
    config = data_config("onepfrac", sigma=3.5, delta=0.1, num_classes=1000)
    if config_args(arg, additive=False).additive:
        config.perturbation = "additive"
    return config
