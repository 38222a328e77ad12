"""1p-frac (Nakamura et al., ECCV 2024): one fractal and C local perturbations of it."""

from __future__ import annotations

import numpy as np

from synth_jax.fractals import ifs, render, sigma


def sample_base_system(rng: np.random.Generator, sigma_centre: float, jitter: float, num_maps=2):
    """The base system: N maps from the sigma-factor sampler, sigma ~ U(s0 - jitter, s0 + jitter).
    float[N, 7] (p from the unperturbed maps)."""
    s = float(rng.uniform(sigma_centre - jitter, sigma_centre + jitter))
    return sigma.sample_sigma_system(rng, num_maps, s)


def perturb(rng: np.random.Generator, base: np.ndarray, count: int, delta: float, mode: str):
    """`count` perturbed copies float[count, N, 7] of base float[N, 7]: each of a..f of each map
    times an independent U(1 - delta, 1 + delta) ("multiplicative", the released code) or plus
    U(-delta / 2, delta / 2) ("additive", the paper's formula). p stays the base's."""
    shape = (count, *base[:, :6].shape)
    out = np.repeat(base[None], count, 0).astype(np.float64)
    if mode == "multiplicative":
        out[..., :6] *= rng.uniform(1 - delta, 1 + delta, shape)
    elif mode == "additive":
        out[..., :6] += rng.uniform(-delta / 2, delta / 2, shape)
    else:
        raise ValueError(f"perturbation={mode!r}: expected multiplicative or additive")
    return out


def build_categories(
    rng: np.random.Generator,
    num_classes: int,
    sigma_centre: float,
    jitter: float,
    delta: float,
    mode: str,
    fill_threshold: float,
    search_spec: render.RenderSpec,
    seed: int,
    max_rounds: int = 1000,
):
    """Base system plus C perturbations, redrawing each one whose per-point-patch render fills
    no more than `fill_threshold` (1p-frac: 0.05) or is degenerate.
    Returns (params float[C, 7, 7], base float[N, 7], stats)."""
    base = sample_base_system(rng, sigma_centre, jitter)
    params = perturb(rng, base, num_classes, delta, mode)
    todo = np.arange(num_classes)
    stats = {"redrawn": 0}
    for round_ in range(max_rounds):
        fill, degenerate = render.batch_statistics(params[todo], seed + round_, search_spec)
        bad = (fill <= fill_threshold) | degenerate
        todo = todo[bad]
        if len(todo) == 0:
            break
        stats["redrawn"] += len(todo)
        params[todo] = perturb(rng, base, len(todo), delta, mode)
    else:
        raise RuntimeError(
            f"1p-frac: {len(todo)} categories still fill <= {fill_threshold} after "
            f"{max_rounds} redraws; the base system is too thin, change seed or sigma"
        )
    padded = np.stack([ifs.pad_maps(p) for p in params])
    return padded, base, stats
