"""initscope/engine/special.py against mpmath (exact references, 40+ digits) and SciPy (what the
engine used before; a test dependency only), and the service without SciPy.

Tolerances are relative and in units of the dtype's eps (2.2e-16 in float64) unless stated.
Measured here (x86-64): ndtr 4.3 eps, ndtri 2.9 eps, expit 2 eps, P/Q(3/2, x) 1.8 eps; the
bounds leave room for NumPy's other SIMD kernels of exp and log (each within ~1 ulp).
SciPy itself is not exact in the Gaussian tail: ``scipy.special.ndtr`` rounds ``x / sqrt 2``
before squaring it, a relative error up to ``x^2 eps`` (1e-13 at x = -37), and it underflows
to 0 below x = -37.5; there it is compared within that bound, and against mpmath exactly.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from typing import Any

import mpmath
import numpy as np
import pytest
from initscope.engine import special
from numpy.typing import NDArray
from scipy import optimize
from scipy import special as sp

EPS = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
SUBNORMAL = float(np.finfo(np.float64).smallest_subnormal)

mpmath.mp.dps = 40


def _grid() -> NDArray[np.float64]:
    """ndtr's arguments: a dense grid over the whole range (Phi(-38.5) is subnormal, Phi(9) is
    1 to double precision), random points where most pre-activations fall, points near 0."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [
            np.linspace(-38.6, 9.0, 4001),
            rng.uniform(-4.0, 4.0, 2000),
            rng.standard_normal(300) * 1e-3,
            [-math.sqrt(2.0), math.sqrt(2.0), -1.0, 1.0, -8 * math.sqrt(2.0), 8 * math.sqrt(2.0)],
        ]
    )


def _mp_ndtr(x: float) -> float:
    return float(mpmath.ncdf(mpmath.mpf(x)))


def _mp_ndtri(p: float) -> float:
    """Phi^-1(p) = sqrt(2) erfinv(2p - 1), with the digits 2p - 1 loses near p = 0 and 1."""
    lost = -math.log10(min(p, 1.0 - p))
    with mpmath.workdps(30 + math.ceil(lost)):
        return float(mpmath.sqrt(2) * mpmath.erfinv(2 * mpmath.mpf(p) - 1))


def test_ndtr_against_mpmath_to_a_few_ulp_into_the_subnormal_tail() -> None:
    x = _grid()
    got = special.ndtr(x)
    ref = np.array([_mp_ndtr(float(v)) for v in x])
    normal = ref >= np.finfo(np.float64).tiny
    rel = np.abs(got[normal] - ref[normal]) / ref[normal]
    assert rel.max() <= 8 * EPS
    # below the normal range the spacing is the smallest subnormal: the result's rounding
    # and the reference's, one unit each
    assert np.abs(got[~normal] - ref[~normal]).max() <= 2 * SUBNORMAL
    assert (~normal).sum() > 20  # the grid does reach the subnormal tail
    assert special.ndtr(-38.0) == pytest.approx(2.885428351e-316, rel=1e-8)
    assert special.ndtr(-38.0) > 0.0 == sp.ndtr(-38.0)  # SciPy underflows there


def test_ndtr_against_scipy_within_scipys_own_error() -> None:
    """Where SciPy is exact (the erf branch, |x| < sqrt 2) to 4 eps; beyond, SciPy's error
    ``x^2 eps`` from rounding ``x / sqrt 2`` (tail of Phi) plus 8 eps."""
    x = _grid()
    x = x[x > -37.0]
    got, ref = special.ndtr(x), sp.ndtr(x)
    rel = np.abs(got - ref) / ref
    centre = np.abs(x) < math.sqrt(2.0)
    assert rel[centre].max() <= 4 * EPS
    assert np.all(rel <= (x * x + 8) * EPS)


def test_ndtr_float32_is_the_float64_value_rounded() -> None:
    x = np.linspace(-20.0, 8.0, 20001).astype(np.float32)
    got = special.ndtr(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, special.ndtr(x.astype(np.float64)).astype(np.float32))
    ref = sp.ndtr(x)  # SciPy's float32 loop computes in double too: equal up to one rounding
    assert np.all(np.abs(got - ref) <= np.spacing(ref))


def test_ndtr_special_values_shapes_and_out() -> None:
    values = special.ndtr(np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, 40.0, -40.0]))
    np.testing.assert_array_equal(values, [0.0, 1.0, np.nan, 0.5, 0.5, 1.0, 0.0])
    assert special.ndtr(np.float64(1.5)).shape == ()
    assert float(special.ndtr(1.5)) == float(special.ndtr(np.array([1.5]))[0])
    a = np.random.default_rng(1).normal(0.0, 5.0, (70, 500))  # several blocks, both branches
    expected = special.ndtr(a.copy())
    assert special.ndtr(a[:, ::2]).tolist() == expected[:, ::2].tolist()  # not contiguous
    out = np.empty_like(a)
    assert special.ndtr(a, out=out) is out
    special.ndtr(a, out=a)  # in place
    np.testing.assert_array_equal(a, expected)
    strided = np.zeros((70, 1000))[:, ::2]
    special.ndtr(expected, out=strided)
    np.testing.assert_array_equal(strided, special.ndtr(expected))


