"""1p-frac pre-training (Nakamura et al., ECCV 2024) of ViT-Base/16 at 224 px: one fractal's
1,000 perturbations (sigma 3.5, Delta 0.1), the ViT-Ti recipe (onepfrac_vit_tiny.py) scaled to
the base model and a batch of 2,048 over a slice.

    synth-jax compile --config configs/pretrain/onepfrac_vit_base.py --topology v5p-64
    synth-jax pretrain --config configs/pretrain/onepfrac_vit_base.py --workdir gs://b/runs/1p_b

Slice: a TPU v5p-64 (32 chips, 64 images per chip, data-parallel; each chip renders its images
8 at a time, `render_chunk`). Compiled for it with the command above (2026-12-06, JAX 0.10.2,
libtpu 0.0.42.1, 12:00 on a loaded 2-core CPU; BENCHMARKS.md, "compiled, not run"): train step
12.97 GiB per chip of 95 GiB (fits), collectives only the gradients' all-reduce (161 MB per chip
per step, no image), 215 TFLOP per step, roofline >= 14.6 ms per step (compute-bound; HBM
>= 12.2 ms: 29.9 GB per chip for the model, 3.9 GB for rendering, 61 MB per image), <= 140,000
images/s. Expected runtime: not measured (no TPU was run).
Variants: `:short` runs 1/100 of the samples.
"""

from synth_jax.config import sibling
from synth_jax.models import model_config


def get_config(arg=None):
    # the ViT-Ti recipe (configs/pretrain/onepfrac_vit_tiny.py) at ViT-B size: the model, the
    # batch and the learning rate change; data, schedule and augmentation are the same
    config = sibling(__file__, "onepfrac_vit_tiny.py").get_config(arg)
    config.batch_size = 2048
    config.model = model_config("B/16", drop_path=0.1, dtype="bfloat16")
    config.optim.lr = 2e-3
    config.render_chunk = 8  # each chip renders its 64 images 8 at a time: compiles faster
    return config
