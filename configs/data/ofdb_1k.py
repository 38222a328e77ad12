"""2D-OFDB-1k (Nakamura et al., ICCV 2023): 1,000 FractalDB categories, ONE fixed 362 px image
each (200k points, 3x3 masked blocks whose zero cells overwrite, grey 127); the per-sample
augmentation of the pre-training config replaces FractalDB's instances.

    synth-jax render --config configs/data/ofdb_1k.py --num 16 --out ofdb.png

The category search (100k points at 512 px, fill >= 0.2) is the fractaldb family's: CPU, 2
shared cores, about 4 minutes for 1,000 classes, as FractalDB-1k's (set
--config.table_path=ofdb1k.npz to build it once). `synth-jax bench render --config
configs/data/ofdb_1k.py --config.num_classes=64` measured 23 images/s on busy cores
(BENCHMARKS.md); the class images are re-rendered at every step, not stored.
Published (ViT-Tiny, Table 2, fine-tuned C10 / C100 / Cars / Flowers /
VOC12 / P30 / IN100): 96.9 / 84.0 / 84.5 / 97.1 / 79.9 / 79.9 / 88.0, average 87.2.
Variants: `:public_row` renders what the public renderer draws (its weights file's first row:
parameter a x 0.2) instead of the accepted search fractal (the default; see ofdb.py).
"""

from synth_jax.fractals import data_config


def get_config(arg=None):
    return data_config("ofdb", num_classes=1000, first_weights_row=arg == "public_row")
