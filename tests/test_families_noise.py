"""Dead leaves and Spectrum on the device against the sequential references
(reference_noise.py): the two-pass painter pixel for pixel given the same shapes, the shape laws,
the spectrum's steps given the same noise, and images in distribution (with negative controls)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from synth_jax.errors import UsageError
from synth_jax.fractals import FractalDataset, build_table, data_config
from synth_jax.fractals.families import dead_leaves, spectrum
from synth_jax.fractals.references import noise as ref


@functools.cache
def dead_leaves_fn(size: int, shapes: str, max_shapes: int = 5000):
    """Compiled: key -> (shapes dict, shown index per pixel, complete, stop)."""

    def run(key):
        drawn = dead_leaves.sample_shapes(key, max_shapes, size, shapes)
        return (drawn, *dead_leaves.paint(drawn, size, max_shapes))

    return jax.jit(run)


def as_reference_shapes(drawn) -> list:
    drawn = {k: np.asarray(v) for k, v in drawn.items()}
    return [
        dict(
            centre=drawn["centre"][s],
            radius=float(drawn["radius"][s]),
            kind=dead_leaves.KINDS[drawn["kind"][s]],
            vertices=None if drawn["kind"][s] == 0 else drawn["vertices"][s].astype(np.float64),
            colour=drawn["colour"][s],
        )
        for s in range(len(drawn["radius"]))
    ]


# -- dead leaves ------------------------------------------------------------------------------
@pytest.mark.parametrize("shapes", ["squares", "oriented", "mixed"])
def test_two_pass_painter_equals_the_sequential_painter(shapes):
    """Given the same shapes, the chunked two-pass form is the painter's loop that stops when no
    pixel is left uncovered: the same image and the same stopping shape."""
    size = 40
    fn = dead_leaves_fn(size, shapes)
    for seed in range(3):
        drawn, shown, complete, stop = fn(jax.random.key(seed))
        shown = np.asarray(shown)
        colours = np.asarray(drawn["colour"])
        image = np.where(shown[:, None] >= 0, colours[np.maximum(shown, 0)], 0)
        expected, painted = ref.dead_leaves_paint(as_reference_shapes(drawn), size)
        assert bool(complete) and int(stop) == painted - 1
        np.testing.assert_array_equal(image.reshape(size, size, 3), expected)
        assert len(np.unique(shown)) > 20  # many leaves show, not one big last shape


def test_the_shape_laws():
    """Radius on the grid with the nearest-CDF rule (chi-square against its exact pmf), kinds
    uniform over the six shapes, centres uniform; the reference's sampler agrees."""
    count = 20_480
    drawn = dead_leaves.sample_shapes(jax.random.key(0), count, 256, "mixed")
    radius_px = np.asarray(drawn["radius"])
    cdf = dead_leaves.RADIUS_CDF
    # u ~ U(0, 1) picks grid point i when its CDF is the nearest: between the midpoints.
    bounds = np.concatenate([[0], (cdf[1:] + cdf[:-1]) / 2, [1]])
    pmf = np.diff(bounds)
    grid_px = np.maximum(np.floor(dead_leaves.RADIUS_GRID.astype(np.float32) * 256), 1)
    expected = np.array([pmf[grid_px == r].sum() for r in np.unique(grid_px)])
    observed = np.array([(radius_px == r).sum() for r in np.unique(grid_px)])
    keep = expected * count >= 5  # chi-square bins with enough mass; the tail pooled
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum()) * count
    assert stats.chisquare(obs, exp).pvalue > 1e-4
    assert abs(np.median(radius_px) - 8) <= 1  # "median about 8 px at 256"
    kinds = np.bincount(np.asarray(drawn["kind"]), minlength=6)
    assert stats.chisquare(kinds).pvalue > 1e-4
    centre = np.asarray(drawn["centre"])
    assert centre.min() == 0 and centre.max() == 255 and abs(centre.mean() - 127.5) < 2
    rng = np.random.default_rng(0)
    ref_px = np.array([ref.dead_leaves_shape(rng, 256, "mixed")["radius"] for _ in range(4000)])
    assert abs(np.log(ref_px).mean() - np.log(radius_px).mean()) < 4 * np.log(radius_px).std() / 55


