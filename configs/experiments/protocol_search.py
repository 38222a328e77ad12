"""Protocol search at laptop scale: where does pre-training help on handwritten digits?

    synth-jax protocol-search --config configs/experiments/protocol_search.py \\
        --workdir runs/protocol_search
    synth-jax protocol-search --config configs/experiments/protocol_search.py:quick \\
        --workdir runs/protocol_quick                       # plumbing only (CI)
    synth-jax protocol-search --config configs/experiments/protocol_search.py:wide \\
        --workdir runs/protocol_wide                        # k = 1, 5, 10, 50, all; 5 sources

Downstream: scikit-learn's digits 5-9 (the demo's split), k labelled images per class, 30 a class
of the training split held out for validation. Sources: scratch; digits 0-4 (real images of
disjoint classes, meant as the positive control: they do not transfer at this scale, and the
control that passes, never-labelled digits 5-9, is `digits_5_9`: docs/protocol_search.md);
FractalDB and 1p-frac (100 categories, gray, 16 px). `:wide`: fine-tuning only, k = 1, 5, 10,
50 and all, sources digits 0-4, FractalDB, 1p-frac, RCDB and dead leaves (dead leaves: 100
images, one a class).
ConvNet-16 at 16 px, AdamW lr 3e-3, batch 64; fine-tuning 100 steps; pre-training 50 or 500
steps (10x apart), one pre-training per source and length (seed 0); seeds 0-3 per cell, paired
with the scratch cell of the same mode and k. The results are in docs/protocol_search.md.
Hardware: 2-core x86_64 CPU (shared), JAX 0.10.2; runtime: see docs/protocol_search.md.
"""

import ml_collections

from synth_jax.config import config_args


def get_config(arg=None):
    args = config_args(arg, quick=False, wide=False)
    quick = args.quick
    config = ml_collections.ConfigDict()
    config.recipe = ml_collections.ConfigDict(
        dict(
            model="ConvNet-16",
            image_size=16,
            steps=20 if quick else 100,
            batch_size=64,
            lr=3e-3,
            weight_decay=0.05,
            warmup_steps=10,
            shift=0,
        )
    )
    config.pretrain = ml_collections.ConfigDict(
        dict(categories=20 if quick else 100, per_category=10)
    )
    config.sources = (
        ["digits_0_4", "fractaldb"] if quick else ["digits_0_4", "fractaldb", "onepfrac"]
    )
    config.pretrain_steps = [20] if quick else [50, 500]
    config.modes = ["finetune"] if quick else ["finetune", "probe"]
    config.shots = [5]
    config.seeds = [0, 1] if quick else [0, 1, 2, 3]
    if args.wide:  # fine-tuning only (the probe lost everywhere above), every k, more families
        config.sources = ["digits_0_4", "fractaldb", "onepfrac", "rcdb", "dead_leaves"]
        config.modes = ["finetune"]
        config.shots = [1, 5, 10, 50, 0]
    return config
