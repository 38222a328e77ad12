"""Dead leaves or 1/f-spectrum noise pre-trained contrastively, the setting of the paper that
introduced them as pre-training data (Baradad et al., 2021, "Learning to see by looking at
noise"; they train MoCo v2, here SimCLR through the same trainer).

    synth-jax pretrain --config configs/pretrain/noise_simclr.py --workdir runs/dl_simclr
    synth-jax pretrain --config configs/pretrain/noise_simclr.py:spectrum,large --workdir runs/sp
    synth-jax pretrain --config configs/pretrain/noise_simclr.py:laptop --workdir runs/dl_laptop

Default (the paper's small scale): dead leaves (mixed shapes), 105,000 images at 128 px,
ResNet-50, 200 epochs at batch 256, LARS. `:spectrum` takes the 1/f-spectrum family; `:large`
the published large scale (1.3M images at 256 px). Hardware: one GPU (H100-class): about a day
for the small scale, about two weeks for the large one on one GPU (a TPU v4-32 in about a day);
estimates, not measurements. `:laptop`: a 6-block, 96-wide ViT at 32 px on 2,000 images, 300
steps of 64, a laptop CPU, about 15 minutes (estimated from cpu_tiny.py:simclr's measured
120 steps, 14 minutes on 2 busy cores). Expected (qualitative, Baradad et al., 2021): the
linear probe of either noise's features is well above random initialisation and below real
images; not reproduced here.
"""

from synth_jax.config import config_args
from synth_jax.fractals import data_config
from synth_jax.models import model_config
from synth_jax.train.augment import augment_config
from synth_jax.train.objectives import objective_config
from synth_jax.train.optim import optim_config
from synth_jax.train.pretrain import pretrain_config


def get_config(arg=None):
    args = config_args(arg, spectrum=False, large=False, laptop=False)
    family = "spectrum" if args.spectrum else "dead_leaves"
    if args.laptop:
        size, images, model = 32, 2_000, model_config("Nano/4")
    elif args.large:
        size, images, model = 256, 1_300_000, model_config("ResNet-50", dtype="bfloat16")
    else:
        size, images, model = 128, 105_000, model_config("ResNet-50", dtype="bfloat16")
    data = data_config(family, image_size=size, num_classes=images)  # one image per class
    config = pretrain_config(
        data=data,
        image_size=size,
        batch_size=64 if args.laptop else 256,
        total_steps=300 if args.laptop else 0,
        total_epochs=0.0 if args.laptop else 200.0,
        log_every_steps=10 if args.laptop else 100,
        model=model,
        augment=augment_config(crop="resize"),  # the views are SimCLR's own
        objective=objective_config("simclr", temperature=0.2, proj_hidden=2048, proj_dim=128),
    )
    if args.laptop:
        config.objective.update(dict(proj_hidden=256, proj_dim=64, crop_scale=(0.2, 1.0)))
        config.optim = optim_config(name="adamw", lr=1e-3, weight_decay=0.05, warmup_steps=20)
    else:
        # SimCLR's LARS: lr 0.3 x batch / 256, weight decay 1e-6, 10 warmup epochs.
        config.optim = optim_config(
            name="lars", lr=0.3, weight_decay=1e-6, momentum=0.9, warmup_epochs=10.0, end_lr=0.0
        )
    config.checkpoint.every_steps = 100 if args.laptop else 5000
    return config
