"""Bridged transfer (ICLR 2024 submission, "Is synthetic data useful for transfer learning?"):
stage 1 fine-tunes on synthetic images of the target classes with mixup, stage 2 re-initialises
the head and fine-tunes on the real data; compared with plain fine-tuning from the same start.

    synth-jax sweep --config configs/experiments/bridged.py --workdir runs/bridged \
        --config.finetune.data.data_dir=~/tensorflow_datasets \
        --config.finetune.bridged.folder=generated_c10
    synth-jax sweep --config configs/experiments/bridged.py:mini --workdir runs/bridged_mini \
        --config.finetune.data.data_dir=runs/tfds          # Fashion-MNIST imported offline

Grid: the 1p-frac pre-training of scaling_backwards.py (default or `:mini`) x {bridged, full}
fine-tuning (configs/finetune/bridged.py), and the same two from scratch. The synthetic images are
the user's (a folder `generated_c10/train/<class>/*.png`, about 1,000 per class); `:mini` stands
2% of Fashion-MNIST's own training images in for them (a plumbing check, not the paper's claim).
Hardware: default on one GPU, a few hours after the pre-training (estimate); `:mini` about 15
minutes on one GPU (estimate).
Published: Cars 83.8 -> 91.6, Aircraft +5.5 points, 4-shot gains of 9-13 points on average, with
generated images from a text-to-image model (the submission above).
"""

from synth_jax.config import config_args, sibling


def get_config(arg=None):
    mini = config_args(arg, mini=False).mini
    module = sibling(__file__, "scaling_backwards.py")
    config = module.get_config(arg)
    config.name = "bridged_mini" if mini else "bridged"
    finetune = module.load("finetune/bridged.py", "cpu" if mini else None)
    if mini:
        finetune.model = config.finetune.model
        finetune.data.num_threads = 8
        finetune.total_steps = 1000
        finetune.bridged.total_steps = 300
    finetune.results_csv = ""
    config.finetune = finetune
    config.axes = [{"finetune.mode": ["bridged", "full"]}]
    config.report.families = ["onepfrac"]
    return config
