"""The role of the pre-training source (Entezari et al., 2023): few-shot against full
fine-tuning, for 1p-frac, FractalDB-1k and no pre-training.

    synth-jax sweep --config configs/experiments/fewshot_vs_full.py --workdir runs/fewshot \
        --config.finetune.data.data_dir=~/tensorflow_datasets
    synth-jax sweep --config configs/experiments/fewshot_vs_full.py:mini --workdir runs/fs_mini \
        --config.finetune.data.data_dir=runs/tfds          # Fashion-MNIST imported offline

Grid: the pre-trainings of scaling_backwards.py (its default or `:mini`) x fine-tuning with
k in {1, 5, 10, 20, 100, 200} images per class and with the full training set, three seeds each,
plus the from-scratch cells. Entezari et al.'s protocol: end-to-end fine-tuning, AdamW wd 0.1,
cosine, batch 128 (configs/finetune/fewshot.py). The report fits err(k) = D k^-alpha + C per
pre-training source (x = shots; full fine-tuning rows are listed, not fitted).
Hardware: default on one GPU after the pre-trainings, a few hours (estimate); `:mini` about 40
minutes on one GPU (estimate).
Published (qualitative, Entezari et al., 2023): the source matters most at few shots and less as the
fine-tuning set grows; expect the gap between sources and to scratch to shrink from k = 1 to full.
"""

from synth_jax.config import config_args, sibling

SHOTS = [1, 5, 10, 20, 100, 200]


def get_config(arg=None):
    mini = config_args(arg, mini=False).mini
    module = sibling(__file__, "scaling_backwards.py")
    config = module.get_config(arg)
    config.name = "fewshot_vs_full_mini" if mini else "fewshot_vs_full"
    fewshot = module.load("finetune/fewshot.py", "cpu" if mini else None)
    if mini:
        fewshot.model = config.finetune.model
        fewshot.total_steps = 300
        fewshot.data.num_threads = 8
    else:
        fewshot.data.name = "cifar100"
    fewshot.results_csv = ""
    config.finetune = fewshot
    config.axes = [
        config.axes[0],
        {
            "finetune.mode": ["fewshot"] * len(SHOTS) + ["full"],
            "finetune.shots": SHOTS + [0],
        },
    ]
    config.law.x = "shots"
    config.law.group = ["model", "dataset", "mode", "pretrain_family"]
    return config
