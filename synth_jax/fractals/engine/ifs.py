"""Iterated function systems: the parameter layout shared by every family, and their algebra.

A system is an array `params: float[N, 7]` whose rows are maps (a, b, c, d, e, f, p):
x' = a*x + b*y + e, y' = c*x + d*y + f, chosen with probability p. A table of C systems with
different N is padded to `float[C, N_max, 7]` with rows of p = 0, which the chaos game never picks.
"""

from __future__ import annotations

import numpy as np

NUM_COEFFS = 6  # a, b, c, d, e, f
MAX_MAPS = 7


def linear_parts(maps: np.ndarray) -> np.ndarray:
    """maps: float[..., N, >=6] -> A: float[..., N, 2, 2]."""
    maps = np.asarray(maps)
    return np.stack(
        [np.stack([maps[..., 0], maps[..., 1]], -1), np.stack([maps[..., 2], maps[..., 3]], -1)],
        -2,
    )


def probabilities_from_det(maps: np.ndarray) -> np.ndarray:
    """p_i = |det A_i| / sum_j |det A_j| (uniform if all determinants vanish). float[..., N]."""
    maps = np.asarray(maps, np.float64)
    det = np.abs(maps[..., 0] * maps[..., 3] - maps[..., 1] * maps[..., 2])
    total = det.sum(-1, keepdims=True)
    uniform = np.full_like(det, 1.0 / det.shape[-1])
    return np.where(total > 0, det / np.where(total > 0, total, 1.0), uniform)


def with_probabilities(maps: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray:
    """Appends p (from |det| unless given) to float[..., N, 6] maps -> float[..., N, 7]."""
    maps = np.asarray(maps, np.float64)
    probs = probabilities_from_det(maps) if probs is None else np.asarray(probs, np.float64)
    return np.concatenate([maps[..., :NUM_COEFFS], probs[..., None]], -1)


def pad_maps(params: np.ndarray, num_maps: int = MAX_MAPS) -> np.ndarray:
    """Pads float[N, 7] with p = 0 rows (never chosen) to float[num_maps, 7]."""
    out = np.zeros((num_maps, 7), np.float64)
    out[: len(params)] = params
    return out


def fixed_point(maps: np.ndarray) -> np.ndarray:
    """(I - A)^-1 b for each map: float[..., N, 2] (NaN where I - A is singular)."""
    maps = np.asarray(maps, np.float64)
    a, b, c, d, e, f = (maps[..., k] for k in range(6))
    det = (1 - a) * (1 - d) - b * c
    with np.errstate(divide="ignore", invalid="ignore"):
        x = ((1 - d) * e + b * f) / det
        y = (c * e + (1 - a) * f) / det
    return np.stack([x, y], -1)


def singular_values(maps: np.ndarray) -> np.ndarray:
    """Singular values of each A_i, largest first: float[..., N, 2]."""
    return np.linalg.svd(linear_parts(maps), compute_uv=False)


def is_contractive(maps: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray:
    """True where every used map (p > 0) has largest singular value < 1. bool[...]."""
    maps = np.asarray(maps)
    used = np.ones(maps.shape[:-1], bool) if probs is None else np.asarray(probs) > 0
    return np.all((singular_values(maps)[..., 0] < 1.0) | ~used, axis=-1)
