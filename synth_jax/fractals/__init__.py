"""Formula-driven image families rendered on the accelerator.

Layout: `engine/` is the device renderer every family draws with (chaos game, rasteriser, image
operations, the orbit engine, noise); `families/` holds the formulas, one module each;
`family.py` is the table of families and their configs, `dataset.py` the epoch an index maps
into; `references/` holds plain sequential NumPy versions the tests (and `bench render`) compare
against, never imported by training.

from synth_jax.fractals import FractalDataset, data_config
ds = FractalDataset(data_config("onepfrac", num_classes=10, image_size=64))
images, labels = jax.jit(ds.render)(0, ds.indices_for_step(0, 0, 32))

`mixture` (mixture.py) draws each image from a weighted mixture of the other families; it
registers itself when this package is imported. A new family is a module registered with
`FAMILIES.register(name, module)`; see synth_jax.fractals.family for what the module defines.
"""

from synth_jax.fractals.dataset import FractalDataset
from synth_jax.fractals.families import mixture  # noqa: F401  (registers the "mixture" family)
from synth_jax.fractals.family import FAMILIES, FamilyTable, build_table, data_config

__all__ = ["FAMILIES", "FamilyTable", "FractalDataset", "build_table", "data_config"]
