"""The sigma-factor sampler of Anderson & Farrell (WACV 2022): well-shaped contractive systems.

A_i = R(theta_i) diag(s1_i, s2_i) R(phi_i) D_i, with R a rotation, D_i a random reflection
diag(+-1, +-1), 0 <= s2_i <= s1_i <= 1 and sum_i (s1_i + 2 s2_i) = sigma; b_i ~ U(-1, 1)^2;
p_i proportional to |det A_i| = s1_i s2_i.

Also the `sigma` data family: one random sigma-factor system per category, colourised in HSV on
a noise background with random stamps, windows and flips (see synth_jax.fractals.family).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.config import check, check_choice
from synth_jax.errors import UsageError
from synth_jax.fractals.engine import data_keys, ifs, image_ops, render
from synth_jax.fractals.engine.ifs_images import IFSImages, ifs_table


def default_sigma(rng: np.random.Generator, num_maps: int) -> float:
    """sigma ~ U((5 + N) / 2, (6 + N) / 2), the paper's default range."""
    return float(rng.uniform((5 + num_maps) / 2, (6 + num_maps) / 2))


def singular_values_sequential(rng: np.random.Generator, num_maps: int, sigma: float) -> np.ndarray:
    """The paper's sequential sampler. Returns float[N, 2] rows (s1, s2) with the constraints."""
    n = num_maps
    if not (0 < sigma <= 3 * n):
        raise ValueError(f"sigma={sigma} is outside (0, 3N] = (0, {3 * n}] for N={n} maps")
    p, q = float(sigma), float(sigma - 3 * n + 3)
    out = np.zeros((n, 2))
    for i in range(n - 1):
        s1 = rng.uniform(max(0.0, q / 3), min(1.0, p))
        q -= s1
        p -= s1
        s2 = rng.uniform(max(0.0, q / 2), min(s1, p / 2))
        q = q - 2 * s2 + 3
        p -= 2 * s2
        out[i] = s1, s2
    s2 = rng.uniform(max(0.0, (p - 1) / 2), p / 3)
    out[n - 1] = p - 2 * s2, s2
    return out


def _fiber_length(r: np.ndarray) -> np.ndarray:
    """Length of {s2 : s1 = r - 2 s2, 0 <= s2 <= s1 <= 1}, the last map's freedom given r."""
    return np.clip(r / 3 - np.maximum(0.0, (r - 1) / 2), 0.0, None)


