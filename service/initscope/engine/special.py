"""The special functions and scalar solvers the engine needs, in NumPy and ``math`` (no SciPy).

- ``expit``: the logistic sigmoid ``1 / (1 + exp(-x))`` in the stable form
  ``exp(min(x, 0)) / (1 + exp(-|x|))`` (no overflow, relative accuracy in both tails).
- ``ndtr``: the standard normal CDF ``Phi(x) = erfc(-x / sqrt 2) / 2`` on arrays, to a few ulp
  over the whole range, including the subnormal far tail (``ndtr(-38) = 2.885e-316``).
- ``ndtri``: its inverse, ``Phi^-1(p)`` on arrays, to a few ulp.
- ``gammainc_3_2`` / ``gammaincc_3_2``: the regularised incomplete gamma functions
  ``P(3/2, x)`` and ``Q(3/2, x) = 1 - P(3/2, x)`` for scalars, each without cancellation.
- ``brentq``: a root of a scalar function bracketed by a sign change (Brent 1973).
- ``minimize_bounded``: a local minimum of a scalar function on an interval (Brent 1973).

Rational approximations: W. J. Cody (1969), "Rational Chebyshev approximations for the error
function", Math. Comp. 23(107), 631-637, in the coefficients of S. L. Moshier's Cephes Math
Library 2.2 (``ndtr.c``: erf on ``|x| < 1``, erfc on ``[1, 8)`` and ``[8, inf)``;
``ndtri.c``: ``Phi^-1`` on ``|p - 1/2| < 1/2 - e^-2`` and in the two tails, split at
``sqrt(-2 log p) = 8``), the approximations ``scipy.special.ndtr`` / ``ndtri`` evaluate.
Tested against SciPy and mpmath in tests/test_special.py.
"""

import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "brentq",
    "expit",
    "gammainc_3_2",
    "gammaincc_3_2",
    "minimize_bounded",
    "ndtr",
    "ndtri",
]

FloatArray = NDArray[np.floating[Any]]
F64 = NDArray[np.float64]

_SQRT1_2: Final = math.sqrt(0.5)
_SQRT2: Final = math.sqrt(2.0)
_SQRT_2PI: Final = math.sqrt(2.0 * math.pi)
_EXP_M2: Final = math.exp(-2.0)
_CHUNK: Final = 1 << 16  # elements per block: temporaries stay in cache, few Python-level calls

# erf(x) = x T(x^2) / U(x^2) for |x| < 1; U monic (Cephes ndtr.c)
_T: Final = (
    9.60497373987051638749e0,
    9.00260197203842689217e1,
    2.23200534594684319226e3,
    7.00332514112805075473e3,
    5.55923013010394962768e4,
)
_U: Final = (
    3.35617141647503099647e1,
    5.21357949780152679795e2,
    4.59432382970980127987e3,
    2.26290000613890934246e4,
    4.92673942608635921086e4,
)
# erfc(z) = exp(-z^2) P(z) / Q(z) for 1 <= z < 8, exp(-z^2) R(z) / S(z) for z >= 8; Q, S monic
_P: Final = (
    2.46196981473530512524e-10,
    5.64189564831068821977e-1,
    7.46321056442269912687e0,
    4.86371970985681366614e1,
    1.96520832956077098242e2,
    5.26445194995477358631e2,
    9.34528527171957607540e2,
    1.02755188689515710272e3,
    5.57535335369399327526e2,
)
_Q: Final = (
    1.32281951154744992508e1,
    8.67072140885989742329e1,
    3.54937778887819891062e2,
    9.75708501743205489753e2,
    1.82390916687909736289e3,
    2.24633760818710981792e3,
    1.65666309194161350182e3,
    5.57535340817727675546e2,
)
_R: Final = (
    5.64189583547755073984e-1,
    1.27536670759978104416e0,
    5.01905042251180477414e0,
    6.16021097993053585195e0,
    7.40974269950448939160e0,
    2.97886665372100240670e0,
)
_S: Final = (
    2.26052863220117276590e0,
    9.39603524938001434673e0,
    1.20489539808096656605e1,
    1.70814450747565897222e1,
    9.60896809063285878198e0,
    3.36907645100081516050e0,
)
# Phi^-1(p) = sqrt(2 pi) (w + w w^2 P0(w^2) / Q0(w^2)), w = p - 1/2, for e^-2 < p < 1 - e^-2
_P0: Final = (
    -5.99633501014107895267e1,
    9.80010754185999661536e1,
    -5.66762857469070293439e1,
    1.39312609387279679503e1,
    -1.23916583867381258016e0,
)
_Q0: Final = (
    1.95448858338141759834e0,
    4.67627912898881538453e0,
    8.63602421390890590575e1,
    -2.25462687854119370527e2,
    2.00260212380060660359e2,
    -8.20372256168333339912e1,
    1.59056225126211695515e1,
    -1.18331621121330003142e0,
)
# tails, t = sqrt(-2 log p): Phi^-1 = -(t - log(t)/t - (1/t) P(1/t)/Q(1/t)), P1/Q1 for t < 8
_P1: Final = (
    4.05544892305962419923e0,
    3.15251094599893866154e1,
    5.71628192246421288162e1,
    4.40805073893200834700e1,
    1.46849561928858024014e1,
    2.18663306850790267539e0,
    -1.40256079171354495875e-1,
    -3.50424626827848203418e-2,
    -8.57456785154685413611e-4,
)
_Q1: Final = (
    1.57799883256466749731e1,
    4.53907635128879210584e1,
    4.13172038254672030440e1,
    1.50425385692907503408e1,
    2.50464946208309415979e0,
    -1.42182922854787788574e-1,
    -3.80806407691578277194e-2,
    -9.33259480895457427372e-4,
)
_P2: Final = (
    3.23774891776946035970e0,
    6.91522889068984211695e0,
    3.93881025292474443415e0,
    1.33303460815807542389e0,
    2.01485389549179081538e-1,
    1.23716634817820021358e-2,
    3.01581553508235416007e-4,
    2.65806974686737550832e-6,
    6.23974539184983293730e-9,
)
_Q2: Final = (
    6.02427039364742014255e0,
    3.67983563856160859403e0,
    1.37702099489081330271e0,
    2.16236993594496635890e-1,
    1.34204006088543189037e-2,
    3.28014464682127739104e-4,
    2.89247864745380683936e-6,
    6.79019408009981274425e-9,
)


