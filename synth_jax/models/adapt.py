"""Fitting pre-trained arrays into a freshly built model (big_vision's `load` with `dont_load`).

Build the model for the new task (new classes, new resolution), then copy in every pre-trained
array that it has, except those matching a `dont_load` regex (its classifier, by default), which
keep their fresh values. An array whose shape differs is handed to the model module's `resize`
rule (the ViT resamples a position embedding of another grid); every array that still does not
fit is listed in one error, so a wrong `model.name` is one clear message.
"""

from __future__ import annotations

import re

import jax
import numpy as np

from synth_jax.errors import UsageError


def param_path(path) -> str:
    """'blocks/0/attn/query/kernel' for a key path into a nested params dict."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def flatten(tree) -> dict:
    """{param_path: leaf} of a nested dict of arrays (or shape structs)."""
    return {param_path(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def select_arrays(target, loaded, dont_load=(), resize=None) -> dict[str, np.ndarray]:
    """The pre-trained arrays a model takes: {path: array in the target's dtype}.

    target: the model's arrays (nested dict of arrays or jax.ShapeDtypeStruct); loaded: the
    pre-trained nested dict; dont_load: regexes (full match) of paths to keep fresh;
    resize(path, array, shape) -> array or None: the model's rule for an array of another shape.
    Raises UsageError listing every array of the model that is missing from `loaded` or has a
    shape `resize` cannot fix.
    """
    patterns = [re.compile(p) for p in dont_load]
    have = flatten(loaded)
    chosen, problems = {}, []
    for name, leaf in flatten(target).items():
        if any(p.fullmatch(name) for p in patterns):
            continue
        if name not in have:
            problems.append(f"{name} (not in the checkpoint)")
            continue
        value = np.asarray(have[name])
        want = tuple(leaf.shape)
        if value.shape != want:
            fixed = resize(name, value, want) if resize is not None else None
            if fixed is None or tuple(fixed.shape) != want:
                problems.append(f"{name} (checkpoint {value.shape}, model {want})")
                continue
            value = fixed
        chosen[name] = np.asarray(value).astype(leaf.dtype)
    if problems:
        raise UsageError(
            f"the pre-trained parameters do not fit this model: {'; '.join(problems)}. "
            f"Use the pre-training's model.name and settings, or add the arrays to dont_load"
        )
    return chosen


def merge(tree, chosen: dict):
    """`tree` (nested dict of arrays) with the leaves named in `chosen` replaced."""
    return jax.tree_util.tree_map_with_path(lambda p, x: chosen.get(param_path(p), x), tree)
