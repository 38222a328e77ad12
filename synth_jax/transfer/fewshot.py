"""Which training examples a fine-tune sees: k per class (few-shot) or a fraction of the set.

Both draws are seeded and exact: `k_per_class` returns exactly k distinct examples of every class
(without replacement), `fraction_subset` a class-stratified share of the examples. The same seed
gives the same indices on every machine (numpy's PCG64). Repeats over seeds are summarised by
`mean_std`.
"""

from __future__ import annotations

import math

import numpy as np

from synth_jax.errors import UsageError


def k_per_class(
    labels: np.ndarray, k: int, seed: int, num_classes: int | None = None
) -> np.ndarray:
    """Indices (int64[k * C], sorted) of k examples per class drawn without replacement.

    labels: int[N] class of each training example. A class with fewer than k examples is an
    error that names it (a silent shortfall would make "k-shot" mean different things).
    """
    labels = np.asarray(labels)
    if k < 1:
        raise UsageError(f"shots={k}: the number of examples per class must be >= 1")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < k:
            raise UsageError(
                f"shots={k}: class {c} has only {len(members)} training examples; use shots <= "
                f"{len(members)}"
            )
        chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def fraction_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices (int64, sorted) of a class-stratified `fraction` of the examples, at least one per
    class present: round(fraction * n_c) from each class c, drawn without replacement."""
    labels = np.asarray(labels)
    if not 0.0 < fraction <= 1.0:
        raise UsageError(f"fraction={fraction}: a share of the training set in (0, 1]")
    if fraction == 1.0:
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = max(1, int(math.floor(fraction * len(members) + 0.5)))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) over repeats."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
