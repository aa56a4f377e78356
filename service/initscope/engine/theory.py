"""Mean-field theory of signal propagation through a dense network at initialisation.

Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli (2016), "Exponential expressivity in deep neural
networks through transient chaos", arXiv:1606.05340; Schoenholz, Gilmer, Ganguli &
Sohl-Dickstein (2017), "Deep information propagation", arXiv:1611.01232; Hayou, Doucet &
Rousseau (2019), "On the impact of the activation function on deep neural networks training",
arXiv:1902.06853 (ReLU-like networks on the edge of chaos).

Depth scales come from the slopes of the length map and of the *normalised* correlation map
(``correlation_slope``); the latter is 1 for the ReLU family without bias whatever sigma_w2, so
there correlations approach 1 polynomially, not exponentially (``correlation_gap_constant``).
The edge of chaos is found on the critical line parametrised by q* (``edge_of_chaos``):
``critical_sigma_w2`` is chi_1(q*) = 1 at the given bias, q* = 0 included; ``critical_point``
is the point to recommend, with q* kept away from 0 (``Q_AWAY``) by raising the bias if need
be, or the nearest point with a finite q* where an activation has no edge.

Conventions (those of ``initscope.engine.simulation``): layer ``l`` computes
``a_l = h_{l-1} @ W_l + b_l``, ``h_l = phi(a_l)`` with ``W ~ N(0, sigma_w2 / fan_in)`` and
``b ~ N(0, sigma_b2)``. ``q`` is the variance of a pre-activation ``a`` over the weights (for a
wide layer: ``E[a^2]`` over samples and units), ``Dz`` the standard Gaussian measure and
``E[f(sqrt(q) z)] = Int Dz f(sqrt(q) z)``. Every function takes an activation object from
``initscope.engine.activations`` and uses its ``forward`` and ``derivative`` on float64 arrays;
ReLU, leaky ReLU, linear and hard tanh use closed forms.

Quadrature. ``E[f(sqrt(q) z)]`` has two scales: the Gaussian's (1 in ``z``) and the
activation's (about 1 in ``u = sqrt(q) z``, i.e. ``1/sqrt(q)`` in ``z``), and ELU, SELU and hard
tanh have kinks. Probabilists' Gauss-Hermite with ``NODES`` nodes is accurate to 4e-10 for an
analytic phi while ``q <= GAUSS_HERMITE_MAX_Q`` (in units of the activation's own scale) but
fails beyond (tanh, 150 nodes: 7e-4 error at q = 10, 4e-2 at q = 100; the integrand's complex
poles approach the real axis like ``1/sqrt(q)``) and for kinks at any q. There the integral is
split: composite Gauss-Legendre (``LEGENDRE_ORDER`` nodes per panel) on ``|z| <= Z_MAX``, with panel
ends on the unit grid of ``z`` and at each kink / feature centre ``c`` plus
``c +- 2^k * scale / sqrt(q)`` (k = -2 ... 8) so that panels follow the activation's scale down
to ``1/sqrt(q)``. Measured against ``scipy.integrate.quad`` (tests/test_theory.py) over q in
[1e-4, 1e3] for sigmoid, tanh, GELU, SiLU, softplus, ELU and SELU: the split rule to 1e-13, the
Gauss-Hermite range to 4e-10 (worst: tanh at q = 1).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

import numpy as np

from initscope.engine.activations import (
    GELU,
    ActivationFn,
    FloatArray,
    HardTanh,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from initscope.engine.special import brentq, gammainc_3_2, gammaincc_3_2, minimize_bounded, ndtr
from initscope.jobs import LayerSpec
from initscope.labels import layer_span

__all__ = [
    "BIAS_GRID",
    "GAUSS_HERMITE_MAX_Q",
    "LEGENDRE_ORDER",
    "NODES",
    "PHASE_TOL",
    "Q_AWAY",
    "Q_MAX",
    "Z_MAX",
    "CriticalPoint",
    "LayerTheory",
    "Phase",
    "c_star",
    "chi_1",
    "chi_1_at_fixed_point",
    "correlation_gap_constant",
    "correlation_map",
    "correlation_slope",
    "critical_point",
    "critical_sigma_w2",
    "depth_scales",
    "edge_of_chaos",
    "expect",
    "fixed_point",
    "gauss_hermite",
    "length_map",
    "length_map_slope",
    "mean_derivative_sq",
    "nearest_to_critical",
    "not_modelled",
    "phase",
    "predicted_relative_to_last",
    "propagate",
    "second_moment",
    "trainable_depth",
]

Phase = Literal["ordered", "critical", "chaotic"]
RealFn = Callable[[FloatArray], FloatArray]

NODES: Final = 100
"""Gauss-Hermite nodes of the fast rule (1-D, and per axis of the 2-D tensor rule)."""
GAUSS_HERMITE_MAX_Q: Final = 1.0
"""Largest ``q / scale^2`` for which an analytic phi is integrated by Gauss-Hermite alone."""
LEGENDRE_ORDER: Final = 16
"""Gauss-Legendre nodes per panel of the split rule."""
Z_MAX: Final = 10.0
"""The split rule integrates over ``|z| <= Z_MAX``; the Gaussian mass beyond is 1.5e-23."""
PHASE_TOL: Final = 0.01
"""``|chi_1 - 1| <= PHASE_TOL`` is called critical: a 1 % per-layer change compounds to
1.01^50 = e^0.5 over 50 layers, less than a factor 2 in signal or gradient."""
Q_AWAY: Final = 0.1
"""The smallest q* counted as away from 0 (pre-activation RMS 0.32) by ``critical_point`` and
``nearest_to_critical``.
There the activations here are no longer linear: tanh's ``E[tanh(u)^2] / q`` is 0.84 and its
``E[tanh'(u)^2]`` 0.85 (ELU 0.82, SELU 0.73 of their q -> 0 values), and on the critical line
the length map's slope at q* is 0.84 (SELU 0.85, ELU 0.91), so q settles exponentially within
xi_q = 6 layers (ELU 11). At q* = 0.01 tanh is linear to 2 % and xi_q = 51 layers; at q* = 0
the network is linear in the limit and its signal fades (only polynomially where chi_1(0) = 1,
tanh at sigma_w2 = 1: q_l ~ 1 / (2 l)). (Hard tanh, linear on [-1, 1], still clips only 0.16 %
of its inputs at q = 0.1.)"""
Q_MAX: Final = 1e4
"""The largest q* of a "nearest" point (``nearest_to_critical``), ``1 / PHASE_TOL^2``: at
q = 1e4 an unbounded phi is within about ``1 / sqrt(q)`` = 1 % of its ReLU-like limit
(``E[phi'^2]`` differs from its q -> inf value by 0.1 % for GELU, 0.8 % for softplus, 1.1 % for
SELU), so beyond it chi_1 moves less than PHASE_TOL and the network behaves like a ReLU one
with a bias, which has no edge of chaos."""
BIAS_GRID: Final = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The sigma_b2 values ``critical_point`` tries, in order, above the requested one."""

_Z_GRID: Final = np.arange(-Z_MAX, Z_MAX + 1.0)
_POWERS: Final = 2.0 ** np.arange(-2, 9)
_OFFSETS: Final = np.concatenate([-_POWERS[::-1], [0.0], _POWERS])
_INV_SQRT_2PI: Final = 1.0 / math.sqrt(2.0 * math.pi)
_TINY: Final = 1e-150  # one-sided limits phi'(0-), phi'(0+)
_Q_START: Final = 1.0  # fixed_point iterates the length map from here
_Q_CEILING: Final = 1e30  # a length map still growing here is taken to diverge
_Q_FLOOR: Final = 1e-30  # ... and one still shrinking here (with L(0) = 0) to converge to 0
_NOISE: Final = 1e-10  # |q' - q| below this fraction of q is quadrature rounding, not a sign
_CRITICAL_GRID: Final = 49  # log-spaced sigma_w2 points scanned for a sign change
_CRITICAL_CHECK: Final = 1e-6  # |chi_1 - 1| accepted at a root (rejects jumps of chi_1)
_EDGE_Q: Final = np.geomspace(1e-8, 1e8, 257)  # q* samples of the critical line, 16 per decade
_EDGE_NOISE: Final = 1e-9  # |sigma_b2(q) - target| below this fraction of q has no sign
_OUTSIDE: Final = 1e6  # nearest_to_critical's distance for a q* outside [Q_AWAY, Q_MAX]


# -- quadrature rules ---------------------------------------------------------------------------


@lru_cache(maxsize=8)
def gauss_hermite(nodes: int) -> tuple[FloatArray, FloatArray]:
    """Probabilists' Gauss-Hermite nodes ``z_i`` and weights ``w_i`` with ``sum w_i = 1``.

    ``sum_i w_i f(z_i) ~= Int Dz f(z) = E[f(z)], z ~ N(0, 1)``, exact for polynomials of degree
    ``< 2 nodes`` (``numpy.polynomial.hermite_e.hermegauss`` weights divided by sqrt(2 pi)).
    Cached; the arrays are read-only.
    """
    if nodes < 1:
        raise ValueError(f"nodes must be positive, got {nodes}")
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w * _INV_SQRT_2PI
    z.flags.writeable = False
    w.flags.writeable = False
    return z, w


@lru_cache(maxsize=1)
def _legendre() -> tuple[FloatArray, FloatArray]:
    return np.polynomial.legendre.leggauss(LEGENDRE_ORDER)


def _breaks(centres: FloatArray, scale: FloatArray) -> FloatArray:
    """Panel ends, sorted along the last axis: the unit z grid and graded points per centre.

    ``centres`` ``(..., C)`` are feature positions in z, ``scale`` ``(...)`` their width in z;
    the result ``(..., 21 + 23 C)`` is clipped to ``[-Z_MAX, Z_MAX]`` (repeats give empty panels).
    """
    around = centres[..., :, None] + scale[..., None, None] * _OFFSETS
    around = around.reshape(*centres.shape[:-1], -1)
    grid = np.broadcast_to(_Z_GRID, (*centres.shape[:-1], _Z_GRID.size))
    ends = np.concatenate([grid, around], axis=-1)
    np.clip(ends, -Z_MAX, Z_MAX, out=ends)
    ends.sort(axis=-1)
    return ends


def _panels(ends: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes on each panel ``[ends[k], ends[k+1]]`` (along the last axis) and
    their weights times the standard normal density: ``sum w f(z) ~= Int_{ends} Dz f(z)``.
    Shapes ``(..., (K - 1) * LEGENDRE_ORDER)``."""
    x, w = _legendre()
    low = ends[..., :-1, None]
    half = 0.5 * (ends[..., 1:, None] - low)
    z = low + half + half * x
    weights = half * w * np.exp(-0.5 * z * z) * _INV_SQRT_2PI
    flat = (*ends.shape[:-1], -1)
    return z.reshape(flat), weights.reshape(flat)


def _split_rule(groups: Sequence[tuple[FloatArray, float]]) -> tuple[FloatArray, FloatArray]:
    """1-D split rule: panel ends from ``(centres_z, scale_z)`` groups, empty panels dropped."""
    ends = np.unique(np.concatenate([_breaks(c, np.asarray(s)) for c, s in groups]))
    return _panels(ends)


def expect(f: RealFn, q: float, *, centres: Sequence[float] = (0.0,), scale: float = 1.0) -> float:
    """``E[f(sqrt(q) z)] = Int Dz f(sqrt(q) z)`` (Poole et al. 2016), by the split rule.

    ``f`` maps a float64 array of ``u = sqrt(q) z`` to values elementwise; ``centres`` are the
    u-positions of its kinks or features and ``scale`` their width in u (1 for the standard
    activations). Gauss-Legendre panels on ``|z| <= Z_MAX`` refined around each centre down to
    ``scale / sqrt(q) / 4`` (module docstring). ``q = 0`` gives ``f(0)``.
    """
    _check_q(q)
    if math.isinf(q):
        raise ValueError("expect needs a finite q")
    if q == 0.0:
        return float(f(np.zeros(1))[0])
    sd = math.sqrt(q)
    z, w = _split_rule([(np.asarray(centres, dtype=np.float64) / sd, scale / sd)])
    with np.errstate(over="ignore"):  # f(u) beyond the float range is inf, and so is E[f]
        return float(w @ f(sd * z))


# -- what the theory needs to know about an activation --------------------------------------


@dataclass(frozen=True)
class _Shape:
    """Quadrature facts: kink/feature centres in u, their width, and whether phi is analytic
    (to ~1e-8) on the real line, so that Gauss-Hermite applies while q / scale^2 is small."""

    centres: tuple[float, ...]
    scale: float
    analytic: bool


def _shape(activation: ActivationFn) -> _Shape:
    if isinstance(activation, Sigmoid | Tanh | GELU | SiLU):
        return _Shape((0.0,), 1.0, analytic=True)
    if isinstance(activation, Softplus):
        # PyTorch switches to the identity above threshold / beta: a jump of
        # log1p(exp(-threshold)) / beta in phi (2e-9 / beta at the default threshold 20).
        scale = 1.0 / activation.beta
        jump = math.log1p(math.exp(-activation.threshold))
        return _Shape((0.0, activation.threshold * scale), scale, analytic=jump <= 1e-8)
    if isinstance(activation, HardTanh):
        width = activation.max_val - activation.min_val
        return _Shape((activation.min_val, activation.max_val), width, analytic=False)
    return _Shape((0.0,), 1.0, analytic=False)  # ELU, SELU, ReLU family, anything else


def _piecewise_linear_slope(activation: ActivationFn) -> float | None:
    """``s`` for ``phi(u) = max(u, 0) + s min(u, 0)``: ReLU 0, leaky ReLU its slope, linear 1."""
    if isinstance(activation, ReLU):
        return 0.0
    if isinstance(activation, LeakyReLU):
        return activation.negative_slope
    if isinstance(activation, Linear):
        return 1.0
    return None


def _phi(activation: ActivationFn) -> RealFn:
    return activation.forward


def _dphi(activation: ActivationFn) -> RealFn:
    def dphi(u: FloatArray) -> FloatArray:
        return activation.derivative(u, activation.forward(u))

    return dphi


def _activation_expect(activation: ActivationFn, f: RealFn, q: float) -> float:
    """``E[f(sqrt(q) z)]`` for ``f`` built from ``activation``: Gauss-Hermite (NODES) for an
    analytic phi with ``q <= GAUSS_HERMITE_MAX_Q scale^2``, the split rule otherwise; q > 0."""
    shape = _shape(activation)
    sd = math.sqrt(q)
    if shape.analytic and q <= GAUSS_HERMITE_MAX_Q * shape.scale**2:
        z, w = gauss_hermite(NODES)
        return float(w @ f(sd * z))  # |u| <= 14 scale: no overflow
    return expect(f, q, centres=shape.centres, scale=shape.scale)


def _one_sided(f: RealFn) -> float:
    """``(f(0-) + f(0+)) / 2``: the q -> 0 limit of ``E[f(sqrt(q) z)]`` for piecewise-smooth f."""
    values = f(np.array([-_TINY, _TINY]))
    return float(values.mean())


def _gauss_mass(alpha: float, beta: float) -> float:
    """``Phi(beta) - Phi(alpha)`` without cancellation in the upper tail."""
    if alpha > 0.0:
        return float(ndtr(-alpha) - ndtr(-beta))
    return float(ndtr(beta) - ndtr(alpha))


def _inner_z2(alpha: float, beta: float) -> float:
    """``Int_alpha^beta z^2 Dz`` for ``alpha <= beta``, without cancellation.

    ``Int_0^x z^2 Dz = P(3/2, x^2 / 2) / 2`` (regularised lower incomplete gamma; substitute
    ``t = z^2 / 2``) and the integrand is even, so an interval across 0 is a sum of two such
    terms and one on a side of 0 a difference of lower (near 0) or upper tails
    ``Q(3/2, .)``. The closed form ``Phi(beta) - Phi(alpha) - (beta pdf(beta) - alpha
    pdf(alpha))`` cancels to rounding when both ends are near 0 (hard tanh at q = 1e24 gave
    a negative E[phi^2]). Agrees with ``scipy.integrate.quad`` to 5e-15 (tests)."""
    if alpha >= 0.0:  # one side of 0: the difference of whichever tails are small
        a, b = 0.5 * alpha * alpha, 0.5 * beta * beta
        if b <= 1.5:
            return 0.5 * float(gammainc_3_2(b) - gammainc_3_2(a))
        return 0.5 * float(gammaincc_3_2(a) - gammaincc_3_2(b))
    if beta <= 0.0:
        return _inner_z2(-beta, -alpha)
    return 0.5 * float(gammainc_3_2(0.5 * alpha * alpha) + gammainc_3_2(0.5 * beta**2))


# -- single-unit maps -----------------------------------------------------------------------------


def second_moment(activation: ActivationFn, q: float) -> float:
    """``E[phi(sqrt(q) z)^2] = Int Dz phi(sqrt(q) z)^2`` (Poole et al. 2016, length map).

    Closed forms: ``(1 + s^2) q / 2`` for ``max(u,0) + s min(u,0)`` (ReLU s = 0, leaky, linear
    s = 1); hard tanh on ``[lo, hi]`` with ``alpha, beta = lo, hi / sqrt(q)``:
    ``lo^2 Phi(alpha) + hi^2 (1 - Phi(beta)) + q Int_alpha^beta z^2 Dz``. ``q = 0`` gives
    ``phi(0)^2``; ``q = inf`` gives ``inf`` for an unbounded phi, else ``(phi(-inf)^2 +
    phi(inf)^2) / 2``.
    """
    _check_q(q)
    slope = _piecewise_linear_slope(activation)
    if slope is not None:
        return (1.0 + slope * slope) * q / 2.0
    if q == 0.0:
        return float(activation.forward(np.zeros(1))[0] ** 2)
    if math.isinf(q):
        if not activation.bounded:
            return math.inf
        return float(np.mean(activation.forward(np.array([-math.inf, math.inf])) ** 2))
    if isinstance(activation, HardTanh):
        sd = math.sqrt(q)
        lo, hi = activation.min_val, activation.max_val
        alpha, beta = lo / sd, hi / sd
        tails = lo * lo * float(ndtr(alpha)) + hi * hi * float(ndtr(-beta))
        return tails + q * _inner_z2(alpha, beta)
    phi = _phi(activation)
    return _activation_expect(activation, lambda u: np.square(phi(u)), q)


def mean_derivative_sq(activation: ActivationFn, q: float) -> float:
    """``E[phi'(sqrt(q) z)^2] = Int Dz phi'(sqrt(q) z)^2`` (Poole et al. 2016; Schoenholz et al.
    2017: chi_1 without the sigma_w2).

    Closed forms: ``(1 + s^2) / 2`` for the ReLU family (the kink has measure zero);
    ``Phi(hi/sqrt q) - Phi(lo/sqrt q)`` for hard tanh. ``q = 0`` gives the limit
    ``(phi'(0-)^2 + phi'(0+)^2) / 2`` (= phi'(0)^2 where phi is differentiable); ``q = inf`` gives
    ``(phi'(-inf)^2 + phi'(inf)^2) / 2``.
    """
    _check_q(q)
    slope = _piecewise_linear_slope(activation)
    if slope is not None:
        return (1.0 + slope * slope) / 2.0
    dphi = _dphi(activation)
    if q == 0.0:
        return _one_sided(lambda u: np.square(dphi(u)))
    if math.isinf(q):
        return float(np.mean(np.square(dphi(np.array([-math.inf, math.inf])))))
    if isinstance(activation, HardTanh):
        sd = math.sqrt(q)
        return _gauss_mass(activation.min_val / sd, activation.max_val / sd)
    return _activation_expect(activation, lambda u: np.square(dphi(u)), q)


def length_map(activation: ActivationFn, q: float, sigma_w2: float, sigma_b2: float) -> float:
    """``q' = sigma_w2 Int Dz phi(sqrt(q) z)^2 + sigma_b2``: the length map of Poole et al. (2016).

    For ReLU exactly ``sigma_w2 q / 2 + sigma_b2``.
    """
    _check_weights(sigma_w2, sigma_b2)
    return sigma_w2 * second_moment(activation, q) + sigma_b2


def chi_1(activation: ActivationFn, q: float, sigma_w2: float) -> float:
    """``chi_1 = sigma_w2 Int Dz phi'(sqrt(q) z)^2`` (Poole et al. 2016; Schoenholz et
    al. 2017): the slope of the correlation map at c = 1 and the per-layer factor of the
    mean squared backpropagated gradient (times the width ratio), evaluated at ``q``."""
    _check_weights(sigma_w2, 0.0)
    return sigma_w2 * mean_derivative_sq(activation, q)


def length_map_slope(activation: ActivationFn, q: float, sigma_w2: float) -> float:
    """``dq'/dq = chi_1 + sigma_w2 Int Dz phi''(sqrt(q) z) phi(sqrt(q) z)`` (Schoenholz et al.
    2017, the argument of xi_q's logarithm).

    Computed in the weak form ``sigma_w2 E[phi(u) phi'(u) u] / q`` (Gaussian integration by
    parts), which needs no phi'' and holds for kinked phi: ReLU family ``sigma_w2 (1 + s^2)/2``
    (the length map is linear); hard tanh ``sigma_w2 Int_{lo/sqrt q}^{hi/sqrt q} z^2 Dz``.
    At ``q = 0`` the limit ``sigma_w2 (phi'(0)^2 + phi(0) phi''(0))`` with a central difference
    for phi''(0); at ``q = inf`` the limit ``chi_1(inf)`` of an unbounded phi (0 if bounded).
    """
    _check_q(q)
    _check_weights(sigma_w2, 0.0)
    slope = _piecewise_linear_slope(activation)
    if slope is not None:
        return sigma_w2 * (1.0 + slope * slope) / 2.0
    if math.isinf(q):
        return chi_1(activation, q, sigma_w2) if not activation.bounded else 0.0
    phi, dphi = _phi(activation), _dphi(activation)
    if q == 0.0:
        step = 1e-5
        values = phi(np.array([0.0]))
        second = dphi(np.array([-step, step]))
        curvature = float(second[1] - second[0]) / (2.0 * step)
        return sigma_w2 * (mean_derivative_sq(activation, 0.0) + float(values[0]) * curvature)
    if isinstance(activation, HardTanh):
        sd = math.sqrt(q)
        return sigma_w2 * _inner_z2(activation.min_val / sd, activation.max_val / sd)
    weak = _activation_expect(activation, lambda u: phi(u) * dphi(u) * u, q)
    return sigma_w2 * weak / q


@functools.lru_cache(maxsize=1024)  # pure in hashable arguments; searches are costly
def fixed_point(activation: ActivationFn, sigma_w2: float, sigma_b2: float) -> float:
    """``q*``: where the length map ``q -> sigma_w2 Int Dz phi(sqrt q z)^2 + sigma_b2`` started
    at ``q = 1`` settles (Poole et al. 2016). ``math.inf`` when it diverges, 0 when it
    converges to 0.

    ReLU family (``phi = max(u,0) + s min(u,0)``, factor ``f = sigma_w2 (1 + s^2) / 2``): the map
    ``q -> f q + sigma_b2`` is linear, so ``q* = sigma_b2 / (1 - f)`` for ``f < 1`` (0 when
    ``sigma_b2 = 0``), ``inf`` for ``f > 1``, or ``f = 1`` with ``sigma_b2 > 0``. At ``f = 1,
    sigma_b2 = 0`` every q is a fixed point and the iteration stays where it starts: we return
    the starting ``q = 1`` (a convention; any q would do, and chi_1 = 1 whatever q is).

    Otherwise the map is non-decreasing in q (its slope ``sigma_w2 E[phi'^2 + phi phi'']`` is
    >= 0 for every activation in initscope.engine.activations, checked on q in [1e-6, 1e6]), so its
    iteration from 1 moves monotonically to the nearest root of ``g(q) = q' - q`` in the
    direction of ``g(1)``. We find that root instead of iterating (which crawls near
    criticality): scan ``q = 2^{+-k}`` for the first sign change of g and polish it with Brent's
    method to relative precision ~1e-15. A sign change counts only when ``|g| > 1e-10 q``: at
    q ~ 1e15 the rounding of ``q' - q`` alone could fake one (GELU at sigma_w2 = 2 grows like
    ``q + sigma_b2 - O(sqrt q)``, slowly but forever). No sign change up to 1e30 means
    divergence (``inf``); none down to ``q'(0) / 2`` -- or to 1e-30 when ``q'(0) = 0``
    (sigma_b2 = 0 and phi(0) = 0) -- means convergence to 0.
    """
    _check_weights(sigma_w2, sigma_b2)
    slope = _piecewise_linear_slope(activation)
    if slope is not None:
        factor = sigma_w2 * (1.0 + slope * slope) / 2.0
        if abs(factor - 1.0) <= 1e-12:  # 2 / (1 + s^2) rounds off 1 here for 12 % of slopes
            factor = 1.0
        if factor < 1.0:
            return sigma_b2 / (1.0 - factor)
        if factor > 1.0 or sigma_b2 > 0.0:
            return math.inf
        return _Q_START

    return _settle(activation, sigma_w2, sigma_b2, 0.0, _Q_CEILING)


def _settle(
    activation: ActivationFn, sigma_w2: float, sigma_b2: float, floor: float, ceiling: float
) -> float:
    """``fixed_point``'s search (not for the ReLU family) stopped at ``floor`` and ``ceiling``:
    the same q* where it lies between them (the same doublings and halvings from q = 1),
    ``math.inf`` for one above the ceiling and 0 for one below the floor (``floor = 0``: the
    natural floor of ``fixed_point``)."""

    def gap(q: float) -> float:
        return length_map(activation, q, sigma_w2, sigma_b2) - q

    start = gap(_Q_START)
    if abs(start) <= _NOISE * _Q_START:
        return _Q_START
    if start > 0.0:
        low = _Q_START
        while low < ceiling:
            high = 2.0 * low
            if gap(high) < -_NOISE * high:
                return _root(gap, low, high)
            low = high
        return math.inf
    at_zero = length_map(activation, 0.0, sigma_w2, sigma_b2)
    if at_zero > 0.0:
        natural = 0.5 * at_zero
    else:  # q = 0 is a fixed point: a root above it needs slope > 1 at 0
        natural = _Q_FLOOR if length_map_slope(activation, 0.0, sigma_w2) <= 1.0 else 1e-300
    high = _Q_START
    while high > max(floor, natural):
        low = 0.5 * high
        if gap(low) > _NOISE * low:
            return _root(gap, low, high)
        high = low
    return 0.0


def _root(f: Callable[[float], float], low: float, high: float) -> float:
    """Brent's method on ``[low, high]`` to relative precision 4 eps; an end where f is within
    rounding noise of 0 (no strict sign change) is returned as the root."""
    flow, fhigh = f(low), f(high)
    if flow * fhigh >= 0.0:
        return low if abs(flow) <= abs(fhigh) else high
    root = brentq(f, low, high, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    return float(root)


def chi_1_at_fixed_point(activation: ActivationFn, sigma_w2: float, sigma_b2: float) -> float:
    """``chi_1(q*) = sigma_w2 Int Dz phi'(sqrt(q*) z)^2``: the order parameter of Poole et al.
    (2016) and Schoenholz et al. (2017); < 1 ordered, > 1 chaotic."""
    return chi_1(activation, fixed_point(activation, sigma_w2, sigma_b2), sigma_w2)


# -- two-unit (correlation) maps -------------------------------------------------------------


def _arccos_kernel(slope: float, c: float) -> float:
    """``E[phi(z1) phi(z2)]`` for ``phi = max(u,0) + s min(u,0)``, unit variances, correlation c.

    With ``K(c) = E[relu(z1) relu(z2)] = (sqrt(1-c^2) + (pi - arccos c) c) / (2 pi)`` (Cho & Saul
    2009, arc-cosine kernel of degree 1) and ``phi(u) = relu(u) - s relu(-u)``, the four quadrant
    terms give ``(1 + s^2) K(c) - 2 s K(-c)``, i.e.
    ``[(1-s)^2 sqrt(1-c^2) + c ((1+s^2)(pi - theta) + 2 s theta)] / (2 pi)``, ``theta = arccos c``.
    s = 1 gives c (linear).
    """
    theta = math.acos(c)
    root = math.sqrt(max(0.0, 1.0 - c * c))
    mixed = (1.0 + slope * slope) * (math.pi - theta) + 2.0 * slope * theta
    return ((1.0 - slope) ** 2 * root + c * mixed) / (2.0 * math.pi)


def _cross_expect(
    activation: ActivationFn, f: RealFn, g: RealFn, q1: float, q2: float, c: float
) -> float:
    """``Int Dz1 Dz2 f(u1) g(u2)`` with ``u1 = sqrt(q1) z1, u2 = sqrt(q2)(c z1 + sqrt(1-c^2) z2)``.

    Tensor Gauss-Hermite (NODES^2) for an analytic phi with both q small (as in 1-D); otherwise
    nested split rules: the inner ``G(z1) = Int Dz2 g(u2)`` is a 1-D Gaussian integral of g with
    mean ``m = sqrt(q2) c z1`` and std ``sigma = sqrt(q2 (1 - c^2))``, refined around
    ``(centre - m) / sigma``; the outer integrand ``f(u1) G(z1)`` has its features at
    ``centre / sqrt(q1)`` and ``centre / (sqrt(q2) c)``.
    """
    shape = _shape(activation)
    s = math.sqrt(max(0.0, 1.0 - c * c))
    r1, r2 = math.sqrt(q1), math.sqrt(q2)
    if shape.analytic and max(q1, q2) <= GAUSS_HERMITE_MAX_Q * shape.scale**2:
        z, w = gauss_hermite(NODES)
        inner = g(r2 * (c * z[:, None] + s * z[None, :])) @ w
        return float(w @ (f(r1 * z) * inner))
    centres = np.asarray(shape.centres, dtype=np.float64)
    groups = [(centres / r1, shape.scale / r1)]
    if c != 0.0:
        groups.append((centres / (r2 * c), shape.scale / (r2 * abs(c))))
        if 0.0 < s < abs(c):  # G(z1) turns over a width s / |c| there, narrow near c = +-1
            groups.append((centres / (r2 * c), s / abs(c)))
    z1, w1 = _split_rule(groups)
    if s == 0.0:
        return float(w1 @ (f(r1 * z1) * g(r2 * c * z1)))
    sigma = r2 * s
    mean = r2 * c * z1
    inner_centres = (centres[None, :] - mean[:, None]) / sigma
    z2, w2 = _panels(_breaks(inner_centres, np.full(z1.shape, shape.scale / sigma)))
    inner = np.einsum("ij,ij->i", w2, g(mean[:, None] + sigma * z2))
    return float(w1 @ (f(r1 * z1) * inner))


def correlation_map(
    activation: ActivationFn,
    c: float,
    q1: float,
    q2: float,
    sigma_w2: float,
    sigma_b2: float,
) -> float:
    """``c' = (sigma_w2 Int Dz1 Dz2 phi(u1) phi(u2) + sigma_b2) / sqrt(q1' q2')`` with
    ``u1 = sqrt(q1) z1``, ``u2 = sqrt(q2) (c z1 + sqrt(1 - c^2) z2)`` and ``q1', q2'`` the length
    map of q1, q2: the correlation map of Poole et al. (2016).

    ReLU family in closed form: ``E[phi(u1) phi(u2)] = sqrt(q1 q2) k_s(c)`` with the
    arc-cosine kernel ``k_s`` of ``_arccos_kernel`` (for ReLU ``(sqrt(1-c^2) + (pi - arccos c)
    c) / (2 pi)``, Cho & Saul 2009). Other phi: 2-D quadrature (``_cross_expect``).
    Requires ``-1 <= c <= 1`` and ``q1, q2 > 0`` (finite).
    """
    _check_weights(sigma_w2, sigma_b2)
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"c must be in [-1, 1], got {c}")
    for q in (q1, q2):
        _check_q(q)
        if q == 0.0 or math.isinf(q):
            raise ValueError(f"the correlation map needs finite q > 0, got {q}")
    slope = _piecewise_linear_slope(activation)
    if slope is not None:
        cross = math.sqrt(q1 * q2) * _arccos_kernel(slope, c)
    else:
        phi = _phi(activation)
        cross = _cross_expect(activation, phi, phi, q1, q2, c)
    out1 = length_map(activation, q1, sigma_w2, sigma_b2)
    out2 = length_map(activation, q2, sigma_w2, sigma_b2)
    return (sigma_w2 * cross + sigma_b2) / math.sqrt(out1 * out2)


def correlation_slope(
    activation: ActivationFn, q: float, sigma_w2: float, sigma_b2: float
) -> float:
    """``dc'/dc`` at ``c = 1`` of the normalised correlation map with equal lengths
    ``q1 = q2 = q``: ``chi_1(q) q / L(q)``, ``L`` the length map (Poole et al. 2016; Schoenholz
    et al. 2017). ``exp(-1/xi_c)`` when ``c* = 1``.

    Derivation: ``c' = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / L(q)`` and, by Price's theorem
    (``dE[f(u1) g(u2)] / dSigma_12 = E[f'(u1) g'(u2)]`` with ``Sigma_12 = q c``),
    ``dc'/dc = sigma_w2 q E[phi'(u1) phi'(u2)] / L(q)``, which at c = 1 is
    ``sigma_w2 q E[phi'(u)^2] / L(q) = chi_1(q) q / L(q)``. At a finite, positive fixed point
    ``L(q*) = q*`` this is chi_1(q*), the ``1/xi_c = -ln chi_1`` of Schoenholz et al.; elsewhere
    the ratio matters:

    - ReLU family ``max(u,0) + s min(u,0)`` with ``sigma_b2 = 0``: ``L(q) = sigma_w2 (1 + s^2) q
      / 2 = chi_1 q``, so the slope is exactly 1 for every q and every sigma_w2: the normalised
      map is the scale-free arc-cosine map (``_arccos_kernel``, ``correlation_gap_constant``).
    - ``q = 0``, reached only when ``L(0) = 0`` (sigma_b2 = 0, phi(0) = 0): with
      ``phi(u) = phi'(0+-) u + o(u)``, ``L(q) = chi_1(0) q + o(q)``, so the limit is 1: the
      network is linear in the limit. (Where ``L(0) > 0`` the slope at q = 0 is 0.)
    - ``q = inf`` (unbounded phi; every one here is asymptotically linear, with slopes
      ``a-, a+`` at ``-inf, +inf``): ``L(q) / q -> sigma_w2 (a-^2 + a+^2) / 2 = chi_1(inf)``, so
      the limit is 1 again: phi acts like a member of the ReLU family.

    ``sigma_w2 = 0`` gives 0 (every input is mapped to the same bias vector).
    """
    _check_q(q)
    _check_weights(sigma_w2, sigma_b2)
    if sigma_w2 == 0.0:
        return 0.0
    if math.isinf(q):
        if activation.bounded:
            raise ValueError("q = inf needs an unbounded activation")
        return 1.0
    if q == 0.0:
        return 0.0 if length_map(activation, 0.0, sigma_w2, sigma_b2) > 0.0 else 1.0
    if sigma_b2 == 0.0 and _piecewise_linear_slope(activation) is not None:
        return 1.0
    out = length_map(activation, q, sigma_w2, sigma_b2)
    return chi_1(activation, q, sigma_w2) * q / out


def correlation_gap_constant(activation: ActivationFn) -> float | None:
    """``C`` in ``1 - c_l ~ C / l^2``: the polynomial approach of two inputs' correlation to 1
    through a ReLU-family network without bias, any sigma_w2 (Hayou, Doucet & Rousseau 2019,
    "On the impact of the activation function on deep neural networks training", ICML,
    arXiv:1902.06853: ``9 pi^2 / 2 = 44.4`` for ReLU). None outside the ReLU family, and for
    linear (s = 1), which preserves c.

    Derivation. For ``phi = max(u,0) + s min(u,0)`` and ``sigma_b2 = 0`` the normalised map is
    ``c' = k_s(c) / k_s(1)`` with the kernel of ``_arccos_kernel`` and ``k_s(1) = (1 + s^2) / 2``:
    ``c' = c + kappa (sqrt(1 - c^2) - c arccos c)``, ``kappa = (1 - s)^2 / ((1 + s^2) pi)``.
    With ``e = 1 - c``: ``arccos(1 - e) = sqrt(2e) (1 + e/12 + O(e^2))`` and
    ``sqrt(1 - c^2) = sqrt(2e) (1 - e/4 + O(e^2))``, so
    ``sqrt(1 - c^2) - c arccos c = sqrt(2e) [(1 - e/4) - (1 - e)(1 + e/12)] + O(e^{5/2})
    = (2 sqrt 2 / 3) e^{3/2} + O(e^{5/2})``, i.e. ``e' = e - a e^{3/2} + O(e^{5/2})`` with
    ``a = 2 sqrt(2) kappa / 3`` (ReLU: ``2 sqrt 2 / (3 pi)``). The slope at c = 1 is 1 (no
    exponential scale), and ``e'^{-1/2} = e^{-1/2} (1 - a sqrt e)^{-1/2} = e^{-1/2} + a/2 +
    O(sqrt e)``, so ``e_l^{-1/2} = a l / 2 + O(log l)`` and ``e_l ~ 4 / (a^2 l^2)``:
    ``C = 4 / a^2 = (9 pi^2 / 2) ((1 + s^2) / (1 - s)^2)^2``. Per layer, ``e_{l+1} / e_l ~
    (l / (l + 1))^2``: 0.83 at l = 10, 0.91 at l = 20.
    """
    slope = _piecewise_linear_slope(activation)
    if slope is None or slope == 1.0:
        return None
    kappa = (1.0 - slope) ** 2 / ((1.0 + slope * slope) * math.pi)
    a = 2.0 * math.sqrt(2.0) * kappa / 3.0
    return 4.0 / (a * a)


@functools.lru_cache(maxsize=1024)  # pure in hashable arguments; searches are costly
def c_star(activation: ActivationFn, sigma_w2: float, sigma_b2: float) -> float:
    """``c*``: the stable fixed point of the correlation map at ``q1 = q2 = q*`` (Poole et al.
    2016; Schoenholz et al. 2017).

    At q* the map ``c -> c'`` is increasing and convex on [0, 1] with ``c'(1) = 1`` and slope
    ``chi_1`` there (its Hermite expansion has non-negative coefficients), so:

    - ``chi_1 <= 1`` (ordered or critical): ``c* = 1``;
    - ``chi_1 > 1`` (chaotic): c* is the root of ``c' - c`` in [0, 1), where the iteration from
      ``c = 0`` converges; 0 when ``c'(0) = 0`` (odd phi with sigma_b2 = 0).

    The ReLU family has ``c* = 1`` for every sigma: with a finite q* and sigma_b2 > 0 it is
    ordered, and otherwise (no bias, or ``q* = inf``) the normalised map is the scale-free
    arc-cosine map, whose only fixed point in [0, 1] is c = 1 (slope 1 there). Likewise 1 for
    ``q* = 0`` (the network is linear in the limit) and, as a limit, for ``q* = inf``: an
    unbounded phi acts like a ReLU-family function as q grows (``correlation_slope``). A c*
    below 1e-12 is returned as 0.
    """
    if _piecewise_linear_slope(activation) is not None:
        _check_weights(sigma_w2, sigma_b2)
        return 1.0
    q = fixed_point(activation, sigma_w2, sigma_b2)
    if math.isinf(q) or q == 0.0 or chi_1(activation, q, sigma_w2) <= 1.0:
        return 1.0

    def gap(c: float) -> float:
        return correlation_map(activation, c, q, q, sigma_w2, sigma_b2) - c

    if gap(0.0) <= 1e-12:  # quadrature rounding around an exact c'(0) = 0
        return 0.0
    below = 1.0 - 1e-3
    while gap(below) >= 0.0:  # g < 0 just below 1 since the slope there exceeds 1
        below = 1.0 - 0.1 * (1.0 - below)
        if below >= 1.0 - 1e-12:
            return 1.0  # chi_1 barely above 1: c* indistinguishable from 1
    return float(brentq(gap, 0.0, below, xtol=1e-14))


@functools.lru_cache(maxsize=1024)  # pure in hashable arguments; searches are costly
def depth_scales(activation: ActivationFn, sigma_w2: float, sigma_b2: float) -> tuple[float, float]:
    """``(xi_q, xi_c)``: depths over which the length and the correlation of two inputs approach
    their fixed points like ``exp(-l / xi)`` (Schoenholz et al. 2017).

    ``1/xi_q = -ln[chi_1 + sigma_w2 Int Dz phi''(sqrt q* z) phi(sqrt q* z)]`` (the slope of the
    length map at q*, ``length_map_slope``; ReLU: ``-ln(sigma_w2 / 2)``; ``math.inf`` for
    ``q* = inf``). ``1/xi_c = -ln[sigma_w2 Int Dz1 Dz2 phi'(u1) phi'(u2)]`` at ``q*, c*`` for
    ``c* < 1``; for ``c* = 1`` it is ``-ln`` of the slope at c = 1 of the *normalised*
    correlation map, ``correlation_slope = chi_1(q) q / L(q)``, which is chi_1 only at a finite,
    positive q*. It is exactly 1 -- ``xi_c = inf`` -- for the ReLU family (and linear) with
    sigma_b2 = 0, whatever sigma_w2 (ReLU at sigma_w2 = 0.01 has xi_q = -1/ln 0.005 = 0.19 but
    no exponential correlation scale: ``1 - c_l ~ 9 pi^2 / (2 l^2)``, Hayou et al. 2019,
    ``correlation_gap_constant``), and in the limits q* = 0 (phi(0) = 0, sigma_b2 = 0: the
    network becomes linear and preserves correlations) and q* = inf (phi acts like a ReLU).

    Each is ``math.inf`` where the log's argument is >= 1 (up to 1e-12) and ``-1 / ln|x|``
    otherwise (a negative slope alternates the sign of the deviation; 0 for x = 0).
    """
    q = fixed_point(activation, sigma_w2, sigma_b2)
    xi_q = math.inf if math.isinf(q) else _depth(length_map_slope(activation, q, sigma_w2))
    c = c_star(activation, sigma_w2, sigma_b2)
    if c == 1.0:
        return xi_q, _depth(correlation_slope(activation, q, sigma_w2, sigma_b2))
    dphi = _dphi(activation)  # c* < 1 only for a phi outside the ReLU family
    return xi_q, _depth(sigma_w2 * _cross_expect(activation, dphi, dphi, q, q, c))


def _depth(x: float) -> float:
    if x >= 1.0 - 1e-12:  # critical up to rounding (chi_1 of He init is 1 - 2e-16)
        return math.inf
    if x == 0.0:
        return 0.0
    return -1.0 / math.log(abs(x)) if abs(x) < 1.0 else math.inf


def trainable_depth(xi_c: float) -> float:
    """``6 xi_c``: roughly the deepest trainable network (Schoenholz et al. 2017:
    random networks train when their depth ``L <~ 6 xi_c``). ``inf`` for ``xi_c = inf``: no
    bound from this criterion (the API reports it as null)."""
    return 6.0 * xi_c


def phase(chi: float, tol: float = PHASE_TOL) -> Phase:
    """Ordered (``chi_1 < 1 - tol``), critical (``|chi_1 - 1| <= tol``) or chaotic (Poole et al.
    2016; Schoenholz et al. 2017). ``PHASE_TOL = 0.01``."""
    if abs(chi - 1.0) <= tol:
        return "critical"
    return "ordered" if chi < 1.0 else "chaotic"


# -- the edge of chaos ------------------------------------------------------------------------


def edge_of_chaos(activation: ActivationFn, q: float) -> tuple[float, float]:
    """``(sigma_w2, sigma_b2)`` of the edge-of-chaos point whose fixed point is ``q`` (> 0):
    ``chi_1(q) = sigma_w2 E[phi'^2] = 1`` and ``L(q) = sigma_w2 E[phi^2] + sigma_b2 = q`` give
    ``sigma_w2 = 1 / Int Dz phi'(sqrt q z)^2`` and ``sigma_b2 = q - Int Dz phi(sqrt q z)^2 /
    Int Dz phi'(sqrt q z)^2``: the critical line of Poole et al. (2016) and Schoenholz et al.
    (2017), parametrised by q*. A negative sigma_b2 means no realisable point with that q*.
    Whether q is a *stable* fixed point, reached from q = 1, is not checked here."""
    _check_q(q)
    if q == 0.0 or math.isinf(q):
        raise ValueError(f"edge_of_chaos needs a finite q > 0, got {q}")
    derivative = mean_derivative_sq(activation, q)
    if derivative <= 0.0:
        return math.inf, -math.inf
    return 1.0 / derivative, q - second_moment(activation, q) / derivative


@functools.lru_cache(maxsize=64)
def _edge_curve(activation: ActivationFn) -> tuple[FloatArray, FloatArray]:
    """``edge_of_chaos`` sampled on ``_EDGE_Q``: sigma_w2 and sigma_b2 arrays (read-only)."""
    points = np.array([edge_of_chaos(activation, float(q)) for q in _EDGE_Q])
    weights, biases = points[:, 0].copy(), points[:, 1].copy()
    weights.flags.writeable = False
    biases.flags.writeable = False
    return weights, biases


def _edge_candidates(activation: ActivationFn, sigma_b2: float) -> list[float]:
    """sigma_w2 values where q* would be a fixed point with chi_1 = 1 at this bias: the roots in
    q of ``edge_of_chaos(q)[1] = sigma_b2`` (sign changes on ``_EDGE_Q`` polished by Brent's
    method in log q), and with sigma_b2 = 0 and phi(0) = 0 the q = 0 point
    ``sigma_w2 = 1 / E[phi'(0)^2]`` (one-sided limits at a kink)."""
    candidates = []
    if sigma_b2 == 0.0 and second_moment(activation, 0.0) == 0.0:
        at_zero = mean_derivative_sq(activation, 0.0)
        if at_zero > 0.0:
            candidates.append(1.0 / at_zero)
    _, biases = _edge_curve(activation)
    gap = biases - sigma_b2
    signed = [i for i in range(gap.size) if abs(gap[i]) > _EDGE_NOISE * _EDGE_Q[i]]

    def excess(log_q: float) -> float:
        return edge_of_chaos(activation, math.exp(log_q))[1] - sigma_b2

    for i, j in itertools.pairwise(signed):
        if gap[i] * gap[j] < 0.0:
            log_q = brentq(excess, math.log(_EDGE_Q[i]), math.log(_EDGE_Q[j]), xtol=1e-14)
            candidates.append(edge_of_chaos(activation, math.exp(float(log_q)))[0])
    return candidates


def _is_critical(activation: ActivationFn, sigma_w2: float, sigma_b2: float) -> bool:
    """q* (reached from q = 1) is finite with ``|chi_1(q*) - 1| <= 1e-6``."""
    q = fixed_point(activation, sigma_w2, sigma_b2)
    return math.isfinite(q) and abs(chi_1(activation, q, sigma_w2) - 1.0) <= _CRITICAL_CHECK


@functools.lru_cache(maxsize=1024)  # pure in hashable arguments; searches are costly
def critical_sigma_w2(
    activation: ActivationFn, sigma_b2: float, low: float = 0.1, high: float = 100.0
) -> float | None:
    """The smallest ``sigma_w2`` in ``[low, high]`` with ``chi_1(q*(sigma_w2)) = 1`` at a finite
    q* (``fixed_point``: reached from q = 1), the edge of chaos (Poole et al. 2016; Schoenholz
    et al. 2017); None if there is none. q* may be 0 (see ``critical_point`` for one away
    from 0).

    ReLU family: ``chi_1 = sigma_w2 (1 + s^2) / 2`` whatever q, so ``2 / (1 + s^2)`` when
    ``sigma_b2 = 0``; with ``sigma_b2 > 0`` q* is infinite there and there is no edge of chaos
    (None). Otherwise the candidates come from the critical line parametrised by q*
    (``edge_of_chaos``): the roots in q of ``sigma_b2(q) = sigma_b2`` on a log grid of q from
    1e-8 to 1e8 (16 per decade) polished by Brent's method, plus, where sigma_b2 = 0 and
    phi(0) = 0, the q* = 0 point ``chi_1(0) = sigma_w2 (phi'(0-)^2 + phi'(0+)^2) / 2 = 1``
    (tanh 1, SELU 0.4768). A candidate counts when ``fixed_point`` there is finite with
    ``|chi_1 - 1| <= 1e-6``: this rejects unstable fixed points on the line (GELU and SiLU
    below q ~ 3 and ~ 20, where the length map's slope exceeds 1) and fixed points not reached
    from q = 1. Scanning sigma_w2 for a sign change of chi_1(q*) - 1 instead misses edges that
    sit beside a jump of q* (GELU at sigma_b2 = 0.3: chi_1 crosses 1 at sigma_w2 = 1.9565,
    q* = 8.9, inside a grid cell whose ends are < 1 and, at q* = inf, > 1).
    """
    _check_weights(low, sigma_b2)
    slope = _piecewise_linear_slope(activation)
    if slope is not None:
        critical = 2.0 / (1.0 + slope * slope)
        return critical if sigma_b2 == 0.0 and low <= critical <= high else None
    accepted = [
        w
        for w in _edge_candidates(activation, sigma_b2)
        if low <= w <= high and _is_critical(activation, w, sigma_b2)
    ]
    return min(accepted, default=None)


@functools.lru_cache(maxsize=1024)  # pure in hashable arguments; searches are costly
def nearest_to_critical(
    activation: ActivationFn, sigma_b2: float, low: float = 0.1, high: float = 100.0
) -> tuple[float, float]:
    """``(sigma_w2, chi_1(q*))`` minimising ``|chi_1(q*(sigma_w2)) - 1|`` over the sigma_w2 in
    ``[low, high]`` whose q* is finite and away from 0, ``Q_AWAY <= q* <= Q_MAX``: for
    activations with no edge of chaos there (sigmoid with sigma_b2 = 0), how close one can get.
    ``(nan, nan)`` when no sigma_w2 qualifies (GELU and SiLU with sigma_b2 = 0: q* is 0 or
    infinite for every sigma_w2).

    Points at q* = 0 or inf are excluded because their chi_1 describes no stationary network:
    softplus and GELU approach chi_1 = 1 only as q* -> inf (the ReLU limit, sigma_w2 -> 2), and
    SiLU at sigma_b2 = 0 jumps from q* = 0 (chi_1 = chi_1(0) = sigma_w2 / 4 <= 0.70) to q* = inf
    at sigma_w2 = 1 / E[silu(z)^2] = 2.8108, where the unstable fixed point passes the
    starting q = 1.

    ReLU family: q* = sigma_b2 / (1 - chi_1) grows with chi_1 = sigma_w2 (1 + s^2) / 2, so the
    nearest is at q* = Q_MAX, chi_1 = 1 - sigma_b2 / Q_MAX (with sigma_b2 = 0, the critical
    point itself, where every q is fixed). Otherwise a 49-point log grid, then a bounded scalar
    minimisation between the best admissible point's neighbours, an inadmissible neighbour
    first replaced by the edge of the admissible range (bisection in log sigma_w2).
    """
    _check_weights(low, sigma_b2)
    slope = _piecewise_linear_slope(activation)
    if slope is not None:
        # sigma_b2 = 0: chi_1 = 1, where every q is a fixed point; else q* = sigma_b2 / (1 - chi_1)
        chi = 1.0 if sigma_b2 == 0.0 else 1.0 - sigma_b2 / Q_MAX
        sigma_w2 = min(chi * 2.0 / (1.0 + slope * slope), high)
        if not (low <= sigma_w2 and _admissible(fixed_point(activation, sigma_w2, sigma_b2))):
            return math.nan, math.nan
        return sigma_w2, chi_1_at_fixed_point(activation, sigma_w2, sigma_b2)

    def admissible(log_sigma: float) -> bool:  # cheaper than fixed_point beyond [Q_AWAY, Q_MAX]
        settled = _settle(activation, math.exp(log_sigma), sigma_b2, Q_AWAY / 2, 2 * Q_MAX)
        return _admissible(settled)

    def distance(log_sigma: float) -> float:
        if not admissible(log_sigma):
            return _OUTSIDE
        return abs(chi_1_at_fixed_point(activation, math.exp(log_sigma), sigma_b2) - 1.0)

    logs = [float(x) for x in np.linspace(math.log(low), math.log(high), _CRITICAL_GRID)]
    values = [distance(x) for x in logs]
    best = int(np.argmin(values))
    if values[best] >= _OUTSIDE:
        return math.nan, math.nan
    ends = []
    for neighbour in (best - 1, best + 1):
        if not 0 <= neighbour < len(logs):
            ends.append(logs[best])
            continue
        inside, outside = logs[best], logs[neighbour]
        if values[neighbour] < _OUTSIDE:
            ends.append(outside)
            continue
        for _ in range(20):  # the admissible range's end, to 2^-20 of a grid step
            middle = 0.5 * (inside + outside)
            inside, outside = (middle, outside) if admissible(middle) else (inside, middle)
        ends.append(inside)
    log_sigma = logs[best]
    if ends[1] > ends[0]:
        found_x, found_fun = minimize_bounded(distance, ends[0], ends[1])
        candidates = [(values[best], logs[best]), (found_fun, found_x)]
        candidates += [(distance(end), end) for end in ends]
        log_sigma = min(candidates)[1]
    sigma_w2 = min(max(math.exp(log_sigma), low), high)  # exp(log(x)) may round past x
    return sigma_w2, chi_1_at_fixed_point(activation, sigma_w2, sigma_b2)


@dataclass(frozen=True)
class CriticalPoint:
    """An edge-of-chaos initialisation for one activation and bias, as ``critical_point`` chose
    it (Poole et al. 2016; Schoenholz et al. 2017).

    ``sigma_w2, sigma_b2``: the point; sigma_b2 may be above the one asked for (to keep q* away
    from 0), or 0 for the ReLU family. ``q_star``: ``fixed_point`` there; None where every q is
    a fixed point (ReLU family and linear at sigma_b2 = 0). ``chi_1``:
    ``chi_1_at_fixed_point`` there. ``exact``: ``chi_1 = 1`` (to 1e-6) at a finite
    ``q* >= Q_AWAY`` (or q* None); False for the nearest point of an activation without an
    edge. ``how``: one or two sentences, in numbers, saying how the point was chosen.
    """

    sigma_w2: float
    sigma_b2: float
    q_star: float | None
    chi_1: float
    exact: bool
    how: str


@functools.lru_cache(maxsize=256)  # called per request; pure in hashable arguments
def critical_point(activation: ActivationFn, sigma_b2: float) -> CriticalPoint | None:
    """The critical ``(sigma_w2, sigma_b2)`` for this activation and this bias, or the nearest
    one that keeps q* away from 0 (``Q_AWAY``).

    - ReLU family and linear: ``sigma_w2 = 2 / (1 + s^2)``, ``sigma_b2 = 0``, q* None (every q
      is a fixed point). With sigma_b2 > 0 there is no finite-q* edge -- at that sigma_w2 q
      grows by sigma_b2 per layer, linearly -- and ``how`` says so; the point returned is still
      the sigma_b2 = 0 one.
    - Otherwise ``critical_sigma_w2(activation, sigma_b2)`` if its q* >= Q_AWAY. If q* < Q_AWAY
      (q* = 0: tanh and ELU at sigma_b2 = 0 give sigma_w2 = 1; SELU 0.4768, where q* = 2.7e-9
      as written to 4 digits, not its self-normalising q* = 1 at sigma_w2 = 1) or there is no
      edge, sigma_b2 is raised along ``BIAS_GRID`` (1-2-5 steps from 1e-3 to 1, those above
      the request) to the first value whose critical sigma_w2 has q* >= Q_AWAY.
    - Without such an edge (sigmoid: chi_1(q*) < 1 for every sigma_w2 in [0.1, 100];
      softplus: chi_1 -> 1 only as q* -> inf), the nearest point of ``nearest_to_critical``
      (Q_AWAY <= q* <= Q_MAX) at the requested sigma_b2, or at the first larger grid value
      that has one, with ``exact = False``.
    - None when there is not even that: no sigma_b2 from the request's up to the grid's end
      has a sigma_w2 in [0.1, 100] with a q* in [Q_AWAY, Q_MAX] (a bias alone above Q_MAX).

    Cached; the first call per activation samples the critical line (``_edge_curve``).
    """
    _check_weights(0.0, sigma_b2)
    slope = _piecewise_linear_slope(activation)
    if slope is not None:
        return _piecewise_linear_point(activation, slope, sigma_b2)
    name = activation.label
    found = critical_sigma_w2(activation, sigma_b2)
    if found is not None:
        q = fixed_point(activation, found, sigma_b2)
        if q >= Q_AWAY:
            how = (
                f"{name}: chi_1(q*) = 1 at sigma_w^2 = {found:.4g} with the requested "
                f"sigma_b^2 = {sigma_b2:.3g}, where q* = {q:.3g} >= {Q_AWAY:g} (Q_AWAY)."
            )
            return _exact_point(activation, found, sigma_b2, how)
        shown = float(f"{found:.4g}")  # the q* of the sigma_w2 the text shows
        small = fixed_point(activation, shown, sigma_b2)
        fate = (
            "the signal fades towards 0 with depth and the network becomes linear"
            if small < 1e-6
            else "the pre-activations stay where phi is nearly linear"
        )
        why = (
            f"{name} with sigma_b^2 = {sigma_b2:.3g} has chi_1(q*) = 1 at sigma_w^2 = "
            f"{shown:.4g}, but there q* = {small:.2g} < {Q_AWAY:g} (Q_AWAY): {fate}."
        )
    else:
        why = (
            f"{name} with sigma_b^2 = {sigma_b2:.3g} has no sigma_w^2 in [0.1, 100] with "
            "chi_1(q*) = 1 at a finite, stable q*."
        )
    raised = [b for b in BIAS_GRID if b > sigma_b2]
    for bias in raised:
        found = critical_sigma_w2(activation, bias)
        if found is not None and (q := fixed_point(activation, found, bias)) >= Q_AWAY:
            how = (
                f"{why} The smallest sigma_b^2 of the grid {_grid_text(raised)} whose edge "
                f"has q* >= {Q_AWAY:g} is {bias:g}: chi_1(q*) = 1 at sigma_w^2 = {found:.4g}, "
                f"q* = {q:.3g}."
            )
            return _exact_point(activation, found, bias, how)
    for bias in (sigma_b2, *raised):
        sigma_w2, chi = nearest_to_critical(activation, bias)
        if math.isfinite(sigma_w2):
            q = fixed_point(activation, sigma_w2, bias)
            searched = (
                f" Nor does any larger sigma_b^2 of the grid ({_grid_text(raised)})."
                if raised
                else ""
            )
            limit = ""
            if q >= 0.5 * Q_MAX:
                limit = " (q* at its cap Q_MAX: chi_1 approaches 1 only as q* grows)"
            elif sigma_w2 >= 100.0:
                limit = " (sigma_w^2 at the end of the range searched)"
            how = (
                f"{why}{searched} The nearest point with {Q_AWAY:g} <= q* <= {Q_MAX:g}, at "
                f"sigma_b^2 = {bias:.3g}: sigma_w^2 = {sigma_w2:.4g}, chi_1 = {chi:.4g}, "
                f"q* = {q:.3g}{limit}."
            )
            return CriticalPoint(sigma_w2, bias, q, chi, exact=False, how=how)
    return None


def _exact_point(
    activation: ActivationFn, sigma_w2: float, sigma_b2: float, how: str
) -> CriticalPoint:
    q = fixed_point(activation, sigma_w2, sigma_b2)
    chi = chi_1(activation, q, sigma_w2)
    return CriticalPoint(sigma_w2, sigma_b2, q, chi, exact=True, how=how)


def _piecewise_linear_point(
    activation: ActivationFn, slope: float, sigma_b2: float
) -> CriticalPoint:
    """``sigma_w2 = 2 / (1 + s^2)``, ``sigma_b2 = 0``: chi_1 = 1 at every q."""
    factor = (1.0 + slope * slope) / 2.0
    sigma_w2 = 1.0 / factor
    law = {0.0: "chi_1 = sigma_w^2 / 2", 1.0: "chi_1 = sigma_w^2"}.get(
        slope, f"chi_1 = sigma_w^2 (1 + {slope:g}^2) / 2"
    )
    name = activation.label
    if sigma_b2 == 0.0:
        how = (
            f"{name}: {law} at every q, so sigma_w^2 = {sigma_w2:.4g} with sigma_b^2 = 0 is "
            "critical, and there every q is a fixed point (q* is None)."
        )
    else:
        how = (
            f"{name}: {law} at every q. With sigma_b^2 = {sigma_b2:.3g} there is no edge of "
            f"chaos at a finite q*: at sigma_w^2 = {sigma_w2:.4g} (chi_1 = 1) q grows by "
            f"{sigma_b2:.3g} per layer without bound, and below it q* = sigma_b^2 / (1 - chi_1) "
            f"is finite but chi_1 < 1. The critical point is sigma_w^2 = {sigma_w2:.4g} with "
            "sigma_b^2 = 0."
        )
    chi = chi_1(activation, fixed_point(activation, sigma_w2, 0.0), sigma_w2)
    return CriticalPoint(sigma_w2, 0.0, None, chi, exact=True, how=how)


def _admissible(q: float) -> bool:
    """``Q_AWAY <= q <= Q_MAX``, the upper end with room for rounding (a ReLU-family q* placed
    at Q_MAX comes back as ``sigma_b2 / (1 - chi_1)``)."""
    return Q_AWAY <= q <= Q_MAX * (1.0 + 1e-9)


def _grid_text(values: Sequence[float]) -> str:
    shown = [f"{x:g}" for x in values]
    return ", ".join(shown) if len(shown) <= 3 else f"{', '.join(shown[:2])}, ..., {shown[-1]}"


# -- a whole network --------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerTheory:
    """Mean-field predictions for one layer ``l`` (1-based) of ``propagate``.

    ``q``: pre-activation variance ``q^l`` (compare with ``E[a_l^2]``, i.e. std^2 + mean^2 of
    the simulation's pre-activations). ``second_moment``: ``E[h_l^2] = Int Dz phi(sqrt(q^l)
    z)^2``. ``chi_1``: ``sigma_w2_l Int Dz phi'(sqrt(q^l) z)^2``, at this layer's own q (not
    q*). ``gradient_ratio``: predicted ``RMS(g_{l-1}) / RMS(g_l)`` with ``g_l = dL/dh_l`` the
    gradient of the layer's output (``g_0`` that of the input), ``sqrt(N_l / N_{l-1} chi_1)``.
    """

    q: float
    second_moment: float
    chi_1: float
    gradient_ratio: float


def propagate(
    layers: Sequence[tuple[ActivationFn, float, float, int]], q0: float, input_dim: int
) -> list[LayerTheory]:
    """Mean-field forward and backward pass (Poole et al. 2016; Schoenholz et al. 2017, whose
    backward mean-field theory this is) for layers ``(activation, sigma_w2, sigma_b2, units)``.

    Forward: ``q^1 = sigma_w2_1 q0 + sigma_b2_1`` with ``q0 = E[x.x] / N_0`` the input's second
    moment per feature, ``q^l = sigma_w2_l Int Dz phi_{l-1}(sqrt(q^{l-1}) z)^2 + sigma_b2_l``.

    Backward: with ``g_l = dL/dh_l`` and ``delta_l = g_l * phi'(a_l)``,
    ``g_{l-1} = delta_l @ W_l^T``, so ``g_{l-1,i} = sum_j W_l[i, j] phi'(a_{l,j}) g_{l,j}`` sums
    ``N_l`` terms of variance ``(sigma_w2_l / N_{l-1}) E[phi'(a_l)^2] E[g_l^2]`` (the weights
    are independent of the forward signal feeding phi' and, by the gradient-independence
    assumption of Schoenholz et al., of g_l). Hence
    ``E[g_{l-1}^2] = (N_l / N_{l-1}) chi_1(q^l) E[g_l^2]``, ``chi_1(q^l) = sigma_w2_l
    Int Dz phi_l'(sqrt(q^l) z)^2`` (SCIENCE.md's ``E[delta_l^2] = E[delta_{l+1}^2] (N_{l+1}/N_l)
    chi_1(q^l)`` shifted to output gradients), and the RMS ratio is
    ``gradient_ratio_l = sqrt((N_l / N_{l-1}) chi_1(q^l))`` (N_0 = ``input_dim``). The predicted
    ``relative_to_last`` of layer l is the product of ``gradient_ratio`` over layers l+1 .. L
    (``predicted_relative_to_last``).
    """
    _check_q(q0)
    if input_dim < 1:
        raise ValueError(f"input_dim must be positive, got {input_dim}")
    result: list[LayerTheory] = []
    fan_in = input_dim
    moment = q0  # E[h_0^2] per feature
    for activation, sigma_w2, sigma_b2, units in layers:
        _check_weights(sigma_w2, sigma_b2)
        if units < 1:
            raise ValueError(f"units must be positive, got {units}")
        q = sigma_w2 * moment + sigma_b2
        moment = second_moment(activation, q)
        chi = chi_1(activation, q, sigma_w2)
        ratio = math.sqrt(units / fan_in * chi)
        result.append(LayerTheory(q=q, second_moment=moment, chi_1=chi, gradient_ratio=ratio))
        fan_in = units
    return result


def predicted_relative_to_last(layers: Sequence[LayerTheory]) -> list[float]:
    """Predicted ``RMS(g_l) / RMS(g_L)`` per layer: ``prod_{k = l+1}^{L} gradient_ratio_k``
    (1 for the last layer), the mean-field counterpart of the simulation's
    ``relative_to_last``."""
    out = [1.0] * len(layers)
    for index in range(len(layers) - 2, -1, -1):
        out[index] = out[index + 1] * layers[index + 1].gradient_ratio
    return out


def not_modelled(layers: Sequence[LayerSpec]) -> list[str]:
    """Why the maps above do not describe layers with batch norm or dropout, one note per kind.

    Both are outside these maps: training-mode batch norm divides each unit by its batch
    standard deviation, so q^l is reset every layer whatever sigma_w^2 is, and the samples of
    the batch are coupled (Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019,
    arXiv:1902.08129, give the mean-field theory of that: gradients explode with depth).
    Inverted dropout at rate rho multiplies E[h^2] by 1 / (1 - rho) and breaks the
    correlation map's fixed point c* = 1 (Schoenholz et al. 2017 treat dropout); neither is
    added to the maps here, so predictions for such networks are withheld.
    """
    normalised = [i for i, spec in enumerate(layers, start=1) if spec.batch_norm is not None]
    dropped = [i for i, spec in enumerate(layers, start=1) if spec.dropout > 0]
    notes = []
    if normalised:
        notes.append(
            f"{layer_span(normalised)}: batch norm rescales each unit by its batch statistics, so "
            "the pre-activation variance no longer follows sigma_w^2 and the length map; the "
            "mean-field maps here do not model it (Yang et al. 2019 do)"
        )
    if dropped:
        notes.append(
            f"{layer_span(dropped)}: dropout multiplies E[h^2] by 1 / (1 - rate) and decorrelates "
            "inputs; the mean-field maps here do not model it (Schoenholz et al. 2017 do)"
        )
    return notes


# -- argument checks ------------------------------------------------------------------------------


def _check_q(q: float) -> None:
    if not q >= 0.0:  # also refuses NaN
        raise ValueError(f"q must be >= 0, got {q}")


def _check_weights(sigma_w2: float, sigma_b2: float) -> None:
    if not (0.0 <= sigma_w2 < math.inf and 0.0 <= sigma_b2 < math.inf):
        raise ValueError(
            f"sigma_w2 and sigma_b2 must be finite and >= 0, got {sigma_w2}, {sigma_b2}"
        )
