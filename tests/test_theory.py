"""Mean-field theory (initscope/engine/theory.py) against closed forms, scipy quadrature, Monte
Carlo and the simulation itself (Poole et al. 2016 arXiv:1606.05340; Schoenholz et al. 2017
arXiv:1611.01232). Every check states its tolerance and why it is that size.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from initscope.engine import theory
from initscope.engine.activations import ACTIVATIONS as CATALOGUE
from initscope.engine.activations import (
    ELU,
    GELU,
    SELU,
    SELU_ALPHA,
    SELU_SCALE,
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
from initscope.engine.layers import dense
from initscope.engine.simulation import simulate
from initscope.results import Simulation
from scipy import integrate
from threadpoolctl import threadpool_limits

from tests.helpers import make_job

SMOOTH: list[ActivationFn] = [
    Sigmoid(),
    Tanh(),
    GELU(),
    SiLU(),
    Softplus(),
    ELU(),
    SELU(),
    ELU(alpha=0.5),
    Softplus(beta=3.0, threshold=5.0),
]
Q_GRID = [1e-4, 1e-2, 0.5, 1.0, 2.0, 10.0, 100.0, 1000.0]


def _quad_reference(f: Callable[[FloatArray], FloatArray], q: float, centres: list[float]) -> float:
    """``Int Dz f(sqrt(q) z)`` by adaptive quadrature, split at each feature of f (in z) and at
    a few multiples of its width 1 / sqrt(q) so that QUADPACK sees smooth pieces."""
    sd = math.sqrt(q)

    def integrand(z: float) -> float:
        return float(f(np.array([sd * z]))[0]) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    ends = {-12.0, 12.0}
    for centre in centres:
        for offset in (0.0, -30.0, -10.0, -3.0, -1.0, 1.0, 3.0, 10.0, 30.0):
            point = (centre + offset) / sd
            if abs(point) < 12.0:
                ends.add(point)
    points = sorted(ends)
    return sum(
        integrate.quad(integrand, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
        for a, b in itertools.pairwise(points)
    )


def _centres(activation: ActivationFn) -> list[float]:
    if isinstance(activation, Softplus):
        return [0.0, activation.threshold / activation.beta]
    return [0.0]


# --- quadrature ---------------------------------------------------------------------------------


def test_gauss_hermite_is_normalised_and_exact_for_gaussian_moments() -> None:
    """Probabilists' rule / sqrt(2 pi): E[1] = 1, E[z^2] = 1, E[z^4] = 3, E[z^6] = 15 (1e-12)."""
    z, w = theory.gauss_hermite(theory.NODES)
    assert len(z) == theory.NODES
    for power, moment in [(0, 1.0), (2, 1.0), (4, 3.0), (6, 15.0), (3, 0.0)]:
        assert float(w @ z**power) == pytest.approx(moment, rel=1e-12, abs=1e-12)
    assert theory.gauss_hermite(theory.NODES) is theory.gauss_hermite(theory.NODES)  # cached
    assert not z.flags.writeable


@pytest.mark.parametrize("activation", SMOOTH, ids=lambda a: a.label)
def test_quadrature_matches_scipy_quad(activation: ActivationFn) -> None:
    """E[phi^2], E[phi'^2] and the length-map slope's integrand E[phi phi' u] / q agree with
    scipy.integrate.quad to 1e-6 (absolute; the rules reach ~1e-13) over q in [1e-4, 1e3],
    including tanh at q = 1e3 where Gauss-Hermite alone is off by 2e-2."""
    phi = activation.forward

    def dphi(u: FloatArray) -> FloatArray:
        return activation.derivative(u, activation.forward(u))

    centres = _centres(activation)
    for q in Q_GRID:
        exact_m = _quad_reference(lambda u: phi(u) ** 2, q, centres)
        exact_d = _quad_reference(lambda u: dphi(u) ** 2, q, centres)
        exact_s = _quad_reference(lambda u: phi(u) * dphi(u) * u, q, centres) / q
        assert abs(theory.second_moment(activation, q) - exact_m) <= 1e-6, q
        assert abs(theory.mean_derivative_sq(activation, q) - exact_d) <= 1e-6, q
        assert abs(theory.length_map_slope(activation, q, 1.0) - exact_s) <= 1e-6, q


def test_expect_on_polynomials_and_a_kink() -> None:
    """E[u^2] = q, E[u^4] = 3 q^2 (rel 1e-12); E[|u|] = sqrt(2 q / pi) with the kink at a centre."""
    for q in [1e-4, 1.0, 1e3]:
        assert theory.expect(np.square, q) == pytest.approx(q, rel=1e-12)
        assert theory.expect(lambda u: u**4, q) == pytest.approx(3 * q * q, rel=1e-12)
        assert theory.expect(np.abs, q) == pytest.approx(math.sqrt(2 * q / math.pi), rel=1e-12)
    assert theory.expect(np.cos, 0.0) == 1.0


def test_closed_forms_agree_with_quadrature_of_forward_and_derivative() -> None:
    """Hard tanh and leaky ReLU closed forms vs the split rule on forward/derivative (1e-12)."""
    cases: list[tuple[ActivationFn, list[float]]] = [
        (HardTanh(), [-1.0, 1.0]),
        (HardTanh(min_val=-0.5, max_val=2.0), [-0.5, 2.0]),
        (LeakyReLU(negative_slope=0.2), [0.0]),
    ]
    for activation, centres in cases:

        def square(u: FloatArray, a: ActivationFn = activation) -> FloatArray:
            return a.forward(u) ** 2

        def derivative_square(u: FloatArray, a: ActivationFn = activation) -> FloatArray:
            return a.derivative(u, a.forward(u)) ** 2

        for q in [1e-3, 0.3, 4.0, 200.0]:
            moment = theory.expect(square, q, centres=centres)
            dsq = theory.expect(derivative_square, q, centres=centres)
            assert theory.second_moment(activation, q) == pytest.approx(moment, rel=1e-12)
            assert theory.mean_derivative_sq(activation, q) == pytest.approx(dsq, rel=1e-12)


# --- analytic identities ------------------------------------------------------------------------


def test_relu_length_map_is_linear() -> None:
    """q' = sigma_w2 q / 2 + sigma_b2 exactly, and leaky: sigma_w2 (1 + s^2) q / 2 + sigma_b2."""
    for q, sigma_w2, sigma_b2 in [(1.0, 2.0, 0.0), (0.3, 1.7, 0.05), (123.0, 0.5, 2.0)]:
        assert theory.length_map(ReLU(), q, sigma_w2, sigma_b2) == sigma_w2 * q / 2 + sigma_b2
        leaky = theory.length_map(LeakyReLU(negative_slope=0.1), q, sigma_w2, sigma_b2)
        assert leaky == pytest.approx(sigma_w2 * 1.01 * q / 2 + sigma_b2, rel=1e-15)
        assert theory.length_map(Linear(), q, sigma_w2, sigma_b2) == sigma_w2 * q + sigma_b2