def _poly(coefs: tuple[float, ...], x: F64, *, monic: bool = False) -> F64:
    """Horner's rule, highest power first; ``monic`` prepends a leading coefficient 1."""
    if monic:
        r = x + coefs[0]
        rest = coefs[1:]
    else:
        r = x * coefs[0]
        r += coefs[1]
        rest = coefs[2:]
    for c in rest:
        r *= x
        r += c
    return r


def _blocks(
    fn: Callable[[F64], F64], x: ArrayLike, out: FloatArray | None, dtype: type[np.floating[Any]]
) -> FloatArray:
    """Apply ``fn`` (float64 block -> new float64 block) over ``x`` in blocks of _CHUNK; the
    result has ``dtype`` and may be written into ``out``, which may be ``x`` itself."""
    a = np.asarray(x)
    res = np.empty(a.shape, dtype) if out is None else out
    src = a.reshape(-1)
    dst = res.reshape(-1) if res.flags.c_contiguous else np.empty(res.size, res.dtype)
    for start in range(0, src.size, _CHUNK):
        block = src[start : start + _CHUNK].astype(np.float64, copy=False)
        dst[start : start + _CHUNK] = fn(block)
    if not res.flags.c_contiguous:
        res[...] = dst.reshape(res.shape)
    return res


def _float_dtype(x: ArrayLike) -> type[np.floating[Any]]:
    return np.float32 if np.asarray(x).dtype == np.float32 else np.float64


def expit(x: ArrayLike, out: FloatArray | None = None) -> FloatArray:
    """Logistic sigmoid ``1 / (1 + exp(-x)) = exp(min(x, 0)) / (1 + exp(-|x|))``.

    Neither exponential can overflow, and the numerator keeps relative accuracy for x << 0
    (the value ``exp(x) / (1 + exp(x))`` underflows only where the dtype does), as
    ``scipy.special.expit``. Computed in the input's dtype (float32 stays float32); ``out``
    may be ``x`` itself. NaN propagates.
    """
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    den = np.abs(a, out=np.empty_like(a))  # empty_like: 0-d arrays stay arrays
    np.negative(den, out=den)
    with np.errstate(under="ignore"):  # exp(-800) = 0 is the right answer
        np.exp(den, out=den)
        den += 1.0
        res: FloatArray = np.minimum(a, 0.0, out=np.empty_like(a) if out is None else out)
        np.exp(res, out=res)
    res /= den
    return res


