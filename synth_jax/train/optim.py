"""Optimisers, learning-rate schedules, weight-decay masks, clipping and freezing (optax).

`config.optim` keys:
    name            "adamw", "sgd" (with momentum) or "lars" (You et al. 2017, as SimCLR uses it:
                    momentum, weight decay and the trust ratio on the wd_mask parameters)
    lr              peak learning rate
    weight_decay    decoupled for AdamW; added to the gradient (L2) for SGD, as in torch
    wd_mask         "kernels" (matrices and convolutions only, no norms, biases, position
                    embeddings or class token; DeiT/timm), "all" or "none"
    b1, b2          AdamW moments;  momentum, nesterov: SGD
    schedule        "cosine" (to end_lr), "step" (x decay_factor at each of decay_epochs) or
                    "constant"; all after a linear warmup of warmup_steps (or warmup_epochs)
    grad_clip_norm  clip the global gradient norm (0: off)
    accum_steps     gradient accumulation: the global batch is split into this many micro-batches
    trainable       regex over parameter paths ("head/.*" for a linear probe); "" trains all
"""

from __future__ import annotations

import re

import jax
import ml_collections
import optax

from synth_jax.config import check, check_choice
from synth_jax.errors import UsageError
from synth_jax.models.adapt import param_path


def optim_config(**overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(
        dict(
            name="adamw",
            lr=1e-3,
            weight_decay=0.05,
            wd_mask="kernels",
            b1=0.9,
            b2=0.999,
            momentum=0.9,
            nesterov=False,
            schedule="cosine",
            warmup_steps=0,
            warmup_epochs=0.0,
            end_lr=1e-5,
            decay_epochs=(),
            decay_factor=0.1,
            grad_clip_norm=0.0,
            accum_steps=1,
            trainable="",
        )
    )
    config.update(overrides)
    return config


OPTIM_KEYS = tuple(optim_config().keys())


def weight_decay_mask(params, kind: str):
    """True where weight decay applies."""

    def decays(path, x):
        if kind == "all":
            return True
        if kind == "none":
            return False
        name = param_path(path)
        return x.ndim > 1 and not re.search(r"(^|/)(posemb|cls)$", name)

    return jax.tree_util.tree_map_with_path(decays, params)


def trainable_mask(params, pattern: str):
    """True for parameters that train; all of them when `pattern` is empty."""
    regex = re.compile(pattern) if pattern else None
    return jax.tree_util.tree_map_with_path(
        lambda path, _: regex is None or bool(regex.fullmatch(param_path(path))), params
    )


def learning_rate_schedule(config, total_steps: int, steps_per_epoch: float):
    """step (int) -> learning rate, linear warmup then the configured decay."""
    warmup = int(config.warmup_steps or round(config.warmup_epochs * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    peak = config.lr
    if config.schedule == "cosine":
        decay = optax.cosine_decay_schedule(
            peak, max(total_steps - warmup, 1), alpha=config.end_lr / peak if peak else 0.0
        )
    elif config.schedule == "step":
        boundaries = {
            int(round(e * steps_per_epoch)) - warmup: config.decay_factor
            for e in config.decay_epochs
        }
        decay = optax.piecewise_constant_schedule(peak, boundaries)
    else:
        decay = optax.constant_schedule(peak)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def make_optimizer(config, params, total_steps: int, steps_per_epoch: float):
    """Returns (optax transformation, schedule). `params` fixes the masks' tree structure."""
    schedule = learning_rate_schedule(config, total_steps, steps_per_epoch)
    mask = weight_decay_mask(params, config.wd_mask)
    parts = []
    if config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    if config.name == "adamw":
        parts.append(
            optax.adamw(
                schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay, mask=mask
            )
        )
    elif config.name == "lars":
        parts.append(
            optax.lars(
                schedule,
                weight_decay=config.weight_decay,
                weight_decay_mask=mask,
                trust_ratio_mask=mask,
                momentum=config.momentum,
                nesterov=config.nesterov,
            )
        )
    else:
        if config.weight_decay:
            parts.append(optax.add_decayed_weights(config.weight_decay, mask=mask))
        parts.append(optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov))
    tx = optax.chain(*parts)
    if config.trainable:
        labels = jax.tree.map(
            lambda t: "train" if t else "freeze", trainable_mask(params, config.trainable)
        )
        tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
    return tx, schedule


def check_optim_config(config) -> None:
    """Raises UsageError naming the bad `optim.*` key."""
    unknown = sorted(set(config.keys()) - set(OPTIM_KEYS))
    if unknown:
        raise UsageError(
            f"optim.{unknown[0]} is not an optimiser option; known: {', '.join(OPTIM_KEYS)}"
        )
    check_choice(config, "name", ("adamw", "sgd", "lars"), "optim.")
    check_choice(config, "schedule", ("cosine", "step", "constant"), "optim.")
    check_choice(config, "wd_mask", ("kernels", "all", "none"), "optim.")
    check(config, "lr", lambda v: v > 0, "a positive number", "optim.")
    check(
        config, "accum_steps", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1", "optim."
    )
    if config.trainable:
        try:
            re.compile(config.trainable)
        except re.error as e:
            raise UsageError(
                f"optim.trainable={config.trainable!r}: not a regular expression ({e})"
            ) from None