def test_chi_1_is_one_at_the_textbook_critical_points() -> None:
    """tanh, sigma_w2 = 1, sigma_b2 = 0: q* = 0 and chi_1(0) = sigma_w2 tanh'(0)^2 = 1;
    ReLU, sigma_w2 = 2: chi_1 = 1 at every q (exact)."""
    assert theory.fixed_point(Tanh(), 1.0, 0.0) == 0.0
    assert theory.chi_1(Tanh(), 0.0, 1.0) == 1.0
    assert theory.chi_1_at_fixed_point(Tanh(), 1.0, 0.0) == 1.0
    for q in [0.0, 0.1, 1.0, 50.0]:
        assert theory.chi_1(ReLU(), q, 2.0) == 1.0


def test_relu_correlation_map_closed_form() -> None:
    """Normalised ReLU map (sigma_w2 = 2, sigma_b2 = 0, q1 = q2 = 1): c = 0 -> 1/pi, c = 1 -> 1
    (1e-15); with unequal q the arc-cosine kernel scales as sqrt(q1 q2) and c = 1 stays <= 1."""
    assert theory.correlation_map(ReLU(), 0.0, 1.0, 1.0, 2.0, 0.0) == pytest.approx(1 / math.pi)
    assert theory.correlation_map(ReLU(), 1.0, 1.0, 1.0, 2.0, 0.0) == pytest.approx(1.0, abs=1e-15)
    assert theory.correlation_map(ReLU(), 1.0, 3.0, 3.0, 1.3, 0.2) == pytest.approx(1.0, abs=1e-15)
    assert theory.correlation_map(ReLU(), -1.0, 1.0, 1.0, 2.0, 0.0) == pytest.approx(0.0, abs=1e-15)
    assert theory.correlation_map(Linear(), 0.37, 2.0, 5.0, 1.0, 0.0) == pytest.approx(0.37)


@pytest.mark.parametrize("slope", [0.0, 0.1, 0.5])
def test_leaky_correlation_map_matches_monte_carlo(slope: float) -> None:
    """The four-quadrant leaky closed form vs 1e6 Monte Carlo samples (tol 3e-3, ~6 standard
    errors of the sample mean) at unequal q1, q2 and c from -0.8 to 0.95."""
    rng = np.random.default_rng(20240611)
    activation: ActivationFn = LeakyReLU(negative_slope=slope) if slope else ReLU()
    q1, q2, sigma_w2, sigma_b2 = 1.3, 0.7, 1.5, 0.1
    z1, z2 = rng.standard_normal((2, 1_000_000))
    for c in [-0.8, 0.0, 0.5, 0.95]:
        u1 = math.sqrt(q1) * z1
        u2 = math.sqrt(q2) * (c * z1 + math.sqrt(1 - c * c) * z2)
        cross = float(np.mean(activation.forward(u1) * activation.forward(u2)))
        out1 = theory.length_map(activation, q1, sigma_w2, sigma_b2)
        out2 = theory.length_map(activation, q2, sigma_w2, sigma_b2)
        monte_carlo = (sigma_w2 * cross + sigma_b2) / math.sqrt(out1 * out2)
        predicted = theory.correlation_map(activation, c, q1, q2, sigma_w2, sigma_b2)
        assert predicted == pytest.approx(monte_carlo, abs=3e-3), c


@pytest.mark.parametrize(
    ("activation", "q1", "q2"),
    [(Tanh(), 0.4, 0.9), (Tanh(), 3.0, 20.0), (SELU(), 1.5, 0.6), (HardTanh(), 2.0, 0.5)],
    ids=["tanh-hermite", "tanh-split", "selu", "hard_tanh"],
)
def test_smooth_correlation_map_matches_monte_carlo(
    activation: ActivationFn, q1: float, q2: float
) -> None:
    """2-D quadrature (tensor Gauss-Hermite, or nested split rules for large q and kinks) vs
    1e6 Monte Carlo samples, tol 3e-3."""
    rng = np.random.default_rng(7)
    z1, z2 = rng.standard_normal((2, 1_000_000))
    sigma_w2, sigma_b2 = 1.2, 0.05
    for c in [-0.6, 0.3, 0.9]:
        u1 = math.sqrt(q1) * z1
        u2 = math.sqrt(q2) * (c * z1 + math.sqrt(1 - c * c) * z2)
        cross = float(np.mean(activation.forward(u1) * activation.forward(u2)))
        out1 = theory.length_map(activation, q1, sigma_w2, sigma_b2)
        out2 = theory.length_map(activation, q2, sigma_w2, sigma_b2)
        monte_carlo = (sigma_w2 * cross + sigma_b2) / math.sqrt(out1 * out2)
        predicted = theory.correlation_map(activation, c, q1, q2, sigma_w2, sigma_b2)
        assert predicted == pytest.approx(monte_carlo, abs=3e-3), c


def test_correlation_map_at_c_equal_one_is_one_at_equal_lengths() -> None:
    """c = 1 with q1 = q2 maps to 1 for any phi (quadrature 1e-12)."""
    activations: list[ActivationFn] = [Tanh(), Sigmoid(), GELU(), ELU()]
    for activation in activations:
        for q in [0.5, 7.0]:
            value = theory.correlation_map(activation, 1.0, q, q, 1.7, 0.1)
            assert value == pytest.approx(1.0, abs=1e-12)


# --- fixed points -------------------------------------------------------------------------------


def test_relu_family_fixed_points() -> None:
    """q* = sigma_b2 / (1 - sigma_w2 (1+s^2)/2) when the factor is < 1; inf when >= 1 with bias or
    > 1; 0 without bias; the starting q = 1 at factor 1 without bias (every q is fixed)."""
    assert theory.fixed_point(ReLU(), 1.0, 0.3) == pytest.approx(0.6, rel=1e-15)
    assert theory.fixed_point(LeakyReLU(negative_slope=0.5), 1.0, 0.375) == pytest.approx(1.0)
    assert theory.fixed_point(ReLU(), 1.0, 0.0) == 0.0
    assert theory.fixed_point(ReLU(), 2.0, 0.1) == math.inf
    assert theory.fixed_point(ReLU(), 4.0, 0.0) == math.inf
    assert theory.fixed_point(ReLU(), 2.0, 0.0) == 1.0
    assert theory.fixed_point(Linear(), 1.0, 0.0) == 1.0


@pytest.mark.parametrize(
    ("activation", "sigma_w2", "sigma_b2"),
    [
        (Tanh(), 1.5, 0.0),
        (Tanh(), 0.5, 0.05),
        (Sigmoid(), 4.0, 0.0),
        (GELU(), 1.0, 0.3),
        (ELU(), 1.5, 0.05),
        (HardTanh(), 2.0, 0.1),
        (Softplus(), 1.0, 0.0),
    ],
    ids=lambda p: getattr(p, "label", str(p)),
)
def test_smooth_fixed_point_is_a_fixed_point_reached_from_one(
    activation: ActivationFn, sigma_w2: float, sigma_b2: float
) -> None:
    """L(q*) = q* to 1e-12 relative, and 300 plain iterations of the map from q = 1 land there
    (1e-6 relative: the iteration converges geometrically at rate slope(q*) < 1)."""
    q_star = theory.fixed_point(activation, sigma_w2, sigma_b2)
    assert 0 < q_star < math.inf
    assert theory.length_map(activation, q_star, sigma_w2, sigma_b2) == pytest.approx(
        q_star, rel=1e-12
    )
    q = 1.0
    for _ in range(300):
        q = theory.length_map(activation, q, sigma_w2, sigma_b2)
    assert q == pytest.approx(q_star, rel=1e-6)


