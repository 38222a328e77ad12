"""Levenberg-Marquardt for many small least-squares problems at once (lanes).

All lanes step together and a finished lane is frozen; arrays keep the lanes as the minor axis
and the F x F normal equations are unrolled into [B]-vectors, so each iteration is a few fused
loops rather than B tiny matrix calls. Marquardt's diagonal scaling makes the step invariant to
each parameter's units; the damping follows Nielsen (1999).

How a lane ends, in the order the tests are made:
- converged: an accepted, well-predicted step changed the cost or z by less than tol (relative),
  or the residual is orthogonal to every Jacobian column (cosine below tol), or the cost is at
  the rounding level of the data;
- stalled: no damping finds a decrease (damping above 1e16) while the residual is still not
  orthogonal to the Jacobian of the parameters that are not on a bound (cosine above
  STALL_COSINE). A stall at a first-order point (a numerical minimum, or a parameter held on its
  bound) counts as converged; any other stall does not;
- out of iterations: neither.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_TINY = 1e-300
# a stalled lane whose residual has cosine at most this with every free Jacobian column sits at
# a first-order optimum to the precision the damping allowed
STALL_COSINE = 1e-6
_MAX_DAMPING = 1e16
CHUNK = 8192


def sum_points(a):
    """Sum over the points axis of a float[N, B]. For small N an unrolled sum of rows: XLA:CPU
    reduces a major axis an order of magnitude slower than it adds N contiguous rows."""
    if a.shape[0] > 64:
        return jnp.sum(a, axis=0)
    return functools.reduce(jnp.add, [a[i] for i in range(a.shape[0])])


def cholesky_solve(a, b):
    """Solves a u = b for a small SPD matrix given as nested lists a[i][j] of [B]-vectors (F is
    static): unrolled, it is a handful of fused elementwise ops over the lanes."""
    f = len(b)
    low = [[None] * f for _ in range(f)]
    for j in range(f):
        diag = a[j][j] - sum(low[j][k] ** 2 for k in range(j))
        low[j][j] = jnp.sqrt(jnp.maximum(diag, _TINY))
        for i in range(j + 1, f):
            low[i][j] = (a[i][j] - sum(low[i][k] * low[j][k] for k in range(j))) / low[j][j]
    fwd = []
    for i in range(f):
        fwd.append((b[i] - sum(low[i][k] * fwd[k] for k in range(i))) / low[i][i])
    out = [None] * f
    for i in reversed(range(f)):
        out[i] = (fwd[i] - sum(low[k][i] * out[k] for k in range(i + 1, f))) / low[i][i]
    return out


def levenberg_marquardt(residual, saturated, z0, rounding_cost, tol, max_iter):
    """Minimises sum(residual(z)^2) in every lane.

    residual: float[F, B] -> float[N, B]; saturated: float[F, B] -> bool[F, B] (parameters on a
    bound, see transforms.saturated); z0: float[F, B]; rounding_cost: float[B], a cost at which
    the fit is exact to rounding. Returns (z float[F, B], cost float[B], converged bool[B],
    stalled bool[B], iterations int[B]).
    """
    f, b = z0.shape
    basis = jnp.eye(f, dtype=z0.dtype)[:, :, None] * jnp.ones((1, 1, b), z0.dtype)
    r0 = residual(z0)
    zeros = jnp.zeros(b, z0.dtype)
    no = jnp.zeros(b, bool)
    init = (
        z0,
        sum_points(r0**2),
        zeros + 1e-3,
        zeros + 2.0,
        jnp.zeros(b, jnp.int32),
        no,
        no,
        no,
        0,
    )

    def body(state):
        z, cost, lam, nu, it, done, converged, stalled, count = state
        r, jvp = jax.linearize(residual, z)
        jac = jax.vmap(jvp)(basis)  # [F, N, B]: one forward-mode pass per parameter
        grad = [sum_points(jac[i] * r) for i in range(f)]
        hess = [[sum_points(jac[i] * jac[j]) for j in range(f)] for i in range(f)]
        dmax = functools.reduce(jnp.maximum, [hess[i][i] for i in range(f)])
        scale = [jnp.sqrt(jnp.maximum(hess[i][i], 1e-14 * dmax) + _TINY) for i in range(f)]
        scaled = [
            [hess[i][j] / (scale[i] * scale[j]) + (lam if i == j else 0.0) for j in range(f)]
            for i in range(f)
        ]
        u = cholesky_solve(scaled, [-grad[i] / scale[i] for i in range(f)])
        step = jnp.stack([u[i] / scale[i] for i in range(f)])
        z_new = z + step
        cost_new = sum_points(residual(z_new) ** 2)
        predicted = -sum(
            2.0 * grad[i] * step[i] + sum(step[i] * hess[i][j] * step[j] for j in range(f))
            for i in range(f)
        )
        actual = cost - cost_new
        rho = actual / jnp.maximum(predicted, _TINY)
        ok = jnp.isfinite(cost_new) & (actual > 0) & ~done
        lam_new = jnp.where(
            ok, lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), lam * nu
        )
        nu_new = jnp.where(ok, 2.0, 2.0 * nu)
        trusted = ok & (rho > 0.25)
        small_cost = trusted & (actual <= tol * cost)
        step_norm = jnp.sqrt(jnp.sum(step**2, axis=0))
        small_step = trusted & (step_norm <= tol * (jnp.sqrt(jnp.sum(z**2, axis=0)) + tol))
        root_cost = jnp.sqrt(jnp.maximum(cost, _TINY))
        cosines = [jnp.abs(grad[i]) / scale[i] / root_cost for i in range(f)]
        cosine = functools.reduce(jnp.maximum, cosines)
        on_bound = saturated(z)
        free_cosine = functools.reduce(
            jnp.maximum, [jnp.where(on_bound[i], 0.0, cosines[i]) for i in range(f)]
        )
        exact = cost <= rounding_cost
        stuck = lam_new > _MAX_DAMPING
        now_converged = (
            small_cost
            | small_step
            | (cosine <= tol)
            | exact
            | (stuck & (free_cosine <= STALL_COSINE))
        )
        now_stalled = stuck & ~now_converged
        converged = converged | (now_converged & ~done)
        stalled = stalled | (now_stalled & ~done)
        it = jnp.where(done, it, it + 1)
        return (
            jnp.where(ok[None], z_new, z),
            jnp.where(ok, cost_new, cost),
            jnp.where(done, lam, lam_new),
            jnp.where(done, nu, nu_new),
            it,
            done | now_converged | now_stalled | (it >= max_iter),
            converged,
            stalled,
            count + 1,
        )

    z, cost, _, _, it, _, converged, stalled, _ = jax.lax.while_loop(
        lambda s: ~jnp.all(s[5]) & (s[8] < max_iter), body, init
    )
    return z, cost, converged, stalled, it


def in_chunks(residual, saturated, z0, sqrt_w, y, rounding_cost, tol, max_iter):
    """Levenberg-Marquardt on lanes z0 float[F, B], each with its weights sqrt_w float[N, B]
    and data y float[N, B] (residual(z, y) -> float[N, B]), run over chunks of at most CHUNK
    lanes one after another. A chunk's working set stays in cache (the cost per lane rises
    several-fold beyond ~10k lanes on CPU), and a chunk stops as soon as its own lanes have
    converged. Returns what levenberg_marquardt returns, for all B lanes."""
    f, b = z0.shape
    chunk = min(CHUNK, b)
    count = -(-b // chunk)
    pad = count * chunk - b
    # padding lanes repeat lane 0, so they are as well-behaved as real ones, and are dropped
    extend = lambda a: jnp.concatenate([a, jnp.repeat(a[..., :1], pad, axis=-1)], axis=-1)
    z0, sqrt_w, y, rounding_cost = map(extend, (z0, sqrt_w, y, rounding_cost))
    split = lambda a: a.reshape(a.shape[0], count, chunk).transpose(1, 0, 2)

    def one_chunk(args):
        z, w, yy, floor = args
        return levenberg_marquardt(
            lambda zz: w * residual(zz, yy), saturated, z, floor, tol, max_iter
        )

    z, cost, converged, stalled, it = jax.lax.map(
        one_chunk, (split(z0), split(sqrt_w), split(y), rounding_cost.reshape(count, chunk))
    )
    flat = lambda a: a.reshape(-1)[:b]
    return (
        z.transpose(1, 0, 2).reshape(f, -1)[:, :b],
        flat(cost),
        flat(converged),
        flat(stalled),
        flat(it),
    )
