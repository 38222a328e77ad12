"""The demo: does formula-driven pre-training help a small ConvNet on handwritten digits?

    synth-jax demo --workdir runs/demo                  # this config
    synth-jax demo --workdir runs/demo_quick --quick    # `:quick`: the plumbing, CI

Hardware: a laptop CPU, 2 cores, offline (the digits ship with scikit-learn). Runtime and the
numbers it gives: docs/experiments.md.

The protocol is the one the protocol search (configs/experiments/protocol_search.py,
docs/protocol_search.md) found with a positive control that passes: digits 5-9 with k labelled
images a class, fine-tuned from scratch, from real digits 0-4 (the positive control) and from
formula-driven images, every source paired with scratch seed by seed. The recipe check trains
the same model on all ten classes, so that a from-scratch recipe that loses to logistic
regression on pixels is caught before any comparison is read.
`:quick`: 2 seeds, 20-step runs; its numbers are not a result.
"""

import os

import ml_collections

from synth_jax.config import config_args, load_config_file

SEARCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protocol_search.py")


def get_config(arg=None):
    quick = config_args(arg, quick=False).quick
    # The protocol search's recipe and pre-training data, one protocol of its grid.
    config = load_config_file(SEARCH + (":quick" if quick else ""))
    config.recipe_check = ml_collections.ConfigDict(
        dict(steps=20 if quick else 200, seeds=[0, 1] if quick else [0, 1, 2])
    )
    config.sources = ["digits_5_9", "digits_0_4", "fractaldb"]
    config.pretrain_steps = [20] if quick else [500]
    config.modes = ["finetune"]
    config.shots = [1]
    config.seeds = [0, 1] if quick else list(range(8))
    return config