def test_fixed_point_limits() -> None:
    """Convergence to 0 (tanh, sigma_w2 < 1, no bias) and divergence (GELU at sigma_w2 = 4; GELU
    at sigma_w2 = 2 with bias grows like q + 0.3 - O(sqrt q): slowly, but without bound)."""
    assert theory.fixed_point(Tanh(), 0.8, 0.0) == 0.0
    assert theory.fixed_point(GELU(), 4.0, 0.0) == math.inf
    assert theory.fixed_point(GELU(), 2.0, 0.3) == math.inf


# --- edge of chaos -------------------------------------------------------------------------------


def test_critical_sigma_w2() -> None:
    """tanh, sigma_b2 = 0 -> 1 (1e-6); tanh, sigma_b2 = 0.05 -> > 1 with chi_1(q*) = 1 (1e-6);
    ReLU, sigma_b2 = 0 -> 2 (exact), none with bias; sigmoid, sigma_b2 = 0 -> none in
    [0.1, 100], and the nearest point still has chi_1 < 1 (SCIENCE.md)."""
    assert theory.critical_sigma_w2(Tanh(), 0.0) == pytest.approx(1.0, abs=1e-6)
    biased = theory.critical_sigma_w2(Tanh(), 0.05)
    assert biased is not None
    assert biased > 1.0
    assert theory.chi_1_at_fixed_point(Tanh(), biased, 0.05) == pytest.approx(1.0, abs=1e-6)
    assert theory.critical_sigma_w2(ReLU(), 0.0) == 2.0
    assert theory.critical_sigma_w2(ReLU(), 0.05) is None
    assert theory.critical_sigma_w2(Sigmoid(), 0.0) is None
    sigma_w2, chi = theory.nearest_to_critical(Sigmoid(), 0.0)
    assert 0.1 <= sigma_w2 <= 100.0
    assert chi < 1.0
    assert chi == pytest.approx(theory.chi_1_at_fixed_point(Sigmoid(), sigma_w2, 0.0))


def test_no_edge_of_chaos_where_chi_1_only_jumps_or_q_star_diverges() -> None:
    """GELU, sigma_b2 = 0: chi_1(q*) jumps from sigma_w2/4 < 1 (q* = 0) to sigma_w2/2 > 1
    (q* = inf) near sigma_w2 = 2; softplus reaches chi_1 = 1 only as q* -> inf at 2. Neither is
    an edge of chaos (None), while SELU without bias has one at q* = 0, where
    chi_1(0) = sigma_w2 scale^2 (1 + alpha^2) / 2 = 1. Tolerance 1e-7: above that point
    chi_1(q*) - 1 ~ 1.3 delta^2 stays within rounding of 0 for relative offsets delta < 2e-8."""
    assert theory.critical_sigma_w2(GELU(), 0.0) is None
    assert theory.critical_sigma_w2(Softplus(), 0.0) is None
    selu = theory.critical_sigma_w2(SELU(), 0.0)
    assert selu is not None
    expected = 2.0 / (SELU_SCALE**2 * (1.0 + SELU_ALPHA**2))
    assert selu == pytest.approx(expected, abs=1e-7)


def test_critical_sigma_w2_reference_values() -> None:
    """The edge of chaos (Poole et al. 2016; Schoenholz et al. 2017) at the values computed on
    the base commit with a sigma_w2 scan (issue 12), sigma_w2 and q* to 1e-3, chi_1(q*) = 1 to
    1e-9 now that the root is found on the critical line parametrised by q*; no edge for
    sigmoid and softplus at any of these biases, none for GELU up to 0.1 and SiLU up to 0.3."""
    cases: list[tuple[ActivationFn, float, float, float]] = [
        (Tanh(), 0.01, 1.424, 0.273),
        (Tanh(), 0.05, 1.761, 0.570),
        (Tanh(), 0.1, 1.986, 0.806),
        (SELU(), 0.01, 0.760, 0.309),
        (SELU(), 0.05, 0.902, 0.827),
        (ELU(), 0.0, 1.0, 0.0),
        (ELU(), 0.01, 1.383, 0.438),
    ]
    for activation, sigma_b2, expected, q_star in cases:
        found = theory.critical_sigma_w2(activation, sigma_b2)
        assert found is not None, activation.label
        assert found == pytest.approx(expected, abs=1e-3), activation.label
        assert theory.fixed_point(activation, found, sigma_b2) == pytest.approx(q_star, abs=1e-3)
        chi = theory.chi_1_at_fixed_point(activation, found, sigma_b2)
        assert chi == pytest.approx(1.0, abs=1e-9)
    for sigma_b2 in (0.0, 0.01, 0.05, 0.1, 0.3):
        assert theory.critical_sigma_w2(Sigmoid(), sigma_b2) is None
        assert theory.critical_sigma_w2(Softplus(), sigma_b2) is None
        assert theory.critical_sigma_w2(SiLU(), sigma_b2) is None
        if sigma_b2 <= 0.1:
            assert theory.critical_sigma_w2(GELU(), sigma_b2) is None


@pytest.mark.parametrize(
    ("activation", "sigma_b2", "sigma_w2", "q_star"),
    [(GELU(), 0.3, 1.9562, 8.772), (SiLU(), 1.0, 1.9670, 39.39)],
    ids=["gelu", "silu"],
)
def test_an_edge_beside_a_jump_of_q_star_is_found(
    activation: ActivationFn, sigma_b2: float, sigma_w2: float, q_star: float
) -> None:
    """GELU at sigma_b2 = 0.3: chi_1(q*) = 1 at sigma_w2 = 1.9562 with q* = 8.77, a stable fixed
    point (length-map slope 0.98) that 3000 plain iterations of the map from q = 1 reach
    (rel 1e-9). The base commit's sigma_w2 scan returned None: chi_1(q*) - 1 is < 0 at its grid
    point 1.78 and > 0 at 2.05, where q* = inf, so Brent's method converged to the jump to
    q* = inf (rejected) and the root beside it went unseen. SiLU at sigma_b2 = 1 likewise."""
    found = theory.critical_sigma_w2(activation, sigma_b2)
    assert found is not None
    assert found == pytest.approx(sigma_w2, abs=1e-4)
    q = 1.0
    for _ in range(3000):
        q = theory.length_map(activation, q, found, sigma_b2)
    assert q == pytest.approx(q_star, rel=1e-3)
    assert theory.fixed_point(activation, found, sigma_b2) == pytest.approx(q, rel=1e-9)
    assert theory.chi_1(activation, q, found) == pytest.approx(1.0, abs=1e-9)
    assert theory.length_map_slope(activation, q, found) < 1.0


@pytest.mark.parametrize("activation", [*SMOOTH, HardTanh()], ids=lambda a: a.label)
def test_edge_of_chaos_is_a_fixed_point_with_chi_1_equal_to_one(activation: ActivationFn) -> None:
    """The critical line parametrised by q*: at (sigma_w2, sigma_b2) = edge_of_chaos(q),
    L(q) = q and chi_1(q) = 1 (1e-12), wherever sigma_b2 >= 0 (Poole et al. 2016, Fig. 2)."""
    for q in (0.05, 0.5, 3.0, 40.0):
        sigma_w2, sigma_b2 = theory.edge_of_chaos(activation, q)
        assert theory.chi_1(activation, q, sigma_w2) == pytest.approx(1.0, rel=1e-12)
        if sigma_b2 >= 0.0:
            mapped = theory.length_map(activation, q, sigma_w2, sigma_b2)
            assert mapped == pytest.approx(q, rel=1e-12)


