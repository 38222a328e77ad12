"""The device renderer: chaos game, rasterisation and augmentation in one jittable function.

The chaos game runs as many short chains in parallel (a `lax.scan` over steps whose carry is a
vector of chain positions) instead of one long sequential chain: every chain starts at the origin,
forgets its start during `burn_in` steps (a contractive IFS does so geometrically fast), and from
then on each step emits one point per chain. `tests/test_fractals_render.py` checks the
occupancy maps against the one-chain NumPy reference in `reference.py`.

Everything here is a pure function of (params, key, flip): no host round trips, so a batch of
systems is one `vmap`, and a batch sharded over devices is rendered where it lives.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from synth_jax.fractals import augment

# Points beyond this magnitude count as divergent, like NaN and inf.
DIVERGENCE_BOUND = 1e8


@dataclasses.dataclass(frozen=True)
class RenderSpec:
    """Static rendering options (hashable: one compiled function per spec)."""

    image_size: int = 64
    points: int = 100_000
    chains: int = 1024  # parallel chains per image; each emits points / chains points
    burn_in: int = 24  # discarded steps per chain (contraction forgets the start)
    pad: int = 6
    patch: str = "point"  # point: FractalDB per-point 3x3 patches | stamp: one per image | none
    graded: bool = False  # intensity = hits / max hits instead of on/off
    random_flip: bool = False  # random h/v flips (FractalDB picks flips by index instead)
    window: bool = False  # random window rescale U(0.5, 2) and shift +-0.2 per axis
    colour: str = "gray"  # gray | hsv
    background: str = "black"  # black | noise
    gray_value: int = 255  # foreground level of gray images (FractalDB: 127)
    dtype: str = "uint8"  # uint8 | bfloat16 (same 0..255 scale)
    min_pixels: int = 2  # fewer occupied pixels than this marks the image degenerate
    max_pixel_share: float = 0.5  # more of the points in one pixel marks it degenerate

    @property
    def steps(self) -> int:
        return -(-self.points // self.chains)


def chaos_game(params: jax.Array, key: jax.Array, spec: RenderSpec):
    """Parallel chaos game. params: float[N, 7] rows (a..f, p) -> (x, y): float[steps * chains]
    in step-major order, spec.burn_in steps per chain already dropped."""
    params = jnp.asarray(params, jnp.float32)
    coeffs = params[:, :6].T  # [6, N]
    probs = params[:, 6]
    cdf = jnp.cumsum(probs) / jnp.sum(probs)
    total_steps = spec.burn_in + spec.steps
    u = jax.random.uniform(key, (total_steps, spec.chains))
    # Map index = number of cdf boundaries below u; padded maps (p = 0) sit at cdf = 1: never used.
    choice = jnp.sum(u[..., None] >= cdf[:-1], axis=-1)

    def step(xy, i):
        x, y = xy
        a, b, c, d, e, f = coeffs[:, i]
        nxt = (a * x + b * y + e, c * x + d * y + f)
        return nxt, nxt

    start = (jnp.zeros(spec.chains), jnp.zeros(spec.chains))
    xy, _ = jax.lax.scan(lambda c, i: (step(c, i)[0], None), start, choice[: spec.burn_in])
    _, (xs, ys) = jax.lax.scan(step, xy, choice[spec.burn_in :])
    return xs.reshape(-1), ys.reshape(-1)


def occupancy(x: jax.Array, y: jax.Array, key: jax.Array, spec: RenderSpec):
    """Hit counts of the finite points in their (optionally randomly windowed) min/max box,
    row = y, column = x. x, y: float[P] -> (counts float[H, W], finite_fraction float)."""
    size = spec.image_size
    ok = jnp.isfinite(x) & jnp.isfinite(y) & (jnp.abs(x) < DIVERGENCE_BOUND)
    ok &= jnp.abs(y) < DIVERGENCE_BOUND
    any_ok = jnp.any(ok)
    lo = jnp.stack([jnp.min(jnp.where(ok, x, jnp.inf)), jnp.min(jnp.where(ok, y, jnp.inf))])
    hi = jnp.stack([jnp.max(jnp.where(ok, x, -jnp.inf)), jnp.max(jnp.where(ok, y, -jnp.inf))])
    lo, hi = jnp.where(any_ok, lo, 0.0), jnp.where(any_ok, hi, 1.0)
    if spec.window:
        lo, hi = augment.random_window(key, lo, hi)
    scale = (size - 1 - 2 * spec.pad) / jnp.maximum(hi - lo, 1e-12)
    px = jnp.round(spec.pad + (jnp.where(ok, x, lo[0]) - lo[0]) * scale[0]).astype(jnp.int32)
    py = jnp.round(spec.pad + (jnp.where(ok, y, lo[1]) - lo[1]) * scale[1]).astype(jnp.int32)
    inside = ok & (px >= 0) & (px < size) & (py >= 0) & (py < size)
    # Points outside the window (or divergent) go to one extra bin that is dropped.
    pixel = jnp.where(inside, py * size + px, size * size)
    counts = jnp.zeros(size * size + 1, jnp.float32).at[pixel].add(1.0)
    return counts[:-1].reshape(size, size), jnp.mean(ok.astype(jnp.float32))


def intensity(counts: jax.Array, key: jax.Array, spec: RenderSpec) -> jax.Array:
    """Hit counts -> foreground intensity float[H, W] in [0, 1] (0 = background)."""
    if spec.patch == "point":
        on = augment.per_point_patches(counts, key)
        if not spec.graded:
            return on.astype(jnp.float32)
        hits = augment.shifted_sum(counts, jnp.ones(9))
        return jnp.where(on, jnp.maximum(hits, 1.0) / jnp.maximum(jnp.max(hits), 1.0), 0.0)
    if spec.patch == "stamp":
        hits = augment.shifted_sum(counts, augment.random_stamp(key))
    elif spec.patch == "none":
        hits = counts
    else:
        raise ValueError(f"patch={spec.patch!r}: expected point, stamp or none")
    if spec.graded:
        return hits / jnp.maximum(jnp.max(hits), 1.0)
    return (hits > 0).astype(jnp.float32)


def compose(level: jax.Array, key: jax.Array, spec: RenderSpec) -> jax.Array:
    """Foreground intensity float[H, W] -> image in spec.dtype [H, W, 3] on the 0..255 scale."""
    k_colour, k_background = jax.random.split(key)
    if spec.colour == "hsv":
        fg = augment.hsv_colourise(level, k_colour)
    elif spec.colour == "gray":
        fg = jnp.repeat(level[..., None] * (spec.gray_value / 255.0), 3, axis=-1)
    else:
        raise ValueError(f"colour={spec.colour!r}: expected gray or hsv")
    if spec.background == "noise":
        bg = augment.smooth_noise(k_background, spec.image_size)
        img = jnp.where(level[..., None] > 0, fg, bg)
    elif spec.background == "black":
        img = fg
    else:
        raise ValueError(f"background={spec.background!r}: expected black or noise")
    img = jnp.clip(jnp.nan_to_num(img) * 255.0, 0.0, 255.0)
    if spec.dtype == "uint8":
        return jnp.round(img).astype(jnp.uint8)
    if spec.dtype == "bfloat16":
        return jnp.round(img).astype(jnp.bfloat16)
    raise ValueError(f"dtype={spec.dtype!r}: expected uint8 or bfloat16")


def is_degenerate(counts: jax.Array, finite: jax.Array, spec: RenderSpec) -> jax.Array:
    """Mostly non-finite points, too few occupied pixels, or most points in one pixel (what a
    divergent system looks like once its escaping points set the box). bool scalar."""
    share = jnp.max(counts) / jnp.maximum(jnp.sum(counts), 1.0)
    few = jnp.sum(counts > 0) < spec.min_pixels
    return (finite < 0.5) | few | (share > spec.max_pixel_share)


def flip_image(image: jax.Array, flip: jax.Array) -> jax.Array:
    """flip: int, bit 0 = vertical, bit 1 = horizontal. image: [H, W, ...]."""
    image = jnp.where(flip & 1, image[::-1], image)
    return jnp.where(flip & 2, image[:, ::-1], image)


def render_system(
    params: jax.Array, game_key: jax.Array, image_key: jax.Array, flip, spec: RenderSpec
):
    """One image of one system. params: float[N, 7]; game_key drives the chaos game, image_key
    the window, patches, colours and background (FractalDB's instances share the points and
    differ by patches; its flips share both); flip: int in 0..3, bit 0 vertical, bit 1
    horizontal (random if spec.random_flip). Returns (image [H, W, 3] spec.dtype, info dict of
    scalars: `degenerate` (bool, see is_degenerate), `fill` (foreground fraction), `finite`)."""
    k_window, k_flip, k_patch, k_compose = jax.random.split(image_key, 4)
    x, y = chaos_game(params, game_key, spec)
    if spec.random_flip:
        flip = jax.random.randint(k_flip, (), 0, 4)
    counts, finite = occupancy(x, y, k_window, spec)
    level = intensity(counts, k_patch, spec)
    degenerate = is_degenerate(counts, finite, spec)
    info = {"degenerate": degenerate, "fill": jnp.mean(level > 0), "finite": finite}
    return flip_image(compose(level, k_compose, spec), flip), info


def system_statistics(params: jax.Array, key: jax.Array, spec: RenderSpec):
    """What a category filter needs, without the image: (expected per-point-patch fill rate,
    degenerate). Window and flips are ignored. params: float[N, 7]."""
    x, y = chaos_game(params, key, spec)
    counts, finite = occupancy(x, y, key, dataclasses.replace(spec, window=False))
    degenerate = is_degenerate(counts, finite, spec)
    if spec.patch == "point":
        fill = augment.expected_patch_fill(counts)
    else:
        fill = jnp.mean(counts > 0)
    return fill, degenerate


def _batched_statistics(spec: RenderSpec):
    return jax.jit(jax.vmap(lambda p, k: system_statistics(p, k, spec)))


_STATISTICS_CACHE: dict = {}


def batch_statistics(params, seed: int, spec: RenderSpec, batch: int = 64):
    """(fill float[C], degenerate bool[C]) for a stack of systems float[C, N, 7], rendered on the
    device in fixed-size batches (one compilation per spec and N)."""
    import numpy as np

    params = np.asarray(params, np.float32)
    fn = _STATISTICS_CACHE.setdefault(spec, _batched_statistics(spec))
    fills, degens = [], []
    base = jax.random.key(seed)
    for start in range(0, len(params), batch):
        chunk = params[start : start + batch]
        n = len(chunk)
        if n < batch:  # pad to the compiled batch size
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(start, start + batch))
        fill, degen = fn(jnp.asarray(chunk), keys)
        fills.append(np.asarray(fill)[:n])
        degens.append(np.asarray(degen)[:n])
    return np.concatenate(fills), np.concatenate(degens)
