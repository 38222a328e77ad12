"""Levenberg-Marquardt for many small least-squares or Huber problems at once (lanes).

All lanes step together and a finished lane is frozen; arrays keep the lanes as the minor axis
and the F x F normal equations are unrolled into [B]-vectors, so each iteration is a few fused
loops rather than B tiny matrix calls. Marquardt's diagonal scaling makes the step invariant to
each parameter's units; the damping follows Nielsen (1999). The Huber loss uses the same
iteration with Huber's IRLS weights min(1, delta / |r|) as the curvature of its Gauss-Newton
model (`huber`): the model majorises the loss, so it is a valid model wherever the Gauss-Newton
one is, and at its fixed point the Huber gradient vanishes, so the optimum is the loss's own.

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


def squared(r):
    """The sum of squares' terms at residuals r float[N, B]: (cost r^2, gradient r, curvature
    weights None: the Gauss-Newton model J^T J)."""
    return r**2, r, None


def huber(delta):
    """Huber's loss with per-point thresholds delta float[N, B], as terms of `squared`'s form
    (cost 2 rho(r), gradient psi(r) = clip(r, -delta, delta), curvature weights psi(r) / r =
    min(1, delta / |r|)). A weight w is folded into the residual and threshold: w rho_d(r) =
    rho_{sqrt(w) d}(sqrt(w) r). The weights are Huber's IRLS weights: the model
    2 psi J s + s^T J^T diag(psi / r) J s majorises the loss along the linearisation (rho(sqrt t)
    is concave in t), so unlike the loss's own second derivative (zero outside the quadratic
    zone) it is positive definite and a damped step on it is a descent step."""

    def terms(r):
        size = jnp.abs(r)
        inside = size <= delta
        cost = jnp.where(inside, r**2, delta * (2.0 * size - delta))
        curvature = jnp.where(inside, 1.0, delta / jnp.maximum(size, jnp.finfo(r.dtype).tiny))
        return cost, jnp.clip(r, -delta, delta), curvature

    return terms


def _model(residual, z, basis, loss):
    """At z float[F, B]: (cost float[B], gradient [F][B], Gauss-Newton Hessian [F][F][B])."""
    f = z.shape[0]
    r, jvp = jax.linearize(residual, z)
    jac = jax.vmap(jvp)(basis)  # [F, N, B]: one forward-mode pass per parameter
    cost, psi, curvature = loss(r)
    weighted = jac if curvature is None else jac * curvature[None]
    grad = [sum_points(jac[i] * psi) for i in range(f)]
    hess = [[None] * f for _ in range(f)]
    for i in range(f):
        for j in range(i, f):
            hess[i][j] = hess[j][i] = sum_points(weighted[i] * jac[j])
    return sum_points(cost), grad, hess


def _step(grad, hess, lam):
    """The damped step float[F, B] (Marquardt's diagonal scaling) and the scales [F][B]."""
    f = len(grad)
    tiny = jnp.finfo(lam.dtype).tiny
    dmax = functools.reduce(jnp.maximum, [hess[i][i] for i in range(f)])
    scale = [jnp.sqrt(jnp.maximum(hess[i][i], 1e-14 * dmax) + tiny) for i in range(f)]
    scaled = [
        [hess[i][j] / (scale[i] * scale[j]) + (lam if i == j else 0.0) for j in range(f)]
        for i in range(f)
    ]
    u = cholesky_solve(scaled, [-grad[i] / scale[i] for i in range(f)])
    return jnp.stack([u[i] / scale[i] for i in range(f)]), scale


def levenberg_marquardt(residual, saturated, z0, rounding_cost, tol, max_iter, loss=squared):
    """Minimises sum(cost terms of loss(residual(z))) in every lane: the sum of squares, or
    (loss=huber(delta)) twice the Huber loss, with the curvature weights loss gives.

    residual: float[F, B] -> float[N, B]; saturated: float[F, B] -> bool[F, B] (parameters on a
    bound, see transforms.saturated); z0: float[F, B] (float32 or float64: the lanes compute in
    its precision); rounding_cost: float[B], a cost at which the fit is exact to rounding.
    Returns (z float[F, B], cost float[B], converged bool[B], stalled bool[B], iterations
    int[B]).
    """
    f, b = z0.shape
    dtype = z0.dtype
    tiny = jnp.finfo(dtype).tiny
    basis = jnp.eye(f, dtype=dtype)[:, :, None] * jnp.ones((1, 1, b), dtype)
    total = lambda zz: sum_points(loss(residual(zz))[0])
    zeros, no = jnp.zeros(b, dtype), jnp.zeros(b, bool)
    init = (z0, total(z0), zeros + 1e-3, zeros + 2.0, jnp.zeros(b, jnp.int32), no, no, no, 0)

    def body(state):
        z, cost, lam, nu, it, done, converged, stalled, count = state
        _, grad, hess = _model(residual, z, basis, loss)
        step, scale = _step(grad, hess, lam)
        cost_new = total(z + step)
        predicted = -sum(
            2.0 * grad[i] * step[i] + sum(step[i] * hess[i][j] * step[j] for j in range(f))
            for i in range(f)
        )
        actual = cost - cost_new
        rho = actual / jnp.maximum(predicted, tiny)
        ok = jnp.isfinite(cost_new) & (actual > 0) & ~done
        lam_new = jnp.where(
            ok, lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), lam * nu
        )
        trusted = ok & (rho > 0.25)
        small_step = jnp.sqrt(jnp.sum(step**2, axis=0)) <= tol * (
            jnp.sqrt(jnp.sum(z**2, axis=0)) + tol
        )
        root_cost = jnp.sqrt(jnp.maximum(cost, tiny))
        cosines = [jnp.abs(grad[i]) / scale[i] / root_cost for i in range(f)]
        on_bound = saturated(z)
        free_cosine = functools.reduce(
            jnp.maximum, [jnp.where(on_bound[i], 0.0, cosines[i]) for i in range(f)]
        )
        stuck = lam_new > _MAX_DAMPING
        now_converged = (
            (trusted & ((actual <= tol * cost) | small_step))
            | (functools.reduce(jnp.maximum, cosines) <= tol)
            | (cost <= rounding_cost)
            | (stuck & (free_cosine <= STALL_COSINE))
        )
        now_stalled = stuck & ~now_converged
        it = jnp.where(done, it, it + 1)
        return (
            jnp.where(ok[None], z + step, z),
            jnp.where(ok, cost_new, cost),
            jnp.where(done, lam, lam_new),
            jnp.where(done, nu, jnp.where(ok, 2.0, 2.0 * nu)),
            it,
            done | now_converged | now_stalled | (it >= max_iter),
            converged | (now_converged & ~done),
            stalled | (now_stalled & ~done),
            count + 1,
        )

    z, cost, _, _, it, _, converged, stalled, _ = jax.lax.while_loop(
        lambda s: ~jnp.all(s[5]) & (s[8] < max_iter), body, init
    )
    return z, cost, converged, stalled, it


def in_chunks(residual, saturated, z0, sqrt_w, y, rounding_cost, tol, max_iter, delta=None):
    """Levenberg-Marquardt on lanes z0 float[F, B], each with its weights sqrt_w float[N, B]
    and data y float[N, B] (residual(z, y) -> float[N, B]), run over chunks of at most CHUNK
    lanes one after another. A chunk's working set stays in cache (the cost per lane rises
    several-fold beyond ~10k lanes on CPU), and a chunk stops as soon as its own lanes have
    converged. delta: None (sum of squares) or the Huber threshold (a scalar). Returns what
    levenberg_marquardt returns, for all B lanes."""
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
        loss = squared if delta is None else huber(w * delta)
        return levenberg_marquardt(
            lambda zz: w * residual(zz, yy), saturated, z, floor, tol, max_iter, loss
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
