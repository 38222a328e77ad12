"""Linear probe: the pre-trained backbone frozen, its features computed once (cached in the
workdir), an L2-regularised multinomial logistic regression fitted on them by L-BFGS.

    synth-jax finetune --config configs/finetune/linear_probe.py:cpu --workdir runs/probe_fmnist \
        --config.init_from=runs/cpu_tiny
    synth-jax finetune --config configs/finetune/linear_probe.py --workdir runs/probe_c100 \
        --config.init_from=runs/onepfrac_vit_tiny --config.data.name=cifar100

Trying another strength (`--config.linear_probe.l2=1e-3` in a fresh workdir, or after deleting
WORKDIR/result.json) reuses the cached features. `--config.shots=k` probes k examples per class.
`:cpu` (laptop, 2 cores): Fashion-MNIST through ViT-Nano/4 at 32 px (cpu_tiny's model): one pass
over 70,000 images, then the fit. Measured on 2 busy cores with `--config.model.name=mu/4` from
cpu_tiny:mu: 160 s in all, 54.6% top-1 (chance 10%). Default (one GPU): CIFAR-10 at 224 px through
ViT-Ti/16, a few minutes (not measured here).
"""

from synth_jax.config import config_args
from synth_jax.models import model_config
from synth_jax.transfer.finetune import finetune_config


def get_config(arg=None):
    cpu = config_args(arg, cpu=False).cpu
    config = finetune_config(mode="linear_probe")
    config.data.name = "fashion_mnist" if cpu else "cifar10"
    config.data.num_threads = 2 if cpu else 8
    config.image_size = 32 if cpu else 224
    config.model = model_config("Nano/4" if cpu else "Ti/16")
    config.eval_batch_size = 256
    config.linear_probe.l2 = 1e-4
    config.linear_probe.steps = 500
    config.results_csv = "runs/results.csv"
    return config
