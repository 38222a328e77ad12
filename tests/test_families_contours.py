"""VisualAtom and RCDB on the device against the sequential references (reference_contours.py):
the noise primitive exactly, strokes pixel for pixel given the same vertices, vertex steps and
images in distribution (with negative controls), category draws against the published ranges,
degenerate draws, thin strokes at low resolution, and bad configs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from synth_jax.errors import UsageError
from synth_jax.fractals import FAMILIES, build_table, data_config
from synth_jax.fractals.engine import orbits, perlin
from synth_jax.fractals.families import rcdb, visualatom
from synth_jax.fractals.references import contours as ref

# pnoise1(u) of the `noise` package 1.2.2 (its C extension), one octave, repeat 1024, base 0.
PNOISE1 = {
    0.25: 0.6861328482627869,
    1.5: 0.20000000298023224,
    17.3: 0.13685397803783417,
    255.75: -0.5619140863418579,
    256.1: 0.3141975998878479,
    1023.9: -0.30178776383399963,
    1024.4: 0.797483503818512,
    4321.123: 0.24770180881023407,
    9999.5: 0.30000001192092896,
    6000.01: -0.003924389835447073,
}

# Small frames keep these tests fast: 128-pixel canvases, few vertices and orbits.
SMALL = dict(canvas_size=128, image_size=64, stroke_samples=1 << 15, max_orbits=24)
VA_SMALL = dict(SMALL, min_vertices=60, max_vertices=120, min_orbits=8)
RC_SMALL = dict(SMALL, max_vertices=40, min_orbits=8)
VA_ROW = dict(
    vertices=96,
    orbits=20,
    n1=3,
    n2=7,
    noise=2.0,
    line_width=0.05,
    radius=30.0,
    oval_x=1.5,
    oval_y=1.2,
)
RC_ROW = dict(vertices=24, orbits=20, noise=1.5, line_width=0.05)


def small_config(family: str, **options):
    small = VA_SMALL if family == "visualatom" else RC_SMALL
    return data_config(family, num_classes=1, **{**small, **options})


@functools.cache
def _rows_renderer(family: str, options: tuple):
    """One compiled render_rows per family and options, shared by this module's tests (each
    compilation costs seconds)."""
    config = small_config(family, **dict(options))
    return jax.jit(FAMILIES[family].renderer(config, build_table(config)).render_rows)


def render_row(family: str, row: dict, count: int, seed: int = 0, **options):
    """`count` instances of the category values `row` on the device: (uint8[count, H, W, 3],
    info of numpy arrays)."""
    rows = {
        k: jnp.full(count, v, jnp.int32 if isinstance(v, int) else jnp.float32)
        for k, v in row.items()
    }
    keys = jax.random.split(jax.random.key(seed), count)
    images, info = _rows_renderer(family, tuple(sorted(options.items())))(rows, keys)
    return np.asarray(images), {k: np.asarray(v) for k, v in info.items()}


@functools.cache
def _orbit_drawer(family: str):
    config = small_config(family)
    draw = {"visualatom": visualatom, "rcdb": rcdb}[family].make_draw(config)
    return config, jax.jit(jax.vmap(draw, in_axes=(None, 0)))


def device_orbits(family, row, count, seed=0):
    """x, y float32[count, K, V] (px@512), greys [count, K] of `count` instances of `row`."""
    config, draw = _orbit_drawer(family)
    keys = jax.random.split(jax.random.key(seed), count)
    x, y, _, _, greys = draw({k: jnp.asarray(v) for k, v in row.items()}, keys)
    k, v = row["orbits"], row["vertices"]
    return np.asarray(x)[:, :k, :v], np.asarray(y)[:, :k, :v], np.asarray(greys)[:, :k]


def reference_orbits(family, config, row, count, seed=0, **changes):
    rng = np.random.default_rng(seed)
    row = dict(row, **changes)
    if family == "visualatom":
        draws = [ref.visualatom_orbits(row, rng) for _ in range(count)]
    else:
        draws = [ref.rcdb_orbits(row, rng, config) for _ in range(count)]
    return tuple(np.stack(parts) for parts in zip(*draws))


# -- the noise primitive ----------------------------------------------------------------------
def test_pn_is_the_noise_packages_pnoise1_with_its_permutation_table():
    u = np.array(list(PNOISE1), np.float32)
    np.testing.assert_allclose(perlin.noise1(u), list(PNOISE1.values()), atol=1e-7)
    np.testing.assert_allclose(ref.pn(u), list(PNOISE1.values()), atol=1e-7)
    # White noise at fresh points: std 0.3285 with Perlin's table (measured with the package),
    # 0.319 with two independent bytes instead. 400k draws: standard error of the std ~4e-4.
    words = jnp.array([123, 456], jnp.uint32)
    values = np.asarray(perlin.white_noise(words, jnp.arange(400_000, dtype=jnp.uint32)))
    assert abs(values.std() - 0.3285) < 0.002 and abs(values.mean()) < 0.003
    assert np.abs(values).max() <= 0.9521
    h = np.random.default_rng(0).integers(0, 256, (2, 400_000))
    t = np.random.default_rng(1).uniform(size=400_000).astype(np.float32)
    grad = lambda hh, x: np.where(hh & 8, -1.0, (hh & 7) + 1.0) * x
    fade = t**3 * (t * (t * 6 - 15) + 10)
    independent = 0.4 * (grad(h[0], t) + fade * (grad(h[1], t - 1) - grad(h[0], t)))
    assert abs(independent.std() - 0.3285) > 0.005  # the test tells the two apart


# -- category draws ---------------------------------------------------------------------------
def test_visualatom_categories_follow_the_published_ranges():
    table = build_table(data_config("visualatom", num_classes=3000)).arrays
    n = 3000
    for key, lo, hi in [
        ("vertices", 200, 1000),
        ("orbits", 1, 200),
        ("n1", 0, 20),
        ("n2", 0, 20),
        ("radius", 10, 60),
    ]:
        assert table[key].min() == lo and table[key].max() == hi, key
        # uniform integers: mean (lo + hi) / 2, sd (hi - lo + 1) / sqrt(12)
        se = (hi - lo + 1) / np.sqrt(12 * n)
        assert abs(table[key].mean() - (lo + hi) / 2) < 4 * se, key
    for key, lo, hi in [
        ("noise", 0, 4),
        ("line_width", 0, 0.1),
        ("oval_x", 1, 2),
        ("oval_y", 1, 2),
    ]:
        assert lo <= table[key].min() and table[key].max() <= hi
        assert abs(table[key].mean() - (lo + hi) / 2) < 4 * (hi - lo) / np.sqrt(12 * n), key
    n1, n2 = table["n1"], table["n2"]
    assert not np.any((n1 != 0) & (n1 == n2))  # n2 redrawn while equal, unless n1 = 0
    assert np.any((n1 == 0) & (n2 == 0))  # P = 1/21 * 1/21: ~7 of 3000
    # Each category is drawn from its own stream: the first ten do not depend on the count.
    small = build_table(data_config("visualatom", num_classes=10)).arrays
    for key, column in small.items():
        np.testing.assert_array_equal(column, table[key][:10])
    other_seed = build_table(data_config("visualatom", num_classes=10, seed=1)).arrays
    assert not np.array_equal(other_seed["vertices"], small["vertices"])


def test_rcdb_vertex_counts_are_a_truncated_floored_exponential():
    table = build_table(data_config("rcdb", num_classes=4000)).arrays
    v = table["vertices"]
    assert v.min() >= 3 and v.max() <= 200
    # P(V = k) for 3 <= k <= 200: P(k <= E < k + 1) / P(3 <= E < 201), binned in 10s.
    k = np.arange(3, 201)
    pmf = np.exp(-k / 100) - np.exp(-(k + 1) / 100)
    pmf /= pmf.sum()
    edges = np.arange(3, 211, 10)
    observed = np.histogram(v, edges)[0]
    expected = np.array([pmf[(k >= a) & (k < b)].sum() for a, b in zip(edges[:-1], edges[1:])])
    p = stats.chisquare(observed, expected * len(v)).pvalue
    assert p > 1e-4, p
    # Negative control: the untruncated mean-100 law would put far more mass above 100.
    assert np.mean(v > 100) < 0.30 and abs(np.mean(v) - np.sum(k * pmf)) < 4 * v.std() / 63


# -- strokes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("canvas", [128, 512])
def test_strokes_are_pils_lines_pixel_for_pixel(canvas):
    """Given the same vertices and greys, the device canvas is PIL's drawing of the orbits in
    order: the same Bresenham pixels, the same last-drawn-wins greys, no gaps."""
    x, y, greys = device_orbits("visualatom", VA_ROW, 3)
    scale = canvas / orbits.FRAME

    @jax.jit
    def draw(x, y, greys):
        count = jnp.full(len(x), VA_ROW["vertices"]), jnp.full(len(x), VA_ROW["orbits"])
        pixel, orbit, _, thinned = orbits.stroke_samples(
            x * scale, y * scale, *count, canvas, 1 << 17
        )
        top = orbits.last_orbit(pixel, orbit, len(x), canvas)
        return jax.vmap(lambda t, g: orbits.paint(t, g, 0.0))(top, greys), thinned

    device, thinned = draw(x, y, greys)
    assert not thinned
    for i in range(3):
        expected = ref.draw_orbits(x[i].astype(np.float64), y[i], greys[i], canvas, 0)
        np.testing.assert_array_equal(np.asarray(device[i]), expected)


def test_a_coarse_polygon_is_drawn_without_gaps():
    """Long segments (a 5-gon of radius 200 px) are closed 8-connected curves."""
    theta = 2 * np.pi * np.arange(5) / 5
    x = (256 + 200 * np.cos(theta))[None].astype(np.float32)
    y = (256 + 170 * np.sin(theta))[None].astype(np.float32)

    @jax.jit
    def draw(x, y):
        pixel, orbit, _, _ = orbits.stroke_samples(x, y, jnp.array([5]), jnp.array([1]), 512, 4096)
        return orbits.last_orbit(pixel, orbit, 1, 512)[0]

    lit = np.asarray(draw(x[None], y[None])) > 0
    padded = np.pad(lit, 1)
    neighbours = sum(
        np.roll(np.roll(padded, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx
    )[1:-1, 1:-1]
    assert lit.sum() > 900 and np.all(neighbours[lit] >= 2)


# -- geometry in distribution -----------------------------------------------------------------
def _step_statistics(x, y):
    """Per-vertex mean radial step float[V] and the pooled standard deviation of the steps along
    x (where |cos theta| > 0.5): orbit k's step is (x_k - x_{k-1}) / cos theta_v."""
    v = x.shape[-1]
    cos = np.cos(2 * np.pi * np.arange(v) / v)
    steps = np.diff(x, axis=1) / cos  # [n, K - 1, V]
    use = np.abs(cos) > 0.5
    per_vertex = steps.mean(axis=(0, 1))[use]
    per_vertex_se = steps.std(axis=(0, 1))[use] / np.sqrt(steps.shape[0] * steps.shape[1])
    noise = (steps - steps.mean(axis=(0, 1)))[:, :, use]
    return per_vertex, per_vertex_se, noise.std(), noise.size


