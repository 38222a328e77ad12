"""The cpu_tiny recipe (configs/pretrain/cpu_tiny.py: a 6-block, 96-wide ViT "Nano/4" at 32 px,
AdamW, 300 steps of 64 images) on another formula family, scaled to a laptop CPU (the same
config, built from cpu_tiny.py, with its data swapped):

    synth-jax pretrain --config configs/pretrain/cpu_tiny_family.py:visualatom --workdir runs/va
    synth-jax pretrain --config configs/pretrain/cpu_tiny_family.py:rcdb,mu --workdir runs/rc

Families: visualatom (the default), rcdb (4 categories of 1,000 images; up to 40 orbits of
50-200 vertices on a 128-pixel canvas, so that a CPU renders a batch in a fraction of a second),
dead_leaves (8 exemplar categories, one image each) and spectrum (4 categories of 1,000 images
sharing slopes and colours, fresh phases). `,mu` swaps in a 2-block, 32-wide ViT (the CI
tests' model).
Hardware: a laptop CPU. Runtime: the tests (tests/test_families_train.py: mu, 20-40 steps of 32
images) take about 30 s of CPU time per family (1-2 minutes wall on 2 busy cores), compilation
included; measured losses: visualatom and rcdb ln 4 = 1.39 -> ~1.05 by step 40, spectrum
1.39 -> 0.77 and dead_leaves ln 8 = 2.08 -> 1.35 by step 20. Rendering speed on the CPU
(32 px, mu): about 60-100 images/s for the orbit families, 200 for spectrum, 20 for dead
leaves (each step renders its batch).
"""

from synth_jax.config import config_args, config_variant, sibling
from synth_jax.fractals import data_config

ORBITS = dict(
    image_size=32,
    canvas_size=128,
    stroke_samples=1 << 14,
    min_vertices=50,
    max_vertices=200,
    max_orbits=40,
)
DATA = {
    "visualatom": dict(ORBITS, num_classes=4),
    "rcdb": dict(ORBITS, min_vertices=3, num_classes=4),
    "dead_leaves": dict(image_size=32, num_classes=8),
    "spectrum": dict(image_size=32, num_classes=4, images_per_category=1000),
}


def get_config(arg=None):
    args = config_args(arg, mu=False, **dict.fromkeys(DATA, False))
    family = config_variant(",".join(f for f in DATA if args[f]), *DATA) or "visualatom"
    config = sibling(__file__, "cpu_tiny.py").get_config("mu" if args.mu else None)
    config.data = data_config(family, **DATA[family])
    return config
