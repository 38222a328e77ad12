"""Host-side systems: sigma-factor constraints, 1p-frac bounds, FractalDB weight rows and search,
table determinism and save/load."""

import numpy as np
import pytest

from synth_jax.errors import UsageError
from synth_jax.fractals import build_table, data_config
from synth_jax.fractals.engine import ifs, render
from synth_jax.fractals.engine.data_keys import search_spec
from synth_jax.fractals.families import fractaldb, onepfrac, sigma
from synth_jax.fractals.family import load_table, save_table


@pytest.mark.parametrize("sampler", ["sequential", "rejection"])
@pytest.mark.parametrize("num_maps", [2, 4, 7])
def test_sigma_factor_constraints(sampler, num_maps):
    rng = np.random.default_rng(num_maps)
    for _ in range(20):
        s = sigma.default_sigma(rng, num_maps)
        fn = getattr(sigma, f"singular_values_{sampler}")
        sv = fn(rng, num_maps, s)
        assert np.all(sv[:, 1] >= -1e-12) and np.all(sv[:, 1] <= sv[:, 0] + 1e-12)
        assert np.all(sv[:, 0] <= 1 + 1e-12)
        np.testing.assert_allclose(np.sum(sv[:, 0] + 2 * sv[:, 1]), s, rtol=1e-12)


def test_sigma_system_matrices_have_the_sampled_singular_values():
    rng = np.random.default_rng(1)
    for n in (2, 3, 5):
        params = sigma.sample_sigma_system(rng, n, sigma=0.5 * (5 + n) + 0.3)
        sv = ifs.singular_values(params)
        assert np.all(sv[:, 0] <= 1.0 + 1e-9)
        np.testing.assert_allclose(np.sum(sv[:, 0] + 2 * sv[:, 1]), 0.5 * (5 + n) + 0.3)
        np.testing.assert_allclose(params[:, 6], ifs.probabilities_from_det(params))
        assert np.isclose(params[:, 6].sum(), 1.0)


def test_rejection_sampler_is_uniform_on_the_constraint_surface():
    # On N = 2 the surface is 3-dimensional: compare with plain rejection from the box
    # (s1_0, s2_0, s2_1) (slow but obviously uniform), and check that the maps are exchangeable,
    # which the sequential sampler is not.
    rng = np.random.default_rng(0)
    s, n = 3.7, 2
    draws = np.array([sigma.singular_values_rejection(rng, n, s) for _ in range(3000)])
    box = rng.uniform(size=(400_000, 3))
    s1, s2 = box[:, :2].max(1), box[:, :2].min(1)
    last_s2 = box[:, 2]
    last_s1 = s - (s1 + 2 * s2) - 2 * last_s2
    keep = (last_s1 >= last_s2) & (last_s1 <= 1)
    # Standard errors of these means are ~0.003 (3000 draws, sd ~0.15).
    assert abs(draws[:, 0, 0].mean() - s1[keep].mean()) < 0.015
    assert abs(draws[:, 0, 1].mean() - s2[keep].mean()) < 0.015
    assert abs(draws[:, 0, 0].mean() - draws[:, 1, 0].mean()) < 0.02
    sequential = np.array([sigma.singular_values_sequential(rng, n, s) for _ in range(3000)])
    assert abs(sequential[:, 0, 0].mean() - sequential[:, 1, 0].mean()) > 0.05


@pytest.mark.parametrize("mode", ["multiplicative", "additive"])
def test_onepfrac_perturbation_bounds(mode):
    rng = np.random.default_rng(0)
    base = onepfrac.sample_base_system(rng, 3.5, 0.1)
    sv = ifs.singular_values(base)
    assert 3.4 <= np.sum(sv[:, 0] + 2 * sv[:, 1]) <= 3.6
    delta = 0.1
    out = onepfrac.perturb(rng, base, 500, delta, mode)
    if mode == "multiplicative":
        ratio = out[..., :6] / base[None, :, :6]
        assert ratio.min() >= 1 - delta and ratio.max() <= 1 + delta
        assert ratio.min() < 1 - 0.9 * delta and ratio.max() > 1 + 0.9 * delta
    else:
        diff = out[..., :6] - base[None, :, :6]
        assert diff.min() >= -delta / 2 and diff.max() <= delta / 2
    np.testing.assert_array_equal(out[..., 6], np.broadcast_to(base[:, 6], out[..., 6].shape))


def test_fractaldb_weight_rows():
    for variant, factors in fractaldb.WEIGHT_FACTORS.items():
        rows = fractaldb.weight_rows(variant)
        assert rows.shape == (25, 6)
        np.testing.assert_array_equal(rows[0], np.ones(6))
        # Every other row changes exactly one parameter, by one of the four factors.
        changed = rows[1:] != 1
        assert np.all(changed.sum(1) == 1)
        assert sorted(set(rows[1:][changed])) == sorted(factors)


SMALL = dict(num_classes=6, search_points=8192, search_size=64, chains=256, burn_in=16)