def test_ndtri_against_mpmath_to_1e_14_including_the_tails() -> None:
    rng = np.random.default_rng(2)
    p = np.concatenate(
        [
            np.logspace(-300, -1, 300),  # lower tail, both rational approximations
            rng.uniform(0.0, 1.0, 1000),
            np.linspace(0.13, 0.14, 51),  # the switch at e^-2
            1.0 - np.logspace(-15, -1, 100),  # upper tail
            [0.5, 0.5 + 1e-12, 0.5 - 1e-12],
        ]
    )
    got = special.ndtri(p)
    ref = np.array([_mp_ndtri(float(v)) for v in p])
    assert np.all(np.abs(got - ref) <= 1e-14 * np.abs(ref))
    assert np.all(np.abs(got - ref) <= 8 * EPS * np.abs(ref))
    assert np.all(np.abs(got - sp.ndtri(p)) <= 8 * EPS * np.abs(ref))


def test_ndtri_inverts_ndtr_and_its_special_values() -> None:
    x = np.linspace(-37.0, 8.0, 4501)
    back = special.ndtri(special.ndtr(x))
    lower = x <= 0.0  # above 0, Phi(x) near 1 keeps only the absolute precision of 1 - Phi
    np.testing.assert_allclose(back[lower], x[lower], rtol=8 * EPS, atol=4 * EPS)
    values = special.ndtri(np.array([0.0, 1.0, -0.5, 1.5, np.nan, 0.5]))
    np.testing.assert_array_equal(values, [-np.inf, np.inf, np.nan, np.nan, np.nan, 0.0])
    u = np.random.default_rng(3).random(1000)
    expected = special.ndtri(u.copy())
    special.ndtri(u, out=u)  # in place, as the truncated-normal sampler calls it
    np.testing.assert_array_equal(u, expected)


@pytest.mark.parametrize(
    ("dtype", "lo", "hi", "eps"),
    [(np.float64, -745.0, 745.0, EPS), (np.float32, -104.0, 104.0, EPS32)],
)
def test_expit_against_scipy_in_each_dtype(dtype: type, lo: float, hi: float, eps: float) -> None:
    x: NDArray[np.floating[Any]] = np.linspace(lo, hi, 200001).astype(dtype)
    got, ref = special.expit(x), sp.expit(x)
    assert got.dtype == dtype
    normal = ref >= np.finfo(dtype).tiny
    rel = np.abs(got[normal].astype(np.float64) - ref[normal]) / ref[normal]
    assert rel.max() <= 3 * eps
    # below the normal range (no warning: underflow is the answer), where SciPy rounds
    # some values to 0: one subnormal unit from the exact value
    low = np.flatnonzero(~normal)[::20]
    exact = np.array([float(mpmath.exp(v) / (1 + mpmath.exp(v))) for v in x[low].tolist()])
    tail = np.abs(got[low].astype(np.float64) - exact.astype(dtype))
    assert low.size > 100
    assert tail.max() <= np.finfo(dtype).smallest_subnormal
    values = special.expit(np.array([-np.inf, np.inf, np.nan, 0.0], dtype=dtype))
    np.testing.assert_array_equal(values, np.array([0.0, 1.0, np.nan, 0.5], dtype=dtype))
    expected = special.expit(x.copy())
    special.expit(x, out=x)
    np.testing.assert_array_equal(x, expected)
    assert special.expit(np.array(3.0, dtype=dtype)).shape == ()


def test_incomplete_gamma_at_three_halves_against_mpmath() -> None:
    """P(3/2, x) and Q(3/2, x) to 4 eps relative over 1e-300 .. 1e5 (the series below 1.5,
    the erf / erfc closed forms above), where SciPy is up to 30 eps off in Q near x = 700."""
    for x in [*np.logspace(-300, 5, 700).tolist(), 1.5, 1.5 + 1e-12, 1.5 - 1e-12]:
        p = mpmath.gammainc(1.5, 0, x, regularized=True)
        q = mpmath.gammainc(1.5, x, mpmath.inf, regularized=True)
        if p >= np.finfo(np.float64).tiny:
            assert abs(special.gammainc_3_2(x) - p) <= 4 * EPS * p, x
        if q >= np.finfo(np.float64).tiny:
            assert abs(special.gammaincc_3_2(x) - q) <= 4 * EPS * q, x
    assert special.gammainc_3_2(0.0) == 0.0 == special.gammaincc_3_2(math.inf)
    assert special.gammaincc_3_2(0.0) == 1.0 == special.gammainc_3_2(math.inf)
    assert math.isnan(special.gammainc_3_2(-1.0))
    assert math.isnan(special.gammaincc_3_2(math.nan))