def test_dead_leaves_images_match_the_reference_in_distribution():
    """32 images at 32 px each: the shape that completes coverage (T, about 1,100) and the number
    of leaves left visible agree with the sequential reference within 4 standard errors of the
    difference (measured: |z| <= 2.1 over three reference seeds); a radius law of r^-2.5 (more
    large leaves) is told apart (|z| ~ 7-8)."""
    config = data_config("dead_leaves", num_classes=32, image_size=32)
    images, labels, info = jax.jit(FractalDataset(config).render_with_info)(0, jnp.arange(32))
    images = np.asarray(images)
    assert np.all(np.asarray(labels) == np.arange(32))
    assert not np.asarray(info["degenerate"]).any() and np.all(np.asarray(info["fill"]) == 1)

    def statistics(images, stops):
        visible = [len(np.unique(im.reshape(-1, 3), axis=0)) for im in images]
        return np.column_stack([stops, visible]).astype(float)

    device = statistics(images, np.asarray(info["shapes"]) + 1)

    def reference(exponent, seed):
        rng = np.random.default_rng(seed)
        cdf = ref.radius_cdf(exponent)
        draws = [ref.dead_leaves_image(rng, 32, "mixed", cdf=cdf) for _ in range(32)]
        return statistics(np.stack([d[0] for d in draws]), [d[1] for d in draws])

    def z(a, b):
        se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
        return np.abs(a.mean(0) - b.mean(0)) / se

    assert z(device, reference(3.0, 1)).max() < 4.0
    assert z(device, reference(2.5, 2)).max() > 4.0


def test_an_image_left_uncovered_is_kept_and_flagged():
    config = data_config("dead_leaves", num_classes=4, image_size=32, max_shapes=10)
    images, _, info = jax.jit(FractalDataset(config).render_with_info)(0, jnp.arange(4))
    assert np.asarray(info["degenerate"]).all() and np.all(np.asarray(info["shapes"]) == 10)
    assert np.all(np.asarray(info["fill"]) < 1)
    assert (np.asarray(images).sum(-1) == 0).any()  # black where no leaf fell


# -- Spectrum ---------------------------------------------------------------------------------
def test_spectrum_steps_equal_the_reference_given_the_same_noise():
    size = 32
    f = np.abs(np.fft.fftfreq(size))
    for ax, ay in [(2.0, 2.0), (1.2, 0.9), (3.4, 3.5)]:
        mag = 1.0 / (1e-16 + f[None, :] ** ax + f[:, None] ** ay)
        mag[0, 0] = 0
        np.testing.assert_allclose(spectrum.magnitude(size, ax, ay), mag, rtol=2e-5)
        x = 256 * np.random.default_rng(0).uniform(size=(3, size, size))
        got = spectrum.impose_spectrum(jnp.asarray(x, jnp.float32), jnp.asarray(mag, jnp.float32))
        np.testing.assert_allclose(got, ref.spectrum_impose(x, mag), atol=0.05)
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (size, size, 3))
    for m in range(1, 11):
        lo = (m - 1) // 2
        padded = np.pad(image, ((m, m), (m, m), (0, 0)))
        expected = (
            sum(
                padded[m + i : m + i + size, m + j : m + j + size]
                for i in range(-lo, m - lo)
                for j in range(-lo, m - lo)
            )
            / m**2
        )
        got = spectrum.box_blur(jnp.asarray(image, jnp.float32), jnp.int32(m))
        np.testing.assert_allclose(got, expected, atol=0.05)  # a float32 integral image
    vectors = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    channels, mean = rng.normal(128, 30, (3, size, size)), rng.uniform(0, 255, 3)
    np.testing.assert_allclose(
        spectrum.compose(jnp.asarray(channels), jnp.asarray(mean), jnp.asarray(vectors)),
        ref.spectrum_compose(channels, mean, vectors),
        atol=0.05,
    )