def _ndtr_block(a: F64) -> F64:
    """``Phi(a)`` for a float64 block (a new array)."""
    w = np.abs(a)
    y = np.empty_like(a)
    inner = w < _SQRT2
    if inner.all():
        return _ndtr_inner(a)
    if not inner.any():
        return _ndtr_outer(a, w)
    i = np.flatnonzero(inner)
    o = np.flatnonzero(~inner)
    y[i] = _ndtr_inner(a[i])
    y[o] = _ndtr_outer(a[o], w[o])
    return y


def _ndtr_inner(a: F64) -> F64:
    """``(1 + erf(x)) / 2``, ``x = a / sqrt 2``, for ``|x| < 1``."""
    x = a * _SQRT1_2
    x2 = x * x
    y = _poly(_T, x2)
    y /= _poly(_U, x2, monic=True)
    y *= x
    y *= 0.5
    y += 0.5
    return y


def _ndtr_outer(a: F64, w: F64) -> F64:
    """``erfc(z) / 2`` (``1 -`` that for a > 0), ``z = |a| / sqrt 2 >= 1``.

    ``exp(-z^2) = exp(-a^2 / 2)`` is taken exactly: with ``m = round(16 |a|) / 16`` and
    ``f = |a| - m`` (both exact), ``a^2 / 2 = m^2 / 2 + f (m + f / 2)`` with ``m^2`` exact, so
    rounding ``z`` or ``z^2`` does not turn into the ``2 z^2 eps`` relative error it would
    otherwise be (1e-13 at a = -37). ``exp(-m^2 / 4)`` enters twice, last, so that a result
    below the normal range is rounded once (|a| <= 38.5 ends in the subnormals)."""
    w = np.minimum(w, 40.0)  # Phi(-40) = 0 in float64; also maps inf (and keeps NaN)
    z = w * _SQRT1_2
    ratio = _poly(_P, z)
    ratio /= _poly(_Q, z, monic=True)
    far = np.flatnonzero(z >= 8.0)
    if far.size:
        zf = z[far]
        ratio[far] = _poly(_R, zf) / _poly(_S, zf, monic=True)
    m = np.rint(w * 16.0)
    m *= 1.0 / 16.0
    f = w - m
    g = f * 0.5
    g += m
    g *= f
    np.negative(g, out=g)
    np.exp(g, out=g)  # exp(-f (m + f/2))
    np.square(m, out=m)
    m *= -0.25
    np.exp(m, out=m)  # exp(-m^2 / 4)
    ratio *= g
    ratio *= 0.5
    ratio *= m
    ratio *= m
    upper = np.flatnonzero(a > 0.0)
    if upper.size:
        ratio[upper] = 1.0 - ratio[upper]
    return ratio


def ndtr(x: ArrayLike, out: FloatArray | None = None) -> FloatArray:
    """Standard normal CDF ``Phi(x) = (1 + erf(x / sqrt 2)) / 2 = erfc(-x / sqrt 2) / 2``.

    Cody's rational approximations (module docstring): ``x T(x^2) / U(x^2)`` for erf below
    ``|x| = sqrt 2``, ``exp(-x^2 / 2) P(z) / Q(z)`` (``R / S`` beyond z = 8) for erfc above, the
    exponential taken without the rounding of ``x / sqrt 2`` (``_ndtr_outer``). A few ulp
    relative everywhere (tests: <= 2e-16 * 4 against mpmath), down to the subnormal
    ``Phi(-38.4)``; ``Phi(-inf) = 0``, ``Phi(inf) = 1``, NaN propagates. Evaluated in float64
    in blocks; float32 input gives float32 (the float64 value rounded), other input float64.
    ``out`` may be ``x`` itself.
    """
    return _blocks(_ndtr_block, x, out, _float_dtype(x))


def _ndtri_block(p: F64) -> F64:
    """``Phi^-1(p)`` for a float64 block (a new array)."""
    x = np.full_like(p, np.nan)
    x[p == 0.0] = -np.inf
    x[p == 1.0] = np.inf
    upper = p > 1.0 - _EXP_M2
    q = np.where(upper, 1.0 - p, p)  # exact (Sterbenz): the smaller tail mass
    centre = np.flatnonzero(q > _EXP_M2)
    if centre.size:
        w = p[centre] - 0.5
        w2 = w * w
        r = _poly(_P0, w2)
        r /= _poly(_Q0, w2, monic=True)
        r *= w2
        r *= w
        r += w
        r *= _SQRT_2PI
        x[centre] = r
    tail = np.flatnonzero((q > 0.0) & (q <= _EXP_M2))
    if tail.size:
        t = np.sqrt(-2.0 * np.log(q[tail]))
        inv = 1.0 / t
        big = t >= 8.0
        corr = np.where(
            big,
            _poly(_P2, inv) / _poly(_Q2, inv, monic=True),
            _poly(_P1, inv) / _poly(_Q1, inv, monic=True),
        )
        r = t - np.log(t) / t - inv * corr
        x[tail] = np.where(upper[tail], r, -r)
    return x


