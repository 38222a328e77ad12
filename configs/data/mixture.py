"""Mixed sources: each image drawn from a weighted mixture of families, labels kept disjoint
(a capability none of the public projects has). Default: FractalDB-1k (weight 0.5), Anderson &
Farrell's sigma-factor systems (1,000 classes, 0.25) and 2D-OFDB-1k (0.25), all at 224 px:
3,000 classes (components in name order: fractaldb 0-999, ofdb 1000-1999, sigma 2000-2999).
OFDB searches with seed 1: with FractalDB's seed 0 it would find the same 1,000 systems.

    synth-jax render --config configs/data/mixture.py --num 16 --out mixture.png

Each batch holds the weights exactly (blocks of `period` = 8 images: 4 + 2 + 2 slots, placed
by a seeded permutation) and each component renders only its own images (on several devices,
keep batch_size / devices a multiple of 8); see synth_jax/fractals/families/mixture.py. Building the
table is building each component's: the FractalDB and OFDB searches dominate (about 4 minutes
each on 2 CPU cores; see configs/data/fractaldb1k.py, ofdb_1k.py).
Variants: `:multi` mixes multi_instance (1,000 classes) and OFDB-1k 1:1: every label is then
multi-hot over 2,000 classes and the objective the weighted binary cross-entropy.
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config
from synth_jax.fractals.families.mixture import mixture_config


def get_config(arg=None):
    ofdb = data_config("ofdb", num_classes=1000, image_size=224, seed=1)
    if config_args(arg, multi=False).multi:
        multi = data_config("multi_instance", num_classes=1000)
        return mixture_config({"multi": multi, "ofdb": ofdb}, {"multi": 0.5, "ofdb": 0.5}, period=2)
    components = {
        "fractaldb": data_config("fractaldb", num_classes=1000, image_size=224),
        "ofdb": ofdb,
        "sigma": data_config("sigma", num_classes=1000),
    }
    return mixture_config(components, {"fractaldb": 0.5, "ofdb": 0.25, "sigma": 0.25}, period=8)