@pytest.fixture(scope="module")
def fractaldb_table():
    return build_table(data_config("fractaldb", fill_threshold=0.15, **SMALL))


def test_fill_rate_filter_keeps_only_filled_categories(fractaldb_table):
    config = data_config("fractaldb", fill_threshold=0.15, **SMALL)
    fill, degenerate = render.batch_statistics(fractaldb_table.params, 123, search_spec(config))
    # The statistic is an expectation over patch masks; only the chaos game's points are random.
    assert np.all(fill >= 0.15 - 0.02) and not degenerate.any()
    stats = fractaldb_table.stats
    assert stats["candidates"] >= 6 + stats["rejected_fill"] + stats["rejected_degenerate"] - 64
    assert stats["rejected_fill"] > 0  # random U(-1, 1) systems: many fail the filter
    # The kept categories are the first candidates that pass, in order.
    rng = np.random.default_rng(config.seed)
    cands = fractaldb.sample_candidates(rng, 64, 2, 7)
    fill, degenerate = render.batch_statistics(cands, config.seed, search_spec(config))
    kept = cands[(fill >= 0.15) & ~degenerate][:6].astype(np.float32)
    np.testing.assert_allclose(fractaldb_table.params[: len(kept)], kept)
    # Weight rows that diverge are rendered as row 0, and counted.
    ok = fractaldb_table.variant_ok
    assert ok.shape == (6, 25) and ok[:, 0].all()
    assert stats["replaced_variants"] == int((~ok).sum())


def test_reject_policy_drops_categories_with_degenerate_rows(fractaldb_table):
    table = build_table(data_config("fractaldb", fill_threshold=0.15, degenerate="reject", **SMALL))
    assert table.variant_ok.all()
    assert table.stats["rejected_degenerate"] > 0
    with pytest.raises(UsageError, match="degenerate"):
        build_table(data_config("fractaldb", fill_threshold=0.15, degenerate="error", **SMALL))


def test_table_is_reproducible_and_round_trips(tmp_path, fractaldb_table):
    again = build_table(data_config("fractaldb", fill_threshold=0.15, **SMALL))
    np.testing.assert_array_equal(again.params, fractaldb_table.params)
    path = str(tmp_path / "table.npz")
    save_table(path, fractaldb_table)
    loaded = load_table(path)
    np.testing.assert_array_equal(loaded.params, fractaldb_table.params)
    np.testing.assert_array_equal(loaded.variants, fractaldb_table.variants)
    np.testing.assert_array_equal(loaded.variant_ok, fractaldb_table.variant_ok)
    assert loaded.stats == fractaldb_table.stats
    # table_path: built once, then loaded; a different config is refused by name.
    cfg = data_config(
        "sigma",
        num_classes=3,
        image_size=32,
        points=2048,
        chains=128,
        table_path=str(tmp_path / "s.npz"),
    )
    first = build_table(cfg)
    assert (tmp_path / "s.npz").exists()
    np.testing.assert_array_equal(build_table(cfg).params, first.params)
    cfg.seed = 5
    with pytest.raises(UsageError, match="table_path"):
        build_table(cfg)


def test_sigma_tables_are_contractive_and_seeded():
    cfg = data_config("sigma", num_classes=20, image_size=32, points=2048, chains=128)
    a, b = build_table(cfg), build_table(cfg)
    np.testing.assert_array_equal(a.params, b.params)
    assert np.all(ifs.is_contractive(a.params[..., :6], a.params[..., 6]))
    cfg.seed = 1
    assert not np.array_equal(build_table(cfg).params, a.params)


def test_onepfrac_table_redraws_thin_categories():
    cfg = data_config(
        "onepfrac",
        num_classes=16,
        search_points=8192,
        search_size=64,
        chains=256,
        burn_in=16,
        fill_threshold=0.3,
    )
    table = build_table(cfg)
    fill, _ = render.batch_statistics(table.params, 7, search_spec(cfg))
    assert np.all(fill > 0.3 - 0.02)
    assert table.stats["redrawn"] >= 0 and table.params.shape == (16, 7, 7)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(image_size=1000), "image_size"),
        (dict(patch="dots"), "patch"),
        (dict(weights="0.3"), "weights"),
        (dict(max_maps=9), "max_maps"),
        (dict(fill_threshold=1.5), "fill_threshold"),
    ],
)
def test_bad_config_values_name_the_key(overrides, key):
    with pytest.raises(UsageError, match=key):
        build_table(data_config("fractaldb", **overrides))


def test_unknown_keys_and_families_are_refused():
    with pytest.raises(UsageError, match="delta"):
        data_config("fractaldb", delta=0.1)
    with pytest.raises(UsageError, match="mandelbrot"):
        data_config("mandelbrot")
    cfg = data_config("sigma")
    cfg.colour_space = "lab"
    with pytest.raises(UsageError, match="colour_space"):
        build_table(cfg)
