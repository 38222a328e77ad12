"""1p-frac's sigma-factor of the base fractal (Nakamura et al., ECCV 2024): sigma in {3.5, 5, 6}.

    synth-jax sweep --config configs/experiments/sigma_sweep.py --workdir runs/sigma \
        --config.finetune.data.data_dir=~/tensorflow_datasets
    synth-jax sweep --config configs/experiments/sigma_sweep.py:mini --workdir runs/sigma_mini \
        --config.finetune.data.data_dir=runs/tfds          # Fashion-MNIST imported offline

Default: the published recipe (configs/pretrain/onepfrac_vit_tiny.py, ViT-Ti/16 at 224 px, 80M
samples, Delta 0.1) for each sigma, fine-tuned on CIFAR-100 (configs/finetune/cifar100.py), plus
a from-scratch run. Hardware: a TPU v4-32 or 8 GPUs, days (estimate).
Published CIFAR-100 top-1: sigma 3.5: 84.2, 5.0: 82.2, 6.0: 81.3 (smaller sigma: a more compact,
more textured fractal transfers better).
`:mini`: the 32 px one-GPU recipe of scaling_backwards.py:mini per sigma; about 12 minutes on
one GPU (estimate). No law is fitted (sigma is not a size): the report lists each run's error.
"""

from synth_jax.config import sibling

SIGMAS = [3.5, 5.0, 6.0]


def get_config(arg=None):
    module = sibling(__file__, "scaling_backwards.py")
    config = module.get_config(arg)
    config.name = "sigma_sweep_mini" if arg == "mini" else "sigma_sweep"
    # With N = 2 maps sigma cannot exceed 6 (each map's s1 + 2 s2 <= 3): sigma 6 gets no jitter.
    config.axes = [{"pretrain.data.sigma": SIGMAS, "pretrain.data.sigma_jitter": [0.1, 0.1, 0.0]}]
    config.report.families = ["onepfrac"]
    return config