def test_nearest_to_critical_keeps_q_star_finite_and_away_from_zero() -> None:
    """Only sigma_w2 with Q_AWAY <= q* <= Q_MAX count. The base commit gave GELU and softplus
    (2.0, chi_1 1.0000005), the q* = inf limit, and SiLU (2.81, 0.70): the q* = 0 side of the
    jump at sigma_w2 = 1 / E[silu(z)^2] = 2.8108, where the unstable fixed point crosses the
    starting q = 1 (chi_1(0) = sigma_w2 / 4) -- a jump, not a quadrature error, and not a
    stationary network. Now GELU and SiLU without bias have no admissible point (nan);
    softplus's nearest has q* at the cap Q_MAX and chi_1 = 0.992 (it reaches 1 only as
    q* -> inf); sigmoid's is sigma_w2 = 100, chi_1 = 0.986, q* = 44.2; ReLU with sigma_b2 =
    0.05 has chi_1 = 1 - 0.05 / Q_MAX at q* = Q_MAX (q* = sigma_b2 / (1 - chi_1))."""
    assert 1.0 / theory.second_moment(SiLU(), 1.0) == pytest.approx(2.8108, abs=1e-4)
    assert theory.fixed_point(SiLU(), 2.81, 0.0) == 0.0
    assert theory.fixed_point(SiLU(), 2.812, 0.0) == math.inf
    for activation in (GELU(), SiLU()):
        sigma_w2, chi = theory.nearest_to_critical(activation, 0.0)
        assert math.isnan(sigma_w2)
        assert math.isnan(chi)
    sigma_w2, chi = theory.nearest_to_critical(Softplus(), 0.0)
    q_star = theory.fixed_point(Softplus(), sigma_w2, 0.0)
    assert 0.95 * theory.Q_MAX <= q_star <= theory.Q_MAX
    assert chi == pytest.approx(0.992, abs=1e-3)
    sigma_w2, chi = theory.nearest_to_critical(Sigmoid(), 0.0)
    assert sigma_w2 == 100.0
    assert chi == pytest.approx(0.9858, abs=1e-4)
    assert theory.fixed_point(Sigmoid(), sigma_w2, 0.0) == pytest.approx(44.2, abs=0.1)
    sigma_w2, chi = theory.nearest_to_critical(ReLU(), 0.05)
    assert chi == pytest.approx(1.0 - 0.05 / theory.Q_MAX, rel=1e-12)
    assert theory.fixed_point(ReLU(), sigma_w2, 0.05) == pytest.approx(theory.Q_MAX, rel=1e-6)


def test_relu_family_critical_point_survives_rounding() -> None:
    """sigma_w2 = 2 / (1 + s^2) times (1 + s^2) / 2 rounds off 1 for 12 % of slopes; the fixed
    point there is still the critical one (every q fixed, 1 by convention), not q* = 0."""
    for slope in np.linspace(0.0, 0.99, 200):
        activation = LeakyReLU(negative_slope=float(slope))
        sigma_w2 = 2.0 / (1.0 + float(slope) ** 2)
        assert theory.fixed_point(activation, sigma_w2, 0.0) == 1.0


# --- critical_point: the point to recommend ------------------------------------------------------

# Default instances; sigma_b2 = 0: (sigma_w2, sigma_b2, q*, chi_1, exact) to 1e-3 relative.
CRITICAL_POINTS: dict[str, tuple[float, float, float | None, float, bool]] = {
    "linear": (1.0, 0.0, None, 1.0, True),
    "sigmoid": (100.0, 0.0, 44.21, 0.9858, False),
    "tanh": (1.189, 0.001, 0.1073, 1.0, True),
    "relu": (2.0, 0.0, None, 1.0, True),
    "leaky_relu": (1.9998, 0.0, None, 1.0, True),
    "elu": (1.227, 0.001, 0.1120, 1.0, True),
    "selu": (0.6647, 0.002, 0.1244, 1.0, True),
    "gelu": (1.971, 0.2, 4.471, 1.0, True),
    "silu": (1.967, 1.0, 39.39, 1.0, True),
    "softplus": (2.0, 0.0, 9865.0, 0.992, False),
    "hard_tanh": (1.008, 0.001, 0.1440, 1.0, True),
}


@pytest.mark.parametrize("cls", CATALOGUE, ids=lambda c: c.__name__)
def test_critical_point_for_every_activation(cls: type[ActivationFn]) -> None:
    """critical_point(activation, 0) for every activation of the catalogue, against the table
    above (1e-3 relative; softplus's q* 5 %, it sits at the Q_MAX cap where it moves fast with
    sigma_w2), and at sigma_b2 in {0, 0.05}: consistent with the maps -- chi_1_at_fixed_point
    and fixed_point at the returned point are its chi_1 and q_star (q_star None: every q is a
    fixed point) -- exact only with chi_1 = 1 to 1e-6 at q* >= Q_AWAY, never below the
    requested bias (except the ReLU family's sigma_b2 = 0), cached."""
    activation = cls()
    sigma_w2, sigma_b2, q_star, chi, exact = CRITICAL_POINTS[activation.name]
    point = theory.critical_point(activation, 0.0)
    assert point is not None
    assert point.sigma_w2 == pytest.approx(sigma_w2, rel=1e-3)
    assert point.sigma_b2 == sigma_b2
    assert point.chi_1 == pytest.approx(chi, rel=1e-3)
    assert point.exact is exact
    if q_star is None:
        assert point.q_star is None
    else:
        assert point.q_star == pytest.approx(q_star, rel=0.05 if cls is Softplus else 1e-3)
    for request in (0.0, 0.05):
        point = theory.critical_point(activation, request)
        assert point is not None
        assert point is theory.critical_point(activation, request)
        assert point.how.startswith(activation.label)
        at = (activation, point.sigma_w2, point.sigma_b2)
        assert theory.chi_1_at_fixed_point(*at) == point.chi_1
        if point.q_star is None:
            assert point.sigma_b2 == 0.0
            for q in (0.3, 1.0, 7.0):
                assert theory.length_map(*at[:1], q, *at[1:]) == pytest.approx(q, rel=1e-15)
        else:
            assert theory.fixed_point(*at) == point.q_star
            assert point.sigma_b2 >= request
        if point.exact:
            assert point.chi_1 == pytest.approx(1.0, abs=1e-6)
            assert point.q_star is None or point.q_star >= theory.Q_AWAY


