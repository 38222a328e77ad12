"""1p-frac's perturbation width Delta (Nakamura et al., ECCV 2024, Table 2): Delta in 0.001..0.2.

    synth-jax sweep --config configs/experiments/delta_sweep.py --workdir runs/delta \
        --config.finetune.data.data_dir=~/tensorflow_datasets
    synth-jax sweep --config configs/experiments/delta_sweep.py:mini --workdir runs/delta_mini \
        --config.finetune.data.data_dir=runs/tfds          # Fashion-MNIST imported offline

Default: the published recipe (configs/pretrain/onepfrac_vit_tiny.py, ViT-Ti/16 at 224 px, 80M
samples per Delta) fine-tuned on CIFAR-100 (configs/finetune/cifar100.py), Delta in {0.001, 0.01,
0.05, 0.1, 0.2} plus a from-scratch run. Hardware: a TPU v4-32 or 8 GPUs, days (estimate).
Published CIFAR-100 top-1: Delta 0.001: 1.2, 0.01: 19.9, 0.05: 83.0, 0.1: 84.2, 0.2: 83.4 (too
small a Delta makes the categories indistinguishable and pre-training collapses).
`:mini`: the 32 px, one-GPU recipe of scaling_backwards.py:mini (3,000 pre-training steps,
1,000 fine-tuning steps on Fashion-MNIST) per Delta; about 20 minutes on one GPU (estimate).
The report lists each Delta's error (the cell ids name it); Delta is not a size, so no law is
fitted.
"""

from synth_jax.config import sibling

DELTAS = [0.001, 0.01, 0.05, 0.1, 0.2]


def get_config(arg=None):
    config = sibling(__file__, "scaling_backwards.py").get_config(arg)
    config.name = "delta_sweep_mini" if arg == "mini" else "delta_sweep"
    config.axes = [{"pretrain.data.delta": DELTAS}]
    config.report.families = ["onepfrac"]
    return config
