"""The synthetic-to-real scaling law (Mikami et al., 2021/2022): fine-tuning error against the
number of unique synthetic pre-training images, err(n) = D n^-alpha + C, fitted with bootstrap
intervals, checked by extrapolation and asked how many images a target error needs.

    synth-jax sweep --config configs/experiments/synthetic_scaling_law.py --workdir runs/law \
        --config.finetune.data.data_dir=~/tensorflow_datasets
    synth-jax sweep --config configs/experiments/synthetic_scaling_law.py:mini \
        --workdir runs/law_mini --config.finetune.data.data_dir=runs/tfds    # Fashion-MNIST
    synth-jax fit-law runs/law/results.csv --law mikami --x pretrain_images --y top1_error

Default: FractalDB categories C in {10, 32, 100, 316, 1000} x 1,000 instances (10k..1M unique
images, Mikami et al.'s range is 1k..1.28M), ViT-Ti/16 at 224 px, the same number of images seen
for every size (300 epochs of FractalDB-1k = 300M samples), fine-tuned on CIFAR-100; two
fine-tuning seeds per size for the bootstrap. Hardware: a TPU v4-32 or 8 GPUs, days (estimate).
Published: their released analysis fixes D = 0.48 and finds alpha in [0.1, 1.5], C > 0 (a
transfer gap that more synthetic data cannot remove); expect the same shape: error falling as a
power law towards a floor, with wide intervals on alpha when D is free (Mikami et al., 2021/2022).
`:mini`: 1p-frac at 32 px with 16, 64, 256 and 1,000 perturbation categories (= unique images),
the one-GPU recipe of scaling_backwards.py:mini, Fashion-MNIST, two seeds; about 40 minutes on one
GPU (estimate).
"""

from synth_jax.config import config_args, sibling


def get_config(arg=None):
    mini = config_args(arg, mini=False).mini
    module = sibling(__file__, "scaling_backwards.py")
    config = module.get_config(arg)
    config.name = "synthetic_scaling_law_mini" if mini else "synthetic_scaling_law"
    if mini:
        sizes_axis = {"pretrain.data.num_classes": [16, 64, 256, 1000]}
    else:
        config.pretrain = module.load("pretrain/fractaldb1k_vit_tiny.py")
        classes = [10, 32, 100, 316, 1000]
        # The same images seen at every size: epochs scale inversely with the dataset.
        sizes_axis = {
            "pretrain.data.num_classes": classes,
            "pretrain.total_epochs": [300.0 * 1000 / c for c in classes],
        }
    config.finetune.seeds = (0, 1)
    config.axes = [sizes_axis]
    config.report.families = ["onepfrac"] if mini else ["fractaldb"]
    return config