def test_critical_point_keeps_selu_away_from_q_star_zero() -> None:
    """SELU without bias: chi_1(0) = sigma_w2 scale^2 (1 + alpha^2) / 2 = 1 at sigma_w2 = 0.4768,
    but there q* = 2.7e-9 (at 0.4768 as written; 0 at the exact root): the network is linear in
    the limit and its signal fades. (Its self-normalising point, sigma_w2 = 1, has q* = 1 and
    chi_1 = 1.07: slightly chaotic, Klambauer et al. 2017.) critical_point says so and raises
    the bias to 0.002, the first value of BIAS_GRID whose edge has q* >= Q_AWAY: sigma_w2 =
    0.6647, q* = 0.124."""
    assert theory.fixed_point(SELU(), 0.4768, 0.0) == pytest.approx(2.7e-9, rel=0.02)
    assert theory.fixed_point(SELU(), 1.0, 0.0) == pytest.approx(1.0, rel=1e-9)
    assert theory.chi_1_at_fixed_point(SELU(), 1.0, 0.0) == pytest.approx(1.07, abs=0.005)
    point = theory.critical_point(SELU(), 0.0)
    assert point is not None
    assert point.sigma_w2 != pytest.approx(0.4768, abs=0.01)
    assert "sigma_w^2 = 0.4768, but there q* = 2.7e-09 < 0.1" in point.how
    assert (point.sigma_b2, point.exact) == (0.002, True)
    raised = theory.critical_point(SELU(), 0.001)  # 0.001 itself gives q* = 0.085
    assert raised is not None
    assert dataclasses.replace(raised, how="") == dataclasses.replace(point, how="")
    assert "q* = 0.085 < 0.1 (Q_AWAY): the pre-activations stay where phi is nearly" in raised.how


def test_critical_point_at_the_requested_bias_and_beyond() -> None:
    """tanh with sigma_b2 = 0.05 is critical at 1.761 with q* = 0.570 >= Q_AWAY: returned as
    is. ReLU with a bias has no finite-q* edge (q grows by sigma_b2 per layer at sigma_w2 = 2):
    the sigma_b2 = 0 point, and how says so. A bias alone above Q_MAX leaves nothing (None)."""
    point = theory.critical_point(Tanh(), 0.05)
    assert point is not None
    assert (point.sigma_b2, point.exact) == (0.05, True)
    assert point.sigma_w2 == theory.critical_sigma_w2(Tanh(), 0.05)
    assert point.sigma_w2 == pytest.approx(1.761, abs=1e-3)
    relu = theory.critical_point(ReLU(), 0.05)
    assert relu is not None
    assert dataclasses.replace(relu, how="") == theory.CriticalPoint(2.0, 0.0, None, 1.0, True, "")
    assert "q grows by 0.05 per layer without bound" in relu.how
    assert theory.critical_point(Tanh(), 2e4) is None


def test_phase_labels() -> None:
    """PHASE_TOL = 0.01 around chi_1 = 1."""
    assert theory.PHASE_TOL == 0.01
    assert theory.phase(0.5) == "ordered"
    assert theory.phase(0.991) == "critical"
    assert theory.phase(1.009) == "critical"
    assert theory.phase(1.02) == "chaotic"
    assert theory.phase(1.02, tol=0.05) == "critical"


# --- depth scales -------------------------------------------------------------------------------


def test_depth_scales_in_the_ordered_phase() -> None:
    """c* = 1, so xi_c = -1/ln chi_1(q*) exactly; xi_q finite and positive off criticality."""
    cases: list[tuple[ActivationFn, float, float]] = [
        (Tanh(), 0.5, 0.05),
        (Tanh(), 1.5, 0.3),
        (Sigmoid(), 1.0, 0.0),
        (ELU(), 1.0, 0.1),
    ]
    for activation, sigma_w2, sigma_b2 in cases:
        chi = theory.chi_1_at_fixed_point(activation, sigma_w2, sigma_b2)
        assert chi < 1.0
        assert theory.c_star(activation, sigma_w2, sigma_b2) == 1.0
        xi_q, xi_c = theory.depth_scales(activation, sigma_w2, sigma_b2)
        assert xi_c == pytest.approx(-1.0 / math.log(chi), rel=1e-12)
        assert 0.0 < xi_q < math.inf
        assert theory.trainable_depth(xi_c) == 6 * xi_c


def test_xi_q_is_the_decay_rate_of_the_length_map() -> None:
    """exp(-1/xi_q) equals the central-difference slope of the length map at q* (1e-6), kinked
    phi included (weak derivative)."""
    cases: list[tuple[ActivationFn, float, float]] = [
        (Tanh(), 0.8, 0.05),
        (SELU(), 0.9, 0.05),
        (HardTanh(), 1.5, 0.1),
        (Tanh(), 3.0, 0.0),
    ]
    for activation, sigma_w2, sigma_b2 in cases:
        q_star = theory.fixed_point(activation, sigma_w2, sigma_b2)
        step = 1e-5 * q_star
        slope = (
            theory.length_map(activation, q_star + step, sigma_w2, sigma_b2)
            - theory.length_map(activation, q_star - step, sigma_w2, sigma_b2)
        ) / (2 * step)
        xi_q, _ = theory.depth_scales(activation, sigma_w2, sigma_b2)
        assert math.exp(-1.0 / xi_q) == pytest.approx(slope, abs=1e-6)


def test_xi_c_in_the_chaotic_phase_is_the_slope_at_c_star() -> None:
    """tanh, sigma_w2 = 4, sigma_b2 = 0.05: 0 < c* < 1 is a fixed point of the correlation map
    (1e-10) and exp(-1/xi_c) equals the map's central-difference slope there (1e-6)."""
    activation, sigma_w2, sigma_b2 = Tanh(), 4.0, 0.05
    assert theory.chi_1_at_fixed_point(activation, sigma_w2, sigma_b2) > 1.0
    q_star = theory.fixed_point(activation, sigma_w2, sigma_b2)
    c = theory.c_star(activation, sigma_w2, sigma_b2)
    assert 0.0 < c < 1.0
    mapped = theory.correlation_map(activation, c, q_star, q_star, sigma_w2, sigma_b2)
    assert mapped == pytest.approx(c, abs=1e-10)
    step = 1e-5
    slope = (
        theory.correlation_map(activation, c + step, q_star, q_star, sigma_w2, sigma_b2)
        - theory.correlation_map(activation, c - step, q_star, q_star, sigma_w2, sigma_b2)
    ) / (2 * step)
    _, xi_c = theory.depth_scales(activation, sigma_w2, sigma_b2)
    assert math.exp(-1.0 / xi_c) == pytest.approx(slope, abs=1e-6)
    # odd phi without bias: c* = 0 (the map's Hermite series has no constant term)
    assert theory.c_star(Tanh(), 4.0, 0.0) == 0.0


def test_depth_scales_diverge_at_criticality() -> None:
    """ReLU at sigma_w2 = 2 (length map slope 1, chi_1 = 1): both infinite; ReLU at sigma_w2 = 1:
    xi_q = xi_c = -1/ln(1/2)."""
    assert theory.depth_scales(ReLU(), 2.0, 0.0) == (math.inf, math.inf)
    xi_q, xi_c = theory.depth_scales(ReLU(), 1.0, 0.1)
    assert xi_q == pytest.approx(1 / math.log(2.0), rel=1e-15)
    assert xi_c == pytest.approx(1 / math.log(2.0), rel=1e-15)
    assert theory.depth_scales(Tanh(), 1.0, 0.0) == (math.inf, math.inf)


# --- depth scales off a finite fixed point (issue 12) -------------------------------------------

