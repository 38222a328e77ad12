"""FractalDB-21k pre-training of ViT-Large/16 with the parameters and optimiser state split
over the chips (FSDP) and each block recomputed in the backward pass (remat "minimal": keep the
matrix products, recompute norms, activations and softmax): 21,000 categories, batch 4,096.

    synth-jax compile --config configs/pretrain/fractaldb21k_vit_large_fsdp.py --topology v5p-128
    synth-jax pretrain --config configs/pretrain/fractaldb21k_vit_large_fsdp.py --workdir DIR

Slice: a TPU v5p-128 (64 chips: fsdp 64). Compiled for it with the command above (2026-12-06,
JAX 0.10.2, libtpu 0.0.42.1, 21:17 on a loaded 2-core CPU; BENCHMARKS.md, "compiled, not
run"): fits, 16.33 GiB of the chip's 95 GiB (temporaries 16.05 GiB; parameters + optimiser
state 0.06 GiB per chip); collectives 1.61 GB per chip per step, all weight-sized (largest
f32[1024,21000], the head), no activation; 1.51 PFLOP of model FLOPs per step, roofline
>= 51.2 ms per step (compute-bound; HBM >= 12.5 ms), <= 79,900 images/s. (Left to the
partitioner, FSDP all-reduced activations of the whole global batch and it did not fit:
546.75 GiB over; the step now gathers each weight where it is used.) Expected runtime: not
measured (no TPU was run): 90 epochs of 21M images at the roofline is >= 6.6 h.
Variants: `:short` runs 1 epoch.
"""

import ml_collections

from synth_jax.config import sibling
from synth_jax.models import model_config


def get_config(arg=None):
    # the ViT-B/16 21k recipe (fractaldb21k_vit_base.py) at ViT-L size: the model (with remat),
    # the batch, the learning rate and an FSDP mesh change; data, schedule and augmentation stay
    config = sibling(__file__, "fractaldb21k_vit_base.py").get_config(arg)
    config.batch_size = 4096
    config.model = model_config("L/16", drop_path=0.1, dtype="bfloat16", remat="minimal")
    config.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, model=1))
    config.optim.lr = 5e-4
    return config