def _spectrum_statistics(images):
    """Per image: log ratio of the grey image's mean power at radial frequencies [1, 2.5) to
    that at [3, 6) (grows with the slope); colour tint (sd of the channel means); mean level;
    contrast (sd of the levels)."""
    images = images.astype(np.float64)
    grey = images.mean(-1)
    power = np.abs(np.fft.fft2(grey - grey.mean((1, 2), keepdims=True))) ** 2
    f = np.abs(np.fft.fftfreq(grey.shape[1]) * grey.shape[1])
    radius = np.hypot(f[None, :], f[:, None])
    low, mid = (radius >= 1) & (radius < 2.5), (radius >= 3) & (radius < 6)
    ratio = np.log(power[:, low].mean(1) / power[:, mid].mean(1))
    return np.column_stack(
        [ratio, images.mean((1, 2)).std(1), images.mean((1, 2, 3)), images.std((1, 2, 3))]
    )


def test_spectrum_images_match_the_reference_in_distribution():
    """96 images at 32 px each: the spectral power ratio, tint, mean level and contrast agree
    with the reference within 4 standard errors of the difference (measured: |z| <= 1.7 over
    three reference seeds); slopes drawn from U(0.5, 2.5) instead of U(0.5, 3.5) are told
    apart (|z| ~ 5.7 on the power ratio)."""
    config = data_config("spectrum", num_classes=96, image_size=32)
    images, _, info = jax.jit(FractalDataset(config).render_with_info)(0, jnp.arange(96))
    slopes = np.asarray(info["slopes"])
    assert 0.3 < slopes.min() and slopes.max() < 3.7
    device = _spectrum_statistics(np.asarray(images))

    def reference(high, seed):
        rng = np.random.default_rng(seed)
        return _spectrum_statistics(
            np.stack([ref.spectrum_image(rng, 32, (0.5, high))[0] for _ in range(96)])
        )

    def z(a, b):
        se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
        return np.abs(a.mean(0) - b.mean(0)) / se

    assert z(device, reference(3.5, 1)).max() < 4.0
    assert z(device, reference(2.5, 2)).max() > 4.0


def test_spectrum_instances_share_their_categorys_slopes_and_colours():
    config = data_config("spectrum", num_classes=3, image_size=32, images_per_category=4)
    render = jax.jit(FractalDataset(config).render_with_info)
    images, labels, info = render(0, jnp.arange(12))
    assert np.asarray(labels).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    slopes = np.asarray(info["slopes"]).reshape(3, 4, 2)
    assert np.all(slopes == slopes[:, :1]) and not np.all(slopes[0, 0] == slopes[1, 0])
    images = np.asarray(images).reshape(3, 4, -1)
    assert not np.array_equal(images[0, 0], images[0, 1])  # fresh phases per instance
    # The image seed changes the phases, not the category.
    _, _, again = render(7, jnp.arange(12))
    np.testing.assert_array_equal(np.asarray(again["slopes"]), np.asarray(info["slopes"]))


@pytest.mark.parametrize(
    "family, overrides, key",
    [
        ("dead_leaves", dict(shapes="hexagons"), "shapes"),
        ("dead_leaves", dict(degenerate="resample"), "degenerate"),
        ("dead_leaves", dict(max_shapes=0), "max_shapes"),
        ("spectrum", dict(min_slope=2.0, max_slope=1.0), "max_slope"),
        ("spectrum", dict(images_per_category=0), "images_per_category"),
    ],
)
def test_bad_config_values_name_the_key(family, overrides, key):
    with pytest.raises(UsageError, match=key):
        build_table(data_config(family, **overrides))