SLOPE_ONE: list[tuple[ActivationFn, float]] = [
    (ReLU(), 0.01),
    (ReLU(), 0.5),
    (ReLU(), 2.0),
    (ReLU(), 4.0),
    (LeakyReLU(), 1.0),
    (LeakyReLU(negative_slope=0.2), 3.0),
    (Linear(), 0.5),
    (Linear(), 1.0),
    (Linear(), 2.0),
    (Tanh(), 0.5),
    (Tanh(), 0.9),
    (HardTanh(), 0.5),
    (ELU(), 0.5),
    (SELU(), 0.3),
    (GELU(), 1.0),
    (GELU(), 4.0),
]


@pytest.mark.parametrize(
    ("activation", "sigma_w2"), SLOPE_ONE, ids=lambda p: getattr(p, "label", str(p))
)
def test_xi_c_is_unbounded_where_the_normalised_map_has_slope_one(
    activation: ActivationFn, sigma_w2: float
) -> None:
    """sigma_b2 = 0: xi_c = inf and the slope of the normalised correlation map at c = 1 is
    exactly 1. Schoenholz et al. 2017's 1/xi_c = -ln chi_1 holds only at a finite, positive q*;
    the slope is chi_1(q) q / L(q). ReLU family and linear: L(q) = chi_1 q at every q (the
    arc-cosine map is scale-free), so every sigma_w2 gives 1 (ReLU at 0.01 gave xi_c = 0.189
    before). Smooth phi with phi(0) = 0 where q* = 0 (tanh at sigma_w2 < 1, hard tanh, ELU,
    SELU, GELU at 1): L(q) ~ chi_1(0) q, the network is linear in the limit. GELU at 4: q* = inf,
    where it acts like a ReLU. No exponential depth scale, so no trainable depth 6 xi_c."""
    q_star = theory.fixed_point(activation, sigma_w2, 0.0)
    assert q_star in {0.0, 1.0, math.inf}  # 1: every q is fixed (ReLU at 2, linear at 1)
    assert theory.c_star(activation, sigma_w2, 0.0) == 1.0
    assert theory.correlation_slope(activation, q_star, sigma_w2, 0.0) == 1.0
    _, xi_c = theory.depth_scales(activation, sigma_w2, 0.0)
    assert xi_c == math.inf
    assert theory.trainable_depth(xi_c) == math.inf


def test_relu_at_sigma_w2_001_has_a_length_scale_but_no_correlation_scale() -> None:
    """The issue's numbers: ReLU, sigma_w2 = 0.01, sigma_b2 = 0. q shrinks by 0.005 per layer,
    xi_q = -1/ln 0.005 = 0.189 (exact); chi_1 = 0.005 too, but -1/ln chi_1 = 0.189 is not a
    correlation scale: xi_c = inf (the measured gap 1 - c_l shrinks ~0.9 per layer, see
    test_relu_correlation_gap_matches_the_arc_cosine_map_at_width_1000)."""
    xi_q, xi_c = theory.depth_scales(ReLU(), 0.01, 0.0)
    assert xi_q == pytest.approx(-1.0 / math.log(0.005), rel=1e-15)
    assert xi_q == pytest.approx(0.18873, abs=1e-5)
    assert theory.chi_1_at_fixed_point(ReLU(), 0.01, 0.0) == 0.005
    assert xi_c == math.inf


@pytest.mark.parametrize(
    ("activation", "q", "sigma_w2", "sigma_b2", "step", "tol"),
    [
        (Tanh(), 0.5, 1.5, 0.05, 1e-7, 1e-6),
        (Tanh(), 3.0, 1.5, 0.05, 1e-7, 1e-6),
        (GELU(), 2.0, 1.2, 0.1, 1e-7, 1e-6),
        (Sigmoid(), 1.0, 4.0, 0.0, 1e-7, 1e-6),
        (ELU(), 0.3, 1.0, 0.0, 1e-9, 5e-5),
        (SELU(), 3.0, 1.0, 0.2, 1e-9, 5e-5),
        (HardTanh(), 2.0, 1.5, 0.1, 1e-9, 5e-5),
        (ReLU(), 3.0, 1.5, 0.1, 1e-10, 5e-5),
        (LeakyReLU(negative_slope=0.2), 0.7, 2.5, 0.3, 1e-10, 5e-5),
    ],
    ids=lambda p: getattr(p, "label", str(p)),
)
def test_correlation_slope_is_the_maps_derivative_at_one(
    activation: ActivationFn, q: float, sigma_w2: float, sigma_b2: float, step: float, tol: float
) -> None:
    """chi_1(q) q / L(q) vs the one-sided difference (1 - c'(1 - h)) / h of correlation_map at
    q1 = q2 = q off the fixed point (relative). Smooth phi: O(h) error, tol 1e-6 at h = 1e-7.
    A jump of phi' (ELU's alpha = 1 has none in phi' but one in phi''; SELU, hard tanh, ReLU
    family) adds a (1 - c)^{3/2} term to the map, so the quotient converges like sqrt(h):
    tol 5e-5 at h = 1e-9 (measured 1.4e-5 for hard tanh, 1.4e-3 at h = 1e-5). This also checks
    the 2-D quadrature near c = 1, which missed hard tanh's kink by 84 % at h = 1e-7 before
    the outer panels were graded down to the inner Gaussian's width."""
    mapped = theory.correlation_map(activation, 1.0 - step, q, q, sigma_w2, sigma_b2)
    slope = theory.correlation_slope(activation, q, sigma_w2, sigma_b2)
    assert (1.0 - mapped) / step == pytest.approx(slope, rel=tol)
    if theory.fixed_point(activation, sigma_w2, sigma_b2) != q:  # off q*: not chi_1
        assert slope != pytest.approx(theory.chi_1(activation, q, sigma_w2), rel=1e-3)


@pytest.mark.parametrize(
    ("activation", "ratio_1e3", "ratio_1e4"),
    [(ReLU(), 0.9711, 0.9964), (LeakyReLU(negative_slope=0.2), 0.9643, 0.9957)],
    ids=lambda p: getattr(p, "label", str(p)),
)
def test_correlation_gap_constant_is_the_arc_cosine_maps_asymptote(
    activation: ActivationFn, ratio_1e3: float, ratio_1e4: float
) -> None:
    """1 - c_l ~ C / l^2 with C = (9 pi^2 / 2) ((1 + s^2) / (1 - s)^2)^2 (Hayou et al. 2019:
    9 pi^2 / 2 = 44.4 for ReLU; the docstring derives it from 1 - c' = (1 - c) - a (1 - c)^{3/2}).
    Iterating the normalised map (correlation_map, sigma_w2 = 1, sigma_b2 = 0) from c0 = 0,
    l^2 (1 - c_l) / C approaches 1 from below with an O(log l / l) correction: 0.971 at
    l = 1e3, 0.996 at 1e4 (ReLU), held to 1e-3. Linear (c preserved) and smooth phi: None."""
    constant = theory.correlation_gap_constant(activation)
    assert constant is not None
    if isinstance(activation, ReLU):
        assert constant == pytest.approx(9.0 * math.pi**2 / 2.0, rel=1e-14)
    c = 0.0
    for depth in range(1, 10_001):
        c = theory.correlation_map(activation, c, 1.0, 1.0, 1.0, 0.0)
        if depth == 1000:
            assert depth**2 * (1.0 - c) / constant == pytest.approx(ratio_1e3, abs=1e-3)
    assert 10_000**2 * (1.0 - c) / constant == pytest.approx(ratio_1e4, abs=1e-3)
    assert theory.correlation_gap_constant(Linear()) is None
    assert theory.correlation_gap_constant(Tanh()) is None