@pytest.mark.parametrize("family", ["visualatom", "rcdb"])
def test_orbit_steps_match_the_sequential_reference(family):
    """Mean step per vertex (c + wave_v + lw) and the step noise (c x the white noise's
    deviation) of the device's orbits vs the reference's, 64 instances each. Tolerances: 4.5
    standard errors per vertex (about a hundred comparisons) and for the deviation (se of a
    standard deviation of m values: sd / sqrt(2 m)). Negative controls: the noise coefficient
    10% larger, or two independent bytes for the permutation table (std 0.319), are caught."""
    row = VA_ROW if family == "visualatom" else RC_ROW
    config = small_config(family)
    dev = _step_statistics(*device_orbits(family, row, 64)[:2])
    refs = _step_statistics(*reference_orbits(family, config, row, 64)[:2])

    def agree(a, b):
        z_mean = np.abs(a[0] - b[0]) / np.hypot(a[1], b[1])
        se_std = np.hypot(a[2] / np.sqrt(2 * a[3]), b[2] / np.sqrt(2 * b[3]))
        return z_mean.max() < 4.5 and abs(a[2] - b[2]) < 4.5 * se_std

    assert agree(dev, refs), (dev[2], refs[2])
    louder = reference_orbits(family, config, row, 64, noise=row["noise"] * 1.1)[:2]
    assert not agree(dev, _step_statistics(*louder))
    # The per-vertex means carry the waves (VisualAtom) and the mean step c + lw.
    theta = 2 * np.pi * np.arange(row["vertices"]) / row["vertices"]
    waves = 0.5 * np.sin(3 * theta) + 0.5 * np.sin(7 * theta) if family == "visualatom" else 0
    expected = (row["noise"] + row["line_width"] + waves * np.ones_like(theta))[
        np.abs(np.cos(theta)) > 0.5
    ]
    assert np.abs(dev[0] - expected).max() < 4.5 * dev[1].max()