ROOTS = [
    (lambda x: x**3 - 2.0 * x - 5.0, 2.0, 3.0),
    (lambda x: math.cos(x) - x, 0.0, 1.0),
    (lambda x: math.exp(x) - 1e-8, -30.0, 5.0),
    (lambda x: math.tanh(50.0 * (x - 0.3)), -1.0, 1.0),
    (lambda x: (x - 1e-7) * (1.0 + x * x), 0.0, 1e3),  # a root near one end of a long bracket
    (lambda x: math.copysign(1.0, x - math.pi), 0.0, 4.0),  # a step: bisection only
]


@pytest.mark.parametrize(("f", "a", "b"), ROOTS)
@pytest.mark.parametrize(("xtol", "rtol"), [(1e-300, 4 * EPS), (1e-14, 4 * EPS), (2e-12, 1e-10)])
def test_brentq_takes_scipys_steps(f, a: float, b: float, xtol: float, rtol: float) -> None:
    """The callers' tolerances (theory.py: xtol 1e-300 or 1e-14, rtol 4 eps): the same root
    to the last bit as scipy.optimize.brentq, which runs the same iteration."""
    ours = special.brentq(f, a, b, xtol=xtol, rtol=rtol)
    theirs = optimize.brentq(f, a, b, xtol=xtol, rtol=rtol)
    assert ours == theirs
    assert f(ours) == 0.0 or min(abs(f(ours)), abs(f(ours + (xtol + rtol * abs(ours))))) <= 1.0


def test_brentq_refuses_a_bracket_without_a_sign_change_and_reports_no_convergence() -> None:
    with pytest.raises(ValueError, match="differ in sign"):
        special.brentq(lambda x: x * x + 1.0, -1.0, 1.0)
    assert special.brentq(lambda x: x - 1.0, 1.0, 2.0) == 1.0  # a root at an end
    with pytest.raises(RuntimeError, match="no convergence"):
        special.brentq(lambda x: math.cos(x) - x, 0.0, 1.0, xtol=1e-300, maxiter=2)


MINIMA = [
    (lambda x: (x - 0.3) ** 2, -1.0, 2.0),
    (lambda x: abs(math.tanh(x - 1.234)), -3.0, 4.0),  # |g|, as critical_sigma_w2's distance
    (lambda x: math.sin(x), 0.0, 2.0 * math.pi),
    (lambda x: x, 0.0, 1.0),  # minimum at an end
    (lambda x: 1.0 if x < 0.5 else abs(x - 0.75), 0.0, 1.0),  # a plateau, then a kink
]


@pytest.mark.parametrize(("f", "a", "b"), MINIMA)
def test_minimize_bounded_takes_scipys_steps(f, a: float, b: float) -> None:
    x, fx = special.minimize_bounded(f, a, b)
    found = optimize.minimize_scalar(f, bounds=(a, b), method="bounded")
    assert (x, fx) == (float(found.x), float(found.fun))
    assert fx == f(x)


# An analysis (GELU, truncated-normal weights, the mean-field theory) and the edge-of-chaos
# search (brentq and the bounded minimiser): run with and without SciPy importable.
NUMBERS = """
from threadpoolctl import threadpool_limits

from initscope.config import Settings
from initscope.engine.activations import Tanh
from initscope.engine.theory import critical_point
from initscope.operations import ANALYZE, run_here

body = {
    "network": {
        "input_dim": 30, "depth": 3, "width": 40, "activation": "gelu",
        "init": {"scheme": "truncated_normal", "std": 0.2},
    },
    "input": {"samples": 64},
    "seed": 5,
}
jobs = ANALYZE.to_jobs(ANALYZE.request.model_validate(body), Settings())
with threadpool_limits(limits=1):
    answer = ANALYZE.to_json(run_here(ANALYZE, jobs)).model_dump(mode="json")
answer.pop("meta")
point = critical_point(Tanh(), 0.05)
numbers = {"analysis": answer, "critical": [point.sigma_w2, point.sigma_b2, point.chi_1]}
"""


def test_the_service_runs_without_scipy() -> None:
    """Every module of the package imports with SciPy made unimportable (``sys.modules``
    entry None), none imports it, and the numbers are those of this process."""
    script = textwrap.dedent(
        """
        import importlib, json, pkgutil, sys
        sys.modules["scipy"] = None  # import scipy now raises ImportError
        import initscope
        for module in pkgutil.walk_packages(initscope.__path__, "initscope."):
            if module.name != "initscope.__main__":  # that one starts the server
                importlib.import_module(module.name)
        namespace = {}
        exec(sys.argv[1], namespace)
        loaded = [name for name, module in sys.modules.items()
                  if module is not None and name.split(".")[0] == "scipy"]
        assert not loaded, loaded
        print(json.dumps(namespace["numbers"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, NUMBERS],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    here: dict[str, Any] = {}
    exec(NUMBERS, here)
    theirs = json.loads(done.stdout)
    assert theirs == json.loads(json.dumps(here["numbers"]))
    assert theirs["analysis"]["theory"]["applicable"] is True
    assert len(theirs["analysis"]["layers"]) == 3
    assert 1.0 < theirs["critical"][0] < 3.0  # tanh's edge of chaos at sigma_b2 = 0.05
