"""Anderson & Farrell (WACV 2022): random sigma-factor systems, colourised in HSV on a smooth
noise background, one random stamp per image, random windows and flips.

    synth-jax render --config configs/data/sigma_random.py --num 64 --out sigma.png

CPU (2 shared cores): the 1,000 systems are drawn in under a second and checked on the device
(every one rendered once); with the grid, about 25 s of CPU time (54 s wall on a busy machine).
224 px, 100k points per image. `:rejection` uses the rejection sampler (uniform on
the sigma constraint surface) instead of the sequential one.
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config


def get_config(arg=None):
    config = data_config("sigma")
    if config_args(arg, rejection=False).rejection:
        config.sigma_sampler = "rejection"
    return config
