"""2D-OFDB-21k (Nakamura et al., ICCV 2023): 21,000 FractalDB categories, one fixed 362 px image
each (21,000 images); see configs/data/ofdb_1k.py for the images.

    synth-jax render --config configs/data/ofdb_21k.py --num 16 --out ofdb21k.png

The category search (21,000 classes, 100k points at 512 px, fill >= 0.2) is the slow part: 21x
the 1k search (CPU, 2 cores: hours; one H100/H200: minutes, estimated from the 1k search, not
measured): build it once with --config.table_path=ofdb21k.npz. Published (Table 3, ImageNet-1k
fine-tuned top-1): ViT-T 73.8, ViT-B 82.2 (ImageNet-21k: 74.1 / 81.8), 1,088 GPU-hours.
Variants: `:public_row` as in ofdb_1k.py.
"""

from synth_jax.fractals import data_config


def get_config(arg=None):
    return data_config("ofdb", num_classes=21_000, first_weights_row=arg == "public_row")
