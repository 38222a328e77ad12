"""The Huber loss by Levenberg-Marquardt (Huber's IRLS curvature weights): its terms and step
against references, refits that reach SciPy's optimum, lanes at the iteration cap, batching."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synth_jax import scaling
from synth_jax.scaling import levenberg_marquardt as lm
from synth_jax.scaling import solver
from synth_jax.scaling.bootstrap import case_weights

N10 = np.geomspace(1e3, 1e6, 10)


def _rho(r, delta):
    return np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))


def test_huber_terms_fold_the_weights_into_residual_and_threshold():
    rng = np.random.default_rng(0)
    r, delta = 0.01 * rng.standard_normal((30, 3)), 1e-3
    w = rng.integers(0, 4, size=(30, 3)).astype(np.float64)
    with jax.enable_x64(True):
        cost, psi, curvature = (
            np.asarray(a) for a in lm.huber(jnp.sqrt(w) * delta)(jnp.sqrt(w) * r)
        )
    # cost terms are twice w rho(r); the gradient of w rho(r) in r is w psi(r)
    np.testing.assert_allclose(cost, 2 * w * _rho(r, delta), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(np.sqrt(w) * psi, w * np.clip(r, -delta, delta), rtol=1e-12)
    inside = np.abs(r) <= delta
    np.testing.assert_allclose(curvature[inside & (w > 0)], 1.0)
    np.testing.assert_allclose(
        curvature[~inside & (w > 0)], (delta / np.abs(r))[~inside & (w > 0)], rtol=1e-12
    )


def test_undamped_huber_step_is_the_irls_step():
    # residual(z) = A z - b, one lane: the Gauss-Newton step on Huber's weights solves
    # (A^T C A) s = -A^T psi(r), C = diag(min(1, delta / |r|)) (iteratively reweighted LS)
    rng = np.random.default_rng(1)
    a, b, z = rng.standard_normal((40, 3)), rng.standard_normal(40), rng.standard_normal(3)
    delta = 0.5
    r = a @ z - b
    c = np.minimum(1.0, delta / np.abs(r))
    want = np.linalg.solve(a.T @ (c[:, None] * a), -a.T @ np.clip(r, -delta, delta))
    with jax.enable_x64(True):
        residual = lambda zz: jnp.asarray(a) @ zz - jnp.asarray(b)[:, None]
        basis = jnp.eye(3)[:, :, None]
        loss = lm.huber(jnp.full((40, 1), delta))
        cost, grad, hess = lm._model(residual, jnp.asarray(z)[:, None], basis, loss)
        step, _ = lm._step(grad, hess, jnp.zeros(1) + 1e-14)
    np.testing.assert_allclose(np.asarray(step)[:, 0], want, rtol=1e-8)
    assert float(cost[0]) == pytest.approx(2 * np.sum(_rho(r, delta)), rel=1e-12)


def test_chinchilla_huber_fit_and_refits_reach_scipys_optimum(capsys):
    # the bench's row at small settings: 40 points, 8 of the 243 starts, 4 refits (every start
    # screened in float32, the best 4 polished), each beside SciPy's L-BFGS-B from those starts
    from synth_jax import bench

    argv = ["fit", "--law", "chinchilla", "--points", "40", "--starts", "8"]
    argv += ["--replicates", "4", "--scipy-replicates", "4", "--repeats", "1"]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("fit_vs_scipy", "refits_vs_scipy"):
        assert report[key]["no_worse_than_scipy"] == 1.0
        assert report[key]["max_rel_diff"] < 1e-6
    assert report["refits_converged"] == 1.0 and report["refit_lanes_at_iteration_cap"] == 0
    assert report["scipy_projected"] is False and report["speedup_bootstrap"] > 0


def test_lanes_that_stop_at_the_iteration_cap_are_counted():
    y = 2.0 * N10**-0.3 + 0.25 + 0.002 * np.sin(np.arange(10))
    problem = scaling.prepare("mikami", N10, y, loss="huber")
    short = solver.solve(problem, max_iter=2)
    assert short.status(0) == "max_iter"
    assert short.capped[0] == len(problem.starts)
    full = solver.solve(problem)
    assert full.status(0) == "converged" and full.capped[0] == 0
    # a bootstrap's record counts them over its refits (4 polished starts each)
    capped = scaling.fit("mikami", N10, y, loss="huber", bootstrap=8, max_iter=2).bootstrap
    assert 0 < capped.starts_at_iteration_cap <= 4 * capped.refits
    assert capped.not_converged > 0


def test_refits_in_several_calls_match_one_call_and_show_progress(monkeypatch, capsys):
    rng = np.random.default_rng(3)
    y = (2.0 * N10**-0.3 + 0.25) * np.exp(0.01 * rng.standard_normal(10))
    problem = scaling.prepare("mikami", N10, y, loss="huber")
    weights = case_weights(10, 8, rng)
    one = solver.solve(problem, weights, polish=4, progress="refits")
    assert capsys.readouterr().err == ""  # one call: no progress line
    monkeypatch.setattr(solver, "POINT_LANES_PER_CALL", 2 * 10 * len(problem.starts))
    assert solver.problems_per_call(problem) == 2
    split = solver.solve(problem, weights, polish=4, progress="refits")
    assert "refits: 8/8 (100.0%)" in capsys.readouterr().err
    np.testing.assert_allclose(split.objective, one.objective, rtol=1e-12)
    np.testing.assert_allclose(split.params, one.params, rtol=1e-9)
