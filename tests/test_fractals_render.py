"""The device renderer against the NumPy sequential reference, and its handling of bad systems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth_jax.fractals.engine import counter_random, ifs, image_ops, render
from synth_jax.fractals.families import sigma
from synth_jax.fractals.references import chaos_game as reference

SPEC = render.RenderSpec(image_size=32, points=32_768, chains=512, burn_in=32, pad=2, patch="none")


def _system(seed, n=3):
    return ifs.pad_maps(sigma.sample_sigma_system(np.random.default_rng(seed), n))


def _histogram(points, lo, hi, bins=32):
    h, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=bins, range=list(zip(lo, hi)))
    return h.ravel() / h.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parallel_chains_match_the_sequential_chaos_game(seed):
    """Occupancy of 32x32 cells: parallel chains (device) vs one long chain (NumPy).

    Tolerance: for two independent samples of n points from the same cell distribution p, the
    total variation distance has expectation sum_k sqrt(p_k / (pi n)) (each cell's difference of
    proportions is ~N(0, 2 p_k / n) and E|N(0, v)| = sqrt(2 v / pi)). The sequential chain's
    points could be correlated over a few steps, which would inflate that noise; measured, two
    independent reference chains differ by ~1.0x the expectation, as do the parallel chains. TV
    over ~500 occupied cells fluctuates by a few percent, so 1.5x the expectation is a wide
    margin, and a negative control shows the test tells a nudged system apart."""
    params = _system(seed)
    n = SPEC.points
    ref = reference.chaos_game(params, n, np.random.default_rng(seed), burn_in=100)
    x, y, _ = jax.jit(lambda p, k: render.chaos_game(p, k, SPEC))(params, jax.random.key(seed))
    fast = np.stack([np.asarray(x), np.asarray(y)], -1)[:n]
    lo, hi = ref.min(0) - 1e-6, ref.max(0) + 1e-6
    p_ref, p_fast = _histogram(ref, lo, hi), _histogram(fast, lo, hi)
    tv = 0.5 * np.abs(p_ref - p_fast).sum()
    tolerance = 1.5 * np.sum(np.sqrt(p_ref / (np.pi * n)))
    print(f"total variation {tv:.4f}, tolerance {tolerance:.4f}")
    assert tv < tolerance, (tv, tolerance)
    # Negative control: the same system with one map nudged is told apart.
    nudged = params.copy()
    nudged[np.argmax(params[:, 6]), 4] += 0.3
    other = reference.chaos_game(nudged, n, np.random.default_rng(seed + 100), burn_in=100)
    assert 0.5 * np.abs(p_ref - _histogram(other, lo, hi)).sum() > tolerance


def test_rasteriser_matches_the_reference_on_the_same_points():
    params = _system(3)
    x, y, box = render.chaos_game(jnp.asarray(params), jax.random.key(0), SPEC)
    counts, finite = render.occupancy(x, y, box, jax.random.key(1), SPEC)
    points = np.stack([np.asarray(x), np.asarray(y)], -1).astype(np.float64)
    ref = reference.occupancy(points, SPEC.image_size, SPEC.pad)
    # float32 vs float64 normalisation may round a point at a pixel boundary the other way.
    moved = np.abs(np.asarray(counts) - ref).sum() / 2
    assert moved <= 1e-3 * len(points)
    assert float(finite) == 1.0 and ref.sum() == counts.sum()


def test_flips_mirror_the_image():
    spec = render.RenderSpec(image_size=32, points=4096, chains=256, burn_in=16, colour="hsv")
    params, key = jnp.asarray(_system(4)), jax.random.key(0)
    fn = jax.jit(lambda f: render.render_system(params, key, key, f, spec)[0])
    base = np.asarray(fn(0))
    for code, flipped in [(1, base[::-1]), (2, base[:, ::-1]), (3, base[::-1, ::-1])]:
        np.testing.assert_array_equal(fn(code), flipped)


def test_per_point_patch_fast_path_matches_drawing_every_patch():
    """Fill rate of the Bernoulli-per-pixel patches vs the reference's one mask per point.
    Pixels are ~independent: the fill difference has sd ~ sqrt(2 f (1 - f) / HW) < 0.008 at
    64x64; we allow 0.03 (about 4 sd)."""
    spec = render.RenderSpec(image_size=64, points=3000, chains=100, burn_in=32, pad=2)
    params = jnp.asarray(_system(5, n=2))
    x, y, box = render.chaos_game(params, jax.random.key(0), spec)
    counts, _ = render.occupancy(x, y, box, jax.random.key(0), spec)
    counts_np = np.asarray(counts).astype(np.int64)
    ref_fill = reference.fill_rate(reference.patch_render(counts_np, np.random.default_rng(0)))
    patches = lambda k: image_ops.per_point_patches(counts, jax.random.key(k))
    fast = [float(jnp.mean(patches(k))) for k in range(4)]
    expected = float(image_ops.expected_patch_fill(counts))
    assert abs(np.mean(fast) - ref_fill) < 0.03, (fast, ref_fill)
    assert abs(expected - ref_fill) < 0.03
    # Patches only ever switch on pixels within one pixel of a hit.
    near = np.asarray(image_ops.shifted_sum(counts, jnp.ones(9))) > 0
    assert not np.any(np.asarray(image_ops.per_point_patches(counts, jax.random.key(9))) & ~near)


BAD_SYSTEMS = {
    "divergent": np.array([[2.0, 0.3, -0.2, 1.9, 0.1, 0.2, 0.5], [1.5, 0, 0, 1.5, 1, 1, 0.5]]),
    "nan": np.array([[np.nan, 0, 0, 0.5, 0, 0, 0.5], [0.5, 0, 0, 0.5, 1, 1, 0.5]]),
    "single_pixel": np.array([[0, 0, 0, 0, 0.3, 0.3, 1.0]]),
}


def test_degenerate_systems_are_flagged_never_nan():
    spec = render.RenderSpec(
        image_size=32,
        points=4096,
        chains=256,
        burn_in=16,
        pad=2,
        colour="hsv",
        background="noise",
        graded=True,
        dtype="bfloat16",
    )
    params = jnp.asarray(np.stack([ifs.pad_maps(p) for p in BAD_SYSTEMS.values()]), jnp.float32)
    params = jnp.concatenate([params, jnp.asarray(_system(7))[None]])  # and one good system
    keys = jax.random.split(jax.random.key(0), len(params))
    render_batch = jax.vmap(lambda p, k: render.render_system(p, k, k, 0, spec))
    images, info = jax.jit(render_batch)(params, keys)
    assert np.asarray(info["degenerate"]).tolist() == [True, True, True, False]
    assert not np.any(np.isnan(np.asarray(images.astype(jnp.float32))))
    _, degenerate = render.batch_statistics(params, 0, spec, batch=4)
    assert degenerate.tolist() == [True, True, True, False]


def test_a_good_system_renders_a_filled_uint8_image():
    spec = render.RenderSpec(image_size=32, points=4096, chains=256, burn_in=16, pad=2)
    key = jax.random.key(0)
    image, info = jax.jit(lambda p: render.render_system(p, key, key, 0, spec))(_system(6))
    assert image.dtype == jnp.uint8 and image.shape == (32, 32, 3)
    assert not bool(info["degenerate"]) and 0.05 < float(info["fill"]) < 1.0
    assert set(np.unique(np.asarray(image))) <= {0, 255}


def test_hsv_to_rgb_matches_colorsys():
    import colorsys

    rng = np.random.default_rng(0)
    hsv = rng.uniform(size=(50, 3))
    ours = np.asarray(image_ops.hsv_to_rgb(*(jnp.asarray(hsv[:, i]) for i in range(3))))
    np.testing.assert_allclose(ours, [colorsys.hsv_to_rgb(*row) for row in hsv], atol=1e-6)


def _gather_chaos_game(params, key, spec):
    """The chaos game as it was first written: each step gathers its maps' coefficients,
    coeffs[:, i] (what select_maps replaces)."""
    coeffs, thresholds, words = render.game_tables(params, key)
    half = (spec.chains + 1) // 2
    lanes = jnp.arange(half, dtype=jnp.uint32)

    def apply_map(x, y, t):
        u = counter_random.uniform16(words, t.astype(jnp.uint32) * jnp.uint32(half) + lanes)
        i = jnp.sum(u[: spec.chains, None] >= thresholds, axis=-1)
        a, b, c, d, e, f = coeffs[:, i]
        return a * x + b * y + e, c * x + d * y + f

    def step(carry, t):
        x, y, lo_x, lo_y, hi_x, hi_y = carry
        x, y = apply_map(x, y, t)
        ok = (jnp.abs(x) < render.DIVERGENCE_BOUND) & (jnp.abs(y) < render.DIVERGENCE_BOUND)
        lo_x = jnp.minimum(lo_x, jnp.where(ok, x, jnp.inf))
        lo_y = jnp.minimum(lo_y, jnp.where(ok, y, jnp.inf))
        hi_x = jnp.maximum(hi_x, jnp.where(ok, x, -jnp.inf))
        hi_y = jnp.maximum(hi_y, jnp.where(ok, y, -jnp.inf))
        return (x, y, lo_x, lo_y, hi_x, hi_y), (x, y)

    zeros = jnp.zeros(spec.chains)
    xy, _ = jax.lax.scan(
        lambda xy, t: (apply_map(*xy, t), None), (zeros, zeros), jnp.arange(spec.burn_in)
    )
    inf = jnp.full(spec.chains, jnp.inf)
    carry, (xs, ys) = jax.lax.scan(
        step, (*xy, inf, inf, -inf, -inf), spec.burn_in + jnp.arange(spec.steps)
    )
    box = jnp.stack([carry[2].min(), carry[3].min(), carry[4].max(), carry[5].max()])
    return xs.reshape(-1), ys.reshape(-1), box


def _bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def test_select_over_the_maps_is_the_gather_bit_for_bit():
    # Signed zeros, NaN and inf among the coefficients: a select keeps each value's bits.
    rng = np.random.default_rng(0)
    for maps in range(1, 8):
        coeffs = rng.normal(size=(6, maps)).astype(np.float32)
        coeffs.flat[rng.choice(coeffs.size, 3, replace=False)] = [-0.0, np.nan, -np.inf]
        i = jnp.asarray(rng.integers(0, maps, 500))
        picked = jax.jit(render.select_maps)(jnp.asarray(coeffs), i)
        np.testing.assert_array_equal(_bits(jnp.stack(picked)), _bits(coeffs[:, np.asarray(i)]))


def test_chaos_game_gives_the_gathering_formulations_points_bit_for_bit():
    # A batch as the renderer runs it (vmapped, jitted): systems of 2..7 maps padded to 7 (p = 0
    # maps never drawn), and the divergent and NaN systems; points and boxes bit for bit.
    spec = render.RenderSpec(image_size=32, points=4096, chains=256, burn_in=16)
    systems = [_system(seed, n) for seed, n in enumerate(range(2, 8))]
    systems += [ifs.pad_maps(BAD_SYSTEMS["divergent"]), ifs.pad_maps(BAD_SYSTEMS["nan"])]
    params = jnp.asarray(np.stack(systems), jnp.float32)
    keys = jax.random.split(jax.random.key(3), len(systems))
    run = lambda game: jax.jit(jax.vmap(lambda p, k: game(p, k, spec)))(params, keys)
    for new, old in zip(run(render.chaos_game), run(_gather_chaos_game)):
        np.testing.assert_array_equal(_bits(new), _bits(old))
    # and the comparison sees a changed map: the gather of one system with two maps swapped
    swapped = params.at[0, :2].set(params[0, 1::-1])
    x_swapped = _gather_chaos_game(swapped[0], keys[0], spec)[0]
    assert not np.array_equal(_bits(x_swapped), _bits(run(render.chaos_game)[0][0]))