def ndtri(p: ArrayLike, out: FloatArray | None = None) -> FloatArray:
    """Inverse of the standard normal CDF: ``Phi(ndtri(p)) = p``.

    Cephes' ``ndtri`` (module docstring): ``sqrt(2 pi) (w + w^3 P0(w^2) / Q0(w^2))``,
    ``w = p - 1/2``, for ``e^-2 < p < 1 - e^-2``; in the tails ``t - log(t)/t - P(1/t) / (t
    Q(1/t))``, ``t = sqrt(-2 log p)`` (p or ``1 - p``, whichever is smaller, exactly). A few
    ulp relative (tests: <= 1e-14 against mpmath, tails included). ``ndtri(0) = -inf``,
    ``ndtri(1) = inf``, NaN outside [0, 1]. float32 input gives float32, other input float64;
    ``out`` may be ``p`` itself.
    """
    with np.errstate(invalid="ignore"):  # comparisons with NaN
        return _blocks(_ndtri_block, p, out, _float_dtype(p))


# -- scalars ----------------------------------------------------------------------------------

_GAMMA_5_2: Final = 0.75 * math.sqrt(math.pi)  # Gamma(5/2)


def _p_series(x: float) -> float:
    """``P(3/2, x) = x^(3/2) e^-x / Gamma(5/2) sum_n x^n / ((5/2)(7/2)...(3/2 + n))``
    (Abramowitz & Stegun 6.5.29); all terms positive, for x <= 1.5."""
    term, total, n = 1.0, 1.0, 0
    while term > 1e-17 * total:
        n += 1
        term *= x / (1.5 + n)
        total += term
    return x * math.sqrt(x) * math.exp(-x) / _GAMMA_5_2 * total


def gammainc_3_2(x: float) -> float:
    """Regularised lower incomplete gamma ``P(3/2, x) = erf(sqrt x) - 2 sqrt(x / pi) e^-x``.

    That closed form cancels as ``x -> 0`` (``P ~ x^(3/2)``), so below ``x = 1.5`` the power
    series is summed instead. NaN for ``x < 0`` or NaN.
    """
    if not x >= 0.0:
        return math.nan
    if x <= 1.5:
        return _p_series(x)
    if math.isinf(x):
        return 1.0
    return math.erf(math.sqrt(x)) - 2.0 * math.sqrt(x / math.pi) * math.exp(-x)


def gammaincc_3_2(x: float) -> float:
    """Regularised upper incomplete gamma ``Q(3/2, x) = erfc(sqrt x) + 2 sqrt(x / pi) e^-x``
    (two positive terms, no cancellation; ``1 - P`` below ``x = 1.5``, where ``Q > 0.39``).
    NaN for ``x < 0`` or NaN."""
    if not x >= 0.0:
        return math.nan
    if x <= 1.5:
        return 1.0 - _p_series(x)
    if math.isinf(x):
        return 0.0
    return math.erfc(math.sqrt(x)) + 2.0 * math.sqrt(x / math.pi) * math.exp(-x)


