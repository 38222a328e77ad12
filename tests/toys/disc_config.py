"""The toy disc family's data config (it registers the family).

PYTHONPATH=tests synth-jax render --config tests/toys/disc_config.py --num 16 --out disc.png
"""

from synth_jax.fractals import FAMILIES, data_config
from toys import disc

FAMILIES.register("disc", disc)


def get_config(arg=None):
    return data_config("disc", num_classes=4, image_size=32)