GAP_WIDTH, GAP_DEPTH, GAP_INPUTS, GAP_SEEDS = 1000, 20, 8, 8


def _measured_gaps(sigma_w2: float, seed: int) -> FloatArray:
    """1 - c_l of the pre-activations a_l, l = 1 .. GAP_DEPTH, averaged over the input pairs: a
    width-1000 ReLU network (W ~ N(0, sigma_w2 / 1000), no bias; the engine's dense and ReLU)
    fed GAP_INPUTS orthogonal inputs (c0 = 0 exactly), one BLAS thread."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((GAP_WIDTH, GAP_INPUTS)))
    h: FloatArray = basis.T * math.sqrt(GAP_WIDTH)
    zero = np.zeros(GAP_WIDTH)
    pairs = np.triu_indices(GAP_INPUTS, 1)
    gaps = []
    with threadpool_limits(limits=1):
        for _ in range(GAP_DEPTH):
            w = rng.standard_normal((GAP_WIDTH, GAP_WIDTH)) * math.sqrt(sigma_w2 / GAP_WIDTH)
            a = dense(h, w, zero)
            norms = np.linalg.norm(a, axis=1)
            gaps.append(1.0 - float(((a @ a.T) / np.outer(norms, norms))[pairs].mean()))
            h = ReLU().forward(a)
    return np.array(gaps)


def test_relu_correlation_gap_matches_the_arc_cosine_map_at_width_1000() -> None:
    """Simulation (Hayou et al. 2019; the issue measured x0.90 per layer at N = 1000): the mean
    over seeds 0-7 of the measured 1 - c_l follows the arc-cosine iteration from c0 = 0 within
    25 % at every layer 1-20, and its per-layer factor between layers 10 and 20,
    (gap_20 / gap_10)^(1/10), is 0.908 in theory and within 0.05 of it measured -- not
    exp(-1/0.189) = 0.005, the factor the old xi_c implied for sigma_w2 = 0.01. The network is
    positively homogeneous, so sigma_w2 = 0.01 gives the same correlations as He's 2 with the
    same draws (to 1e-12: the weights differ by a factor only).

    Tolerance: mean-field theory is the N -> inf limit; at N = 1000 the per-seed ratio of
    measured to predicted gap has a standard deviation growing from 2 % (layer 2) to 22 %
    (layer 20, 24 seeds measured), so the 8-seed mean has a standard error <= 8 % and 25 % is
    >= 3 of them; the 24-seed means stayed within 4 % of the theory at every layer, these 8
    within 3.3 % (factor 0.911)."""
    predicted = [1.0]
    c = 0.0
    for _ in range(GAP_DEPTH - 1):
        c = theory.correlation_map(ReLU(), c, 1.0, 1.0, 2.0, 0.0)
        predicted.append(1.0 - c)
    measured = np.mean([_measured_gaps(2.0, seed) for seed in range(GAP_SEEDS)], axis=0)
    for layer in range(GAP_DEPTH):
        assert measured[layer] == pytest.approx(predicted[layer], rel=0.25), layer + 1
    factor = (predicted[19] / predicted[9]) ** 0.1
    assert factor == pytest.approx(0.908, abs=1e-3)
    assert (measured[19] / measured[9]) ** 0.1 == pytest.approx(factor, abs=0.05)
    assert math.exp(-1.0 / 0.18873) < 0.006
    small = _measured_gaps(0.01, 0)
    assert small == pytest.approx(_measured_gaps(2.0, 0), rel=1e-12, abs=1e-12)


# --- theory vs simulation ---------------------------------------------------------------------

WIDTH, DEPTH, INPUT_DIM, SAMPLES = 500, 5, 250, 1000
# The variance check's ensemble: seeds 0 .. VARIANCE_SEEDS - 1, VARIANCE_SAMPLES inputs each
# (see test_preactivation_variance_matches_theory for why these numbers).
VARIANCE_SEEDS, VARIANCE_SAMPLES = 64, 50
ACTIVATIONS: dict[str, ActivationFn] = {"tanh": Tanh(), "relu": ReLU(), "sigmoid": Sigmoid()}
GRID = [
    (name, sigma_w2, sigma_b2)
    for name in ACTIVATIONS
    for sigma_w2 in (0.5, 1.0, 2.0, 4.0)
    for sigma_b2 in (0.0, 0.05)
]


def _run(
    name: str, sigma_w2: float, sigma_b2: float, *, samples: int, dtype: str, seed: int
) -> Simulation:
    """``samples`` x 250 inputs x ~ N(0, 1), five layers of 500 units, W ~ N(0, sigma_w2 /
    fan_in), b ~ N(0, sigma_b2), on one BLAS thread: these products are small, and on this shared
    2-core machine a threaded BLAS made each network 3x (1000 samples) to 15x (50) slower."""

    def layer(fan_in: int) -> dict[str, object]:
        spec: dict[str, object] = {
            "units": WIDTH,
            "activation": name,
            "init": {"scheme": "normal", "std": math.sqrt(sigma_w2 / fan_in)},
        }
        if sigma_b2 > 0:
            spec["bias"] = {"scheme": "normal", "std": math.sqrt(sigma_b2)}
        return spec

    body = {
        "network": {
            "input_dim": INPUT_DIM,
            "layers": [layer(INPUT_DIM)] + [layer(WIDTH)] * (DEPTH - 1),
        },
        "input": {"samples": samples},
        "statistics": {"effective_rank": False},
        "dtype": dtype,
        "seed": seed,
    }
    with threadpool_limits(limits=1):
        return simulate(make_job(body))


def _predict(
    name: str, sigma_w2: float, sigma_b2: float, sim: Simulation
) -> list[theory.LayerTheory]:
    """The theory from this simulation's own input, q^0 = input_rms^2."""
    layers = [(ACTIVATIONS[name], sigma_w2, sigma_b2, WIDTH)] * DEPTH
    return theory.propagate(layers, sim.input_rms**2, INPUT_DIM)


@cache
def _simulate(name: str, sigma_w2: float, sigma_b2: float) -> Simulation:
    """The gradient check's network: one float64 network of 1000 samples, seed 0."""
    return _run(name, sigma_w2, sigma_b2, samples=SAMPLES, dtype="float64", seed=0)


def _variance_ratios(name: str, sigma_w2: float, sigma_b2: float) -> FloatArray:
    """Measured E[a_l^2] = std^2 + mean^2 over predicted q^l, one row per seed, one column per
    layer: float32 networks of VARIANCE_SAMPLES inputs, seeds 0 .. VARIANCE_SEEDS - 1, each
    against the theory from its own input."""
    rows: list[list[float]] = []
    for seed in range(VARIANCE_SEEDS):
        sim = _run(name, sigma_w2, sigma_b2, samples=VARIANCE_SAMPLES, dtype="float32", seed=seed)
        row: list[float] = []
        for layer, predicted in zip(
            sim.layers, _predict(name, sigma_w2, sigma_b2, sim), strict=True
        ):
            pre = layer.preactivations
            assert pre.std is not None
            assert pre.mean is not None
            row.append((pre.std**2 + pre.mean**2) / predicted.q)
        rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize(("name", "sigma_w2", "sigma_b2"), GRID)