def brentq(
    f: Callable[[float], float],
    a: float,
    b: float,
    *,
    xtol: float = 2e-12,
    rtol: float = 4 * np.finfo(float).eps,
    maxiter: int = 100,
) -> float:
    """A root of ``f`` in ``[a, b]``, where ``f(a)`` and ``f(b)`` differ in sign.

    Brent (1973), "Algorithms for Minimization without Derivatives", ch. 4: inverse quadratic
    interpolation (secant when only two points are distinct), a bisection whenever the step
    would not shrink the bracket fast enough. Stops when the bracket half-width is below
    ``(xtol + rtol |x|) / 2``; the tolerance semantics and the iteration of
    ``scipy.optimize.brentq``. ValueError without a sign change; RuntimeError after ``maxiter``
    iterations.
    """
    x_prev, x_cur = a, b
    f_prev, f_cur = f(x_prev), f(x_cur)
    if f_prev * f_cur > 0.0:
        raise ValueError(f"f(a) and f(b) must differ in sign, got f({a})={f_prev}, f({b})={f_cur}")
    if f_prev == 0.0:
        return x_prev
    if f_cur == 0.0:
        return x_cur
    x_blk = f_blk = s_prev = s_cur = 0.0
    for _ in range(maxiter):
        if f_prev * f_cur < 0.0:  # the root is between x_cur and x_prev: that is the bracket
            x_blk, f_blk = x_prev, f_prev
            s_prev = s_cur = x_cur - x_prev
        if abs(f_blk) < abs(f_cur):  # keep the best point in x_cur
            x_prev, x_cur, x_blk = x_cur, x_blk, x_cur
            f_prev, f_cur, f_blk = f_cur, f_blk, f_cur
        delta = (xtol + rtol * abs(x_cur)) / 2
        s_bis = (x_blk - x_cur) / 2
        if f_cur == 0.0 or abs(s_bis) < delta:
            return x_cur
        step = s_bis
        if abs(s_prev) > delta and abs(f_cur) < abs(f_prev):
            if x_prev == x_blk:  # secant
                s_try = -f_cur * (x_cur - x_prev) / (f_cur - f_prev)
            else:  # inverse quadratic through the three points
                d_prev = (f_prev - f_cur) / (x_prev - x_cur)
                d_blk = (f_blk - f_cur) / (x_blk - x_cur)
                s_try = -f_cur * (f_blk * d_blk - f_prev * d_prev)
                s_try /= d_blk * d_prev * (f_blk - f_prev)
            if 2 * abs(s_try) < min(abs(s_prev), 3 * abs(s_bis) - delta):
                s_prev, step = s_cur, s_try
            else:
                s_prev = s_bis
        else:
            s_prev = s_bis
        s_cur = step
        x_prev, f_prev = x_cur, f_cur
        x_cur += s_cur if abs(s_cur) > delta else (delta if s_bis > 0 else -delta)
        f_cur = f(x_cur)
    raise RuntimeError(f"brentq: no convergence in {maxiter} iterations (last x={x_cur})")


def minimize_bounded(
    f: Callable[[float], float], a: float, b: float, *, xatol: float = 1e-5, maxiter: int = 500
) -> tuple[float, float]:
    """``(x, f(x))`` at a local minimum of ``f`` on ``[a, b]`` (``a < b``, finite).

    Brent (1973), ch. 5 ("localmin"): golden-section steps, parabolic interpolation through
    the three best points when that step is acceptable; tolerance ``sqrt(eps) |x| + xatol / 3``;
    the iteration of ``scipy.optimize.minimize_scalar(method="bounded")`` (its defaults
    ``xatol = 1e-5``, 500 evaluations). Never evaluates ``f`` at ``a`` or ``b``.
    """
    sqrt_eps = math.sqrt(2.2e-16)
    golden = 0.5 * (3.0 - math.sqrt(5.0))
    v = w = x = a + golden * (b - a)  # x best, w second best, v the previous w
    fv = fw = fx = f(x)
    d = e = 0.0  # the last step and the one before
    evaluations = 1
    mid = 0.5 * (a + b)
    tol1 = sqrt_eps * abs(x) + xatol / 3.0
    tol2 = 2.0 * tol1
    while abs(x - mid) > tol2 - 0.5 * (b - a):
        parabolic = False
        if abs(e) > tol1:
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = abs(q)
            e_before = e
            e = d
            if abs(p) < abs(0.5 * q * e_before) and q * (a - x) < p < q * (b - x):
                parabolic = True
                d = p / q
                u = x + d
                if u - a < tol2 or b - u < tol2:  # not too close to an end
                    d = tol1 * (math.copysign(1.0, mid - x) if mid != x else 1.0)
        if not parabolic:
            e = (a - x) if x >= mid else (b - x)
            d = golden * e
        u = x + (math.copysign(1.0, d) if d != 0.0 else 1.0) * max(abs(d), tol1)
        fu = f(u)
        evaluations += 1
        if fu <= fx:
            if u >= x:
                a = x
            else:
                b = x
            v, fv, w, fw, x, fx = w, fw, x, fx, u, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv, w, fw = w, fw, u, fu
            elif fu <= fv or v in (x, w):
                v, fv = u, fu
        mid = 0.5 * (a + b)
        tol1 = sqrt_eps * abs(x) + xatol / 3.0
        tol2 = 2.0 * tol1
        if evaluations >= maxiter:
            break
    return x, fx