def singular_values_rejection(
    rng: np.random.Generator, num_maps: int, sigma: float, max_tries: int = 100_000
) -> np.ndarray:
    """Uniform on the constraint surface: the first N-1 pairs uniform on the triangle
    0 <= s2 <= s1 <= 1, the last pair on its fiber, accepted with probability proportional to the
    fiber's length (at most 1/3), which makes the joint density uniform on the hyperplane."""
    n = num_maps
    if not (0 < sigma <= 3 * n):
        raise ValueError(f"sigma={sigma} is outside (0, 3N] = (0, {3 * n}] for N={n} maps")
    batch = 4096
    for _ in range(max(1, max_tries // batch)):
        u = rng.uniform(size=(batch, n - 1, 2))
        s1, s2 = u.max(-1), u.min(-1)  # uniform on the triangle s2 <= s1
        r = sigma - (s1 + 2 * s2).sum(-1)
        length = _fiber_length(r)
        accept = rng.uniform(size=batch) * (1 / 3) < length
        if accept.any():
            k = int(np.argmax(accept))
            lo = max(0.0, (r[k] - 1) / 2)
            last_s2 = rng.uniform(lo, lo + length[k])
            out = np.zeros((n, 2))
            out[:-1, 0], out[:-1, 1] = s1[k], s2[k]
            out[-1] = r[k] - 2 * last_s2, last_s2
            return out
    raise RuntimeError(f"rejection sampler found no sample for N={n}, sigma={sigma}")


def _rotation(theta: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def sample_sigma_system(
    rng: np.random.Generator,
    num_maps: int,
    sigma: float | None = None,
    sampler: str = "sequential",
) -> np.ndarray:
    """One system: float[N, 7] rows (a, b, c, d, e, f, p)."""
    sigma = default_sigma(rng, num_maps) if sigma is None else sigma
    if sampler == "sequential":
        sv = singular_values_sequential(rng, num_maps, sigma)
    elif sampler == "rejection":
        sv = singular_values_rejection(rng, num_maps, sigma)
    else:
        raise ValueError(f"sampler={sampler!r}: expected 'sequential' or 'rejection'")
    theta = rng.uniform(-np.pi, np.pi, num_maps)
    phi = rng.uniform(-np.pi, np.pi, num_maps)
    reflect = rng.choice([-1.0, 1.0], size=(num_maps, 2))
    a = (
        _rotation(theta)
        @ (sv[:, :, None] * np.eye(2))
        @ _rotation(phi)
        @ (reflect[:, :, None] * np.eye(2))
    )
    b = rng.uniform(-1, 1, (num_maps, 2))
    maps = np.stack([a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1], b[:, 0], b[:, 1]], -1)
    return ifs.with_probabilities(maps)


# -- the data family ---------------------------------------------------------------------------
DEFAULTS = dict(
    patch="stamp",
    graded=True,
    flip="random",
    window=True,
    colour="hsv",
    background="noise",
    min_maps=2,
    max_maps=7,
    sigma=0.0,  # 0: sigma ~ U((5 + N) / 2, (6 + N) / 2) per system
    sigma_sampler="sequential",  # sequential | rejection
    images_per_category=1000,  # an epoch: num_classes x this (random stamps, colours, windows)
    blur=0.0,  # probability of a 3x3 Gaussian blur, sigma ~ U(0.5, 1) (Anderson & Farrell: 0.5)
)
TABLE_FREE_KEYS = ("images_per_category", "blur")
BLUR_TAG = 0x626C  # folded into an image's key for its blur draws


def validate(config) -> None:
    check_choice(config, "sigma_sampler", ("sequential", "rejection"))
    check(config, "images_per_category", data_keys.positive_int, "a positive integer")
    check_blur(config)
    data_keys.check_map_counts(config)
    check(config, "sigma", lambda v: v == 0 or v > 0, "0 (the default range) or a positive number")
    if config.sigma:
        check(config, "sigma", lambda v: v <= 3 * config.min_maps, "at most 3 * min_maps")


def build_table(config, rng: np.random.Generator, progress: bool) -> tuple[dict, dict]:
    """Sigma-factor systems; degenerate ones (rare: they are contractive) are redrawn or refused."""
    spec = dataclasses.replace(data_keys.render_spec(config), window=False, random_flip=False)
    draw = lambda: ifs.pad_maps(
        sample_sigma_system(
            rng,
            int(rng.integers(config.min_maps, config.max_maps + 1)),
            config.sigma or None,
            config.sigma_sampler,
        )
    )
    params = np.stack([draw() for _ in range(config.num_classes)])
    stats = {"redrawn": 0}
    for round_ in range(100):
        _, degenerate = render.batch_statistics(params, config.seed + round_, spec)
        bad = np.flatnonzero(degenerate)
        if len(bad) == 0:
            return ifs_table(params), stats
        if config.degenerate == "error":  # (reject and resample are the same here)
            raise UsageError(
                f"config key 'degenerate'='error': categories {bad[:10].tolist()} render "
                f"degenerate images; use degenerate=resample or another seed"
            )
        stats["redrawn"] += len(bad)
        params[bad] = np.stack([draw() for _ in bad])
    raise RuntimeError("sigma family: degenerate systems after 100 redraws")


def check_blur(config) -> None:
    check(config, "blur", lambda v: 0 <= v <= 1, "a probability in [0, 1]")


class BlurredIFSImages(IFSImages):
    """IFSImages whose images are blurred with probability `blur` (Anderson & Farrell: 0.5),
    the blur drawn from the image's key (so an image's flips share it too)."""

    def __init__(self, table, spec, instances, blur: float):
        super().__init__(table, spec, instances)
        self.blur = float(blur)

    def draw(self, params, game_keys, image_keys, flips):
        images, info = super().draw(params, game_keys, image_keys, flips)
        keys = jax.vmap(lambda k: jax.random.fold_in(k, BLUR_TAG))(image_keys)
        blur = lambda image, key: image_ops.random_blur(image.astype(jnp.float32), key, self.blur)
        return render.to_dtype(jax.vmap(blur)(images, keys), self.spec.dtype), info


def renderer(config, table) -> IFSImages:
    spec = data_keys.render_spec(config)
    if config.blur > 0:
        return BlurredIFSImages(table, spec, config.images_per_category, config.blur)
    return IFSImages(table, spec, config.images_per_category)


def preview_overrides(num: int, image_size: int) -> dict:
    return dict(points=data_keys.preview_points(image_size))
