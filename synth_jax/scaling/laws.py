"""Scaling laws: a pure `jnp` function of (params, *x) plus named parameters with bounds.

A law maps a dict of scalar parameters and one array per input variable (each float[N]) to the
predicted error float[N]. Each parameter has bounds (the fitter keeps it inside them through a
smooth transform), a scale ("linear", or "log" for positive scale factors spanning decades) and
a few initial values; the default start grid is their Cartesian product. Adding a law:

    LAWS["power"] = Law("power", "b * x^-c", lambda p, x: p["b"] * x ** -p["c"],
                        (Param("b", 1e-8, 1e8, (0.1, 1, 10), "log"), Param("c", 0, 3, (0.2, 0.5))))

Formulas follow the papers: mikami, mikami2: Mikami et al., "A Scaling Law for Synthetic-to-Real
Transfer: How Much Is Your Pre-training Effective?" (ECML PKDD 2022); m1-m4: Alabdulmohsin et
al., "Revisiting Neural Scaling Laws in Language and Vision" (NeurIPS 2022); chinchilla: Hoffmann
et al., "Training Compute-Optimal Large Language Models" (NeurIPS 2022); bnsl: Caballero et al.,
"Broken Neural Scaling Laws" (ICLR 2023).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Param:
    """A named parameter: bounds [lower, upper] (either may be infinite), initial values, scale.

    `init_x_quantiles` (for break locations) places initial values at these quantiles of the
    log input range instead of fixed numbers.
    """

    name: str
    lower: float
    upper: float
    init: tuple[float, ...] = ()
    scale: str = "linear"
    init_x_quantiles: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True, eq=False)
class Law:
    """A scaling law. `fn(params: dict[str, scalar], *x: float[N]) -> float[N]`.

    `floor(params)` is the error as the (first) input goes to infinity (the transfer gap), when
    the law has one; the planner uses it to say a target is unreachable. Laws hash by identity,
    so the jitted fitter compiles once per law.
    """

    name: str
    formula: str
    fn: Callable
    params: tuple[Param, ...]
    num_inputs: int = 1
    floor: Callable | None = None

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise UsageError(
            f"law {self.name!r} has no parameter {name!r}; its parameters: "
            f"{', '.join(self.param_names)}"
        )

    def __call__(self, params: dict, *x):
        return self.fn(params, *x)

    def init_grid(self, free: tuple[str, ...], x: np.ndarray) -> np.ndarray:
        """The default start grid float64[S, len(free)]: product of the free parameters' inits.

        x: float64[N, num_inputs], used for `init_x_quantiles` parameters.
        """
        axes = []
        for name in free:
            p = self.param(name)
            if p.init_x_quantiles:
                lo, hi = np.log(np.min(x[:, 0])), np.log(np.max(x[:, 0]))
                axes.append(tuple(float(np.exp(lo + q * (hi - lo))) for q in p.init_x_quantiles))
            else:
                axes.append(p.init)
        return np.array(list(itertools.product(*axes)), dtype=np.float64).reshape(-1, len(free))


def _pow(x, e):
    """x ** e for x > 0 via exp/log: stable for huge x and small exponents, and differentiable."""
    return jnp.exp(e * jnp.log(x))


def _mikami(p, n):
    return p["D"] * _pow(n, -p["alpha"]) + p["C"]


def _mikami2(p, n, s):
    return p["delta"] * (p["gamma"] + _pow(n, -p["alpha"])) * _pow(s, -p["beta"])


def _m1(p, x):
    return p["b"] * _pow(x, p["c"])


def _m2(p, x):
    return p["e_inf"] + p["b"] * _pow(x, p["c"])


def _m3(p, x):
    return p["b"] * _pow(1.0 / x + p["g"], p["c"])


def _m4(p, x):
    """Solves (L - e_inf) / (e_0 - L)^a = b x^c for L in (e_inf, e_0).

    The left side increases in L on that interval, so bisection brackets the root to 2^-36 of
    the interval, a (gradient-stopped) Newton step takes it to rounding, and a last Newton step
    gives the implicit-function derivative wrt the parameters.
    """
    e_inf, e_0, a = p["e_inf"], jnp.maximum(p["e_0"], p["e_inf"]), p["a"]
    rhs = p["b"] * _pow(x, p["c"])

    def g(L):
        return (L - e_inf) - rhs * jnp.maximum(e_0 - L, 0.0) ** a

    lo0, hi0 = jax.lax.stop_gradient((e_inf * jnp.ones_like(x), e_0 * jnp.ones_like(x)))
    g_sg = jax.lax.stop_gradient

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = g_sg(g(mid)) < 0
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    def newton(root):
        slope = 1.0 + rhs * a * jnp.maximum(e_0 - root, 1e-300) ** (a - 1.0)
        return root - g(root) / slope

    lo, hi = jax.lax.fori_loop(0, 36, bisect, (lo0, hi0))
    mid = 0.5 * (lo + hi)
    # the Newton step must stay in the bracket (where g is increasing and the root unique)
    root = jax.lax.stop_gradient(jnp.clip(newton(mid), lo, hi))
    return newton(root)


def _chinchilla(p, N, D):
    return p["E"] + p["A"] * _pow(N, -p["a"]) + p["B"] * _pow(D, -p["b"])


def _bnsl(p, x):
    # y = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1), written with log1p(exp) so large x/d1 is safe
    log_break = jax.nn.softplus((jnp.log(x) - jnp.log(p["d1"])) / p["f1"])
    return p["a"] + p["b"] * jnp.exp(-p["c0"] * jnp.log(x) - p["c1"] * p["f1"] * log_break)


_SCALE = dict(lower=1e-8, upper=1e8, scale="log")
_EXPONENT = (0.1, 0.3, 0.6, 1.0)

LAWS: dict[str, Law] = {
    "mikami": Law(
        "mikami",
        "D * n^-alpha + C",
        _mikami,
        (
            Param("D", init=(0.3, 1.0, 3.0, 10.0), **_SCALE),
            Param("alpha", 0.0, 3.0, _EXPONENT),
            Param("C", 0.0, 1.0, (0.0, 0.2, 0.5, 0.8)),
        ),
        floor=lambda p: p["C"],
    ),
    "mikami2": Law(
        "mikami2",
        "delta * (gamma + n^-alpha) * s^-beta",
        _mikami2,
        (
            Param("delta", init=(0.3, 1.0, 3.0), **_SCALE),
            Param("gamma", 0.0, 10.0, (0.0, 0.1, 0.5)),
            Param("alpha", 0.0, 3.0, _EXPONENT),
            Param("beta", 0.0, 3.0, (0.1, 0.3, 0.6)),
        ),
        num_inputs=2,
    ),
    "m1": Law(
        "m1",
        "b * x^c",
        _m1,
        (
            Param("b", init=(0.3, 1.0, 3.0, 10.0), **_SCALE),
            Param("c", -3.0, 0.0, (-0.1, -0.3, -0.6)),
        ),
        floor=lambda p: 0.0,
    ),
    "m2": Law(
        "m2",
        "e_inf + b * x^c",
        _m2,
        (
            Param("e_inf", 0.0, 1.0, (0.0, 0.2, 0.5, 0.8)),
            Param("b", init=(0.3, 1.0, 3.0, 10.0), **_SCALE),
            Param("c", -3.0, 0.0, (-0.1, -0.3, -0.6, -1.0)),
        ),
        floor=lambda p: p["e_inf"],
    ),
    "m3": Law(
        "m3",
        "b * (1/x + g)^c",
        _m3,
        (
            Param("b", init=(0.3, 1.0, 3.0), **_SCALE),
            # g ~ 1/(size where the curve bends): log scale; 1e-12 acts as "no floor"
            Param("g", 1e-12, 1e2, (1e-6, 1e-4, 1e-2), "log"),
            Param("c", 0.0, 3.0, _EXPONENT),
        ),
        floor=lambda p: p["b"] * p["g"] ** p["c"],
    ),
    "m4": Law(
        "m4",
        "(L - e_inf) / (e_0 - L)^a = b * x^c",
        _m4,
        (
            Param("e_inf", 0.0, 1.0, (0.0, 0.2, 0.5)),
            Param("e_0", 0.0, 1.0, (1.0,)),
            Param("a", 0.0, 5.0, (0.5, 1.0, 2.0)),
            Param("b", init=(0.3, 1.0, 3.0, 10.0), **_SCALE),
            Param("c", -3.0, 0.0, (-0.1, -0.3, -0.6)),
        ),
        floor=lambda p: p["e_inf"],
    ),
    "chinchilla": Law(
        "chinchilla",
        "E + A / N^a + B / D^b",
        _chinchilla,
        (
            Param("E", 0.0, 10.0, (0.0, 0.3, 0.6)),
            Param("A", init=(1.0, 10.0, 100.0), **_SCALE),
            Param("a", 0.0, 3.0, (0.1, 0.3, 0.6)),
            Param("B", init=(1.0, 10.0, 100.0), **_SCALE),
            Param("b", 0.0, 3.0, (0.1, 0.3, 0.6)),
        ),
        num_inputs=2,
    ),
    "bnsl": Law(
        "bnsl",
        "a + b * x^-c0 * (1 + (x/d1)^(1/f1))^(-c1 * f1)",
        _bnsl,
        (
            Param("a", 0.0, 1.0, (0.0, 0.3)),
            Param("b", init=(1.0, 10.0), **_SCALE),
            Param("c0", 0.0, 3.0, (0.1, 0.5)),
            Param("c1", -3.0, 3.0, (-0.3, 0.3)),
            Param("d1", init_x_quantiles=(0.3, 0.7), **_SCALE | dict(upper=1e15)),
            Param("f1", 1e-2, 1e2, (0.3, 3.0), "log"),
        ),
        floor=lambda p: p["a"],
    ),
}


def get_law(name: str) -> Law:
    if name not in LAWS:
        raise UsageError(f"unknown law {name!r}; one of: {', '.join(LAWS)}")
    return LAWS[name]
