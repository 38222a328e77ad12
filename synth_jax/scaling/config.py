"""The scaling-law settings of a sweep's report and of `synth-jax fit-law`, defined once.

    config.law = law_config(group=["model", "dataset", "mode", "pretrain_family"], target=0.2)

Keys:
    name       law name (see laws.py)
    x, y       results columns: the size and the error
    group      results columns: one curve (and one comparison with scratch) per value
    fix        {parameter: value} held fixed (e.g. {"D": 0.48}, Mikami et al.'s setup)
    bootstrap  refits for the intervals (0: none)
    resample   bootstrap scheme: auto, case, seed, residual or wild (see bootstrap.py)
    ci         interval level, for the law's parameters and the comparisons
    holdout    largest sizes held out for the extrapolation check (0: no check)
    target     planner target error; 0 asks for 10% less error than the best run
    seed       the bootstrap's random seed
"""

from __future__ import annotations

import ml_collections

from synth_jax.errors import UsageError

DEFAULTS = dict(
    name="mikami",
    x="pretrain_images",
    y="top1_error",
    group=["model", "dataset", "mode"],
    fix={},
    bootstrap=200,
    resample="auto",
    ci=0.95,
    holdout=1,
    target=0.0,
    seed=0,
)


def law_config(**overrides) -> ml_collections.ConfigDict:
    """The default law settings with `overrides` applied (unknown keys are refused)."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"law config has no key {unknown[0]!r}; its keys: {', '.join(DEFAULTS)}")
    values = {**DEFAULTS, **overrides}
    values["group"] = list(values["group"])
    values["fix"] = dict(values["fix"])
    return ml_collections.ConfigDict(values)