def test_preactivation_variance_matches_theory(name: str, sigma_w2: float, sigma_b2: float) -> None:
    """Predicted q^l vs measured E[a_l^2] = std^2 + mean^2 within 5 % at every layer of every
    grid point, the measurement being the mean of E[a_l^2] / q^l over seeds 0..63 of width-500
    networks (50 samples, float32). No point or layer is left out.

    Why an ensemble: mean-field theory is the N -> infinity limit, and one network of width N
    misses it by finite-width noise, not by a bias of the theory. A non-zero mean m = E[phi]
    (ReLU, sigmoid, and tanh fed a bias) adds to every sample of unit j the same m sum_i W_ij,
    and unit j's bias b_j likewise, so averaging over samples does not shrink that term -- only
    width does, like sqrt(2 / N) ~ 6 % times m^2 / E[phi^2] per layer, compounding with
    depth. Measured over 200 seeds at this shape, the per-seed relative error of E[a_l^2] has a
    standard deviation of up to 11.2 % (ReLU, layer 5; single seeds reach 37 %), 7.5 % for
    sigmoid, 6.1 % for tanh with bias at sigma_w2 = 0.5, <= 2.1 % for tanh without bias, ~1 %
    at layer 1, while the 200-seed means are all within 1.1 % of the theory. The one offset
    resolved above the noise, -0.1 to -0.4 % for tanh, is the O(1/N) finite-width correction
    E[L(q)] < L(E[q]) of its concave length map; ReLU's map is linear, so its expectation is
    exact at any width.

    Why these numbers: 64 seeds bring the standard error to <= 11.2 % / 8 = 1.4 %, so 5 % is
    >= 3.5 standard errors: a right theory does not need lucky seeds (the measured worst gap is
    1.5 %, ReLU, sigma_w2 = 0.5, sigma_b2 = 0.05, layer 3), and a wrong one is caught -- q^l
    scaled by 1.08 or 0.92 fails all 120 checks, by 1.06 97 of them, by 0.94 all. The test
    also asserts that the standard error of its own 64 seeds is below 5 % / 3 (the largest is
    1.25 %), so a noisier simulation cannot pass by chance. Width 500 is the cheapest
    way there: the variance of the noise falls like 1 / N while the cost of drawing W grows like
    N^2 (0.018 s per network at 500, 0.07 s at 1000). The dominant noise is fixed per unit, so
    samples are cut from 1000 to 50: the deeper layers' spread is the same at 50 and at 400
    samples (8.9 % vs 8.7 % at ReLU layer 4), and the part that does average over samples,
    ~sqrt(2 / (N samples)), is ~1 % at layer 1. float32 rounds E[a^2] to ~1e-6.
    """
    ratios = _variance_ratios(name, sigma_w2, sigma_b2)
    mean = ratios.mean(axis=0)
    standard_error = ratios.std(axis=0, ddof=1) / math.sqrt(VARIANCE_SEEDS)
    for index in range(DEPTH):
        assert standard_error[index] < 0.05 / 3, index + 1
        assert mean[index] == pytest.approx(1.0, abs=0.05), index + 1  # 5 % of q^l


@pytest.mark.parametrize(("name", "sigma_w2", "sigma_b2"), GRID)
def test_gradient_ratios_match_theory(name: str, sigma_w2: float, sigma_b2: float) -> None:
    """Predicted RMS(g_{l-1}) / RMS(g_l) = sqrt(N_l / N_{l-1} chi_1(q^l)) vs the simulation's
    output_grad_rms (input_grad_rms for g_0) within 10 % at every layer of the whole grid --
    including ReLU at sigma_w2 = 4, whose activations grow 2x per layer: the backward ratio
    depends only on E[phi'^2] = 1/2, and float64 has room. The first layer's ratio includes
    sqrt(500 / 250) from the input width. Over 12 seeds the per-seed spread is <= 2.3 % and the
    worst single ratio is 5.2 % off. The products of the ratios, the predicted relative_to_last,
    are held to the same 10 %."""
    sim = _simulate(name, sigma_w2, sigma_b2)
    predicted = _predict(name, sigma_w2, sigma_b2, sim)
    grads = [sim.input_grad_rms, *(layer.gradients.output_grad_rms for layer in sim.layers)]
    for index in range(DEPTH):
        below, above = grads[index], grads[index + 1]
        assert below is not None
        assert above is not None
        ratio = below / above
        assert ratio == pytest.approx(predicted[index].gradient_ratio, rel=0.10), index + 1

    relative = theory.predicted_relative_to_last(predicted)
    for layer, expected in zip(sim.layers, relative, strict=True):
        assert layer.gradients.relative_to_last == pytest.approx(expected, rel=0.10)


def test_propagate_by_hand() -> None:
    """Two layers, widths 3 -> 4 -> 2, checked against the formulas written out (1e-15)."""
    layers: list[tuple[ActivationFn, float, float, int]] = [
        (ReLU(), 2.0, 0.1, 4),
        (Linear(), 0.5, 0.0, 2),
    ]
    out = theory.propagate(layers, q0=1.5, input_dim=3)
    q1 = 2.0 * 1.5 + 0.1
    q2 = 0.5 * q1 / 2
    assert out[0] == theory.LayerTheory(
        q=q1, second_moment=q1 / 2, chi_1=1.0, gradient_ratio=math.sqrt(4 / 3 * 1.0)
    )
    assert out[1].q == pytest.approx(q2, rel=1e-15)
    assert out[1].second_moment == pytest.approx(q2, rel=1e-15)
    assert out[1].gradient_ratio == pytest.approx(math.sqrt(2 / 4 * 0.5), rel=1e-15)
    assert theory.predicted_relative_to_last(out) == [out[1].gradient_ratio, 1.0]


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="q must be"):
        theory.second_moment(Tanh(), -1.0)
    with pytest.raises(ValueError, match="sigma_w2"):
        theory.length_map(Tanh(), 1.0, -1.0, 0.0)
    with pytest.raises(ValueError, match="c must be"):
        theory.correlation_map(Tanh(), 1.5, 1.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="finite q > 0"):
        theory.correlation_map(Tanh(), 0.5, 0.0, 1.0, 1.0, 0.0)


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [(-1.0, 1.0), (0.5, 3.0), (-3.0, -0.5), (-1e-12, 1e-12), (1e-8, 2e-8), (2.0, 5.0), (1.5, 1.8)],
)
def test_the_truncated_second_moment_has_no_cancellation(alpha: float, beta: float) -> None:
    """Int_alpha^beta z^2 Dz by incomplete gamma functions, against scipy's quad: the closed
    form Phi(beta) - Phi(alpha) - (beta pdf(beta) - alpha pdf(alpha)) lost every digit when both
    ends were near 0."""

    def integrand(z: float) -> float:
        return z * z * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    exact, _ = integrate.quad(integrand, alpha, beta, epsabs=0, epsrel=1e-13)
    assert theory._inner_z2(alpha, beta) == pytest.approx(exact, rel=1e-13)


def test_hard_tanh_second_moment_at_huge_q_is_the_clipped_limit() -> None:
    """At q = 1e24 almost every value is clipped to +-1: E[phi^2] -> 1. The old closed form
    returned a negative moment there, and /analyze of such a network answered 500."""
    assert theory.second_moment(HardTanh(), 1e24) == pytest.approx(1.0, abs=1e-11)