# -- images in distribution -------------------------------------------------------------------
def _image_statistics(images):
    """Per image: lit fraction, mean level, and the fraction of lit pixels in 4 level bins."""
    grey = images[..., 0].astype(np.float64).reshape(len(images), -1)
    lit = grey > 0
    bins = np.stack(
        [
            ((grey > lo) & (grey <= hi)).sum(1)
            for lo, hi in [(0, 32), (32, 96), (96, 160), (160, 255)]
        ],
        1,
    )
    return np.column_stack([lit.mean(1), grey.mean(1), bins / np.maximum(lit.sum(1), 1)[:, None]])


@pytest.mark.parametrize("family", ["visualatom", "rcdb"])
def test_images_match_the_sequential_reference_in_distribution(family):
    """The device's images of one category vs the PIL reference's (64 each, 128-px canvas
    resized to 64): lit fraction, mean level and level histogram agree within 4 standard errors
    of the difference of means (the centre, anywhere in the frame, dominates the spread); a
    category with twice the noise is told apart."""
    row = VA_ROW if family == "visualatom" else RC_ROW
    config = small_config(family)
    images, info = render_row(family, row, 64, degenerate="keep")
    device = _image_statistics(images)
    assert not info["overflow"].any()

    def reference(changes, seed):
        rng = np.random.default_rng(seed)
        r = dict(row, **changes)
        if family == "visualatom":
            return np.stack([ref.visualatom_image(r, rng, 128, 64) for _ in range(64)])
        return np.stack([ref.rcdb_image(r, rng, config) for _ in range(64)])

    def z(a, b):
        se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
        return np.abs(a.mean(0) - b.mean(0)) / np.maximum(se, 1e-9)

    same = z(device, _image_statistics(reference({}, 1)))
    assert same.max() < 4.0, same
    noisier = z(device, _image_statistics(reference({"noise": 2 * row["noise"]}, 2)))
    assert noisier.max() > 4.0, noisier


