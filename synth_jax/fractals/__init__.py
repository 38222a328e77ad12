"""The fractal engine: formula-driven image families rendered on the accelerator.

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
