"""FractalDB-1k (Kataoka et al., ACCV 2020): 1,000 searched categories x 1,000 images.

    synth-jax render --config configs/data/fractaldb1k.py --num 64 --out fractaldb.png

CPU (2 shared cores): the category search renders ~7,700 candidates of 100k points at 512 px
(about 13% pass the 0.2 fill rate), about 4 minutes; set --config.table_path=fdb1k.npz to build
the table once and reuse it. Images: 362 px, 200k points, gray 127 per-point
patches, 25 weight rows ("0.4") x 10 instances x 4 flips per category. A quick look:
`--config configs/data/fractaldb1k.py:small` (16 categories, 64 px, seconds).
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config


def get_config(arg=None):
    config = data_config("fractaldb")
    if config_args(arg, small=False).small:
        config.update(
            dict(
                num_classes=16,
                image_size=64,
                points=20_000,
                search_points=20_000,
                search_size=128,
                fill_threshold=0.1,
            )
        )
    return config
