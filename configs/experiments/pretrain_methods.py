"""The method axis of the role-of-pre-training-data study (Entezari et al., 2023): supervised,
image-image contrastive (SimCLR, Chen et al., 2020) and masked-image modelling (MAE, He et al.,
2022) pre-training on 1p-frac and FractalDB-1k, each transferred few-shot and in full.

    synth-jax sweep --config configs/experiments/pretrain_methods.py --workdir runs/methods \
        --config.finetune.data.data_dir=~/tensorflow_datasets
    synth-jax sweep --config configs/experiments/pretrain_methods.py:mini --workdir runs/m_mini \
        --config.finetune.data.data_dir=runs/tfds          # Fashion-MNIST imported offline

Grid: fewshot_vs_full.py's (source x {k = 1, 5, 10, 20, 100, 200 per class, full} x three
seeds, plus the from-scratch cells) times the objective of the pre-training (the whole
`pretrain.objective` section per value; SimCLR at temperature 0.2 with its augmentations
replacing the supervised recipe's, MAE with 75% masking and a 4-block, 256-wide decoder).
Results carry `pretrain_method`; the report fits err(k) per source and method.
Hardware: default on one GPU, about three times fewshot_vs_full's pre-training (a few days,
estimate); `:mini` on one GPU, about two hours (estimate), on a laptop CPU far longer.
Expected (qualitative, from the study): the method matters as much as the source at few shots;
no published numbers exist for formula-driven sources under SimCLR or MAE.
"""

from synth_jax.config import config_args, sibling
from synth_jax.train.objectives import objective_config


def get_config(arg=None):
    mini = config_args(arg, mini=False).mini
    config = sibling(__file__, "fewshot_vs_full.py").get_config(arg)
    config.name = "pretrain_methods_mini" if mini else "pretrain_methods"
    methods = [
        objective_config("supervised"),
        objective_config("simclr", temperature=0.2),
        objective_config("mae", decoder_width=256, decoder_depth=4, decoder_heads=8),
    ]
    # SimCLR and MAE make their own views: the supervised recipes' image mixing (the same in
    # both sources' recipes) is off there.
    mixing = {"pretrain.augment.mixup": 0.8, "pretrain.augment.cutmix": 1.0}
    axis = {"pretrain.objective": [m.to_dict() for m in methods]}
    axis.update({key: [value, 0.0, 0.0] for key, value in mixing.items()})
    config.axes = [config.axes[0], axis] + list(config.axes[1:])
    config.law.group = ["model", "dataset", "mode", "pretrain_family", "pretrain_method"]
    return config