def test_strokes_stay_thin_at_low_resolution():
    """Drawn on the 512 canvas and resized to 64 px, a stroke covers 64/512 of a pixel's width:
    the mean level is the full canvas's; 1-pixel strokes drawn straight at 64 px carry about
    twice the ink (more where they overlap)."""
    x, y, greys = device_orbits("visualatom", VA_ROW, 8)
    k, v = VA_ROW["orbits"], VA_ROW["vertices"]

    @jax.jit
    def inks(x, y, greys):
        def canvas(size):
            s = size / orbits.FRAME
            count = jnp.full(len(x), v), jnp.full(len(x), k)
            pixel, orbit, _, _ = orbits.stroke_samples(x * s, y * s, *count, size, 1 << 19)
            top = orbits.last_orbit(pixel, orbit, len(x), size)
            return jax.vmap(lambda t, g: orbits.paint(t, g, 0.0))(top, greys)

        full = canvas(512)
        resized = jax.vmap(lambda g: orbits.to_image(g, 64, "uint8"))(full)
        return full.mean(), resized.astype(jnp.float32).mean(), canvas(64).mean()

    full, small, thick = (float(a) for a in inks(x, y, jnp.asarray(greys, jnp.float32)))
    assert abs(small / full - 1) < 0.03, (small, full)
    assert thick / full > 1.5, (thick, full)


# -- degenerate draws, overflow, options ------------------------------------------------------
@pytest.mark.parametrize("family", ["visualatom", "rcdb"])
def test_degenerate_draws_are_redrawn_or_kept(family):
    """One orbit per image: its grey is within 8 levels of the background for ~3% of instances,
    and RCDB's start radius can be 0 (a dot): empty frames. keep: flagged and drawn as is;
    resample: redrawn, and every image that was fine stays the same."""
    row = dict(VA_ROW if family == "visualatom" else RC_ROW, orbits=1)
    kept, kept_info = render_row(family, row, 256, degenerate="keep")
    redrawn, info = render_row(family, row, 256)
    bad = kept_info["degenerate"]
    assert 1 <= bad.sum() <= 64, bad.sum()
    assert not info["degenerate"].any()
    assert np.all(info["attempts"][bad] >= 2) and np.all(info["attempts"][~bad] == 1)
    np.testing.assert_array_equal(redrawn[~bad], kept[~bad])


def test_rcdb_white_background_is_the_inverse():
    black = render_row("rcdb", RC_ROW, 4, degenerate="keep")[0].astype(np.int32)
    white = render_row("rcdb", RC_ROW, 4, degenerate="keep", invert=False)[0].astype(np.int32)
    assert np.abs((255 - black) - white).max() <= 1  # the resize rounds each once
    assert np.median(black) == 0 and np.median(white) == 255


def test_a_small_budget_thins_strokes_and_says_so():
    thin, info = render_row("visualatom", VA_ROW, 8, degenerate="keep", stroke_samples=1024)
    full, ok = render_row("visualatom", VA_ROW, 8, degenerate="keep")
    assert info["overflow"].all() and not ok["overflow"].any()
    assert (thin > 0).sum() < (full > 0).sum()


@pytest.mark.parametrize(
    "family, overrides, key",
    [
        ("visualatom", dict(min_frequency=20, max_frequency=20), "max_frequency"),
        ("visualatom", dict(min_orbits=5, max_orbits=2), "max_orbits"),
        ("visualatom", dict(stroke_samples=10), "stroke_samples"),
        ("visualatom", dict(degenerate="error"), "degenerate"),
        ("rcdb", dict(mean_vertices=0.01, min_vertices=100), "mean_vertices"),
        ("rcdb", dict(canvas_size=8), "canvas_size"),
        ("rcdb", dict(invert="yes"), "invert"),
    ],
)
def test_bad_config_values_name_the_key(family, overrides, key):
    with pytest.raises(UsageError, match=key):
        build_table(data_config(family, **overrides))
