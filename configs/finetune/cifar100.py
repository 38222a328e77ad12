"""Full fine-tuning on CIFAR-100 (50,000 training images, 100 classes, 32 px): the benchmark of
the 1p-frac paper (ViT-Tiny: scratch 64.2%, FractalDB-1k 81.6%, 1p-frac 84.2% top-1).

    synth-jax data import cifar100 --from cifar-100-python --data_dir ~/tensorflow_datasets
    synth-jax finetune --config configs/finetune/cifar100.py --workdir runs/ft_c100 \
        --config.init_from=runs/onepfrac_vit_tiny
    synth-jax finetune --config configs/finetune/cifar100.py:cpu --workdir runs/ft_c100_cpu \
        --config.init_from=runs/cpu_tiny

Same recipe and hardware notes as cifar10.py (ViT-Ti/16 at 224 px, SGD, 100 epochs; several hours
on one H100; not measured here). `:cpu`: ViT-Nano/4 at 32 px, 300 steps, several minutes (not
measured here).
"""

from synth_jax.config import sibling


def get_config(arg=None):
    # One recipe for both CIFARs: cifar10.py next to this file.
    return sibling(__file__, "cifar10.py").get_config(arg, name="cifar100")
