"""One real image: 1,000 categories of random affine perturbations (Delta 0.2) of one grayscale
photograph (scikit-learn's china.jpg), warped on the device.

    synth-jax render --config configs/data/one_image.py --num 64 --out one_image.png

CPU (2 shared cores): about 8 s. `:flower` uses scikit-learn's flower.jpg; `--config.photo=PATH`
any image file.
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config


def get_config(arg=None):
    config = data_config("one_image")
    if config_args(arg, flower=False).flower:
        config.photo = "flower"
    return config
