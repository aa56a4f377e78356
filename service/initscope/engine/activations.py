"""Activation functions: definition, derivative and the facts the analyses need about each.

Every activation is a frozen stdlib dataclass that is at the same time its Pydantic schema
(Pydantic validates stdlib dataclasses): ``Activation`` is the union discriminated on ``name``,
so ``{"name": "leaky_relu", "negative_slope": 0.1}`` validates to ``LeakyReLU(negative_slope=0.1)``
and a misspelt parameter is refused (``extra="forbid"``). The instances are plain, hashable and
picklable values, so the same object travels from the request into the worker.

Definitions are PyTorch's (``torch.nn.<Name>``), including the derivative at kinks, which is
the value PyTorch's backward pass returns there: ReLU'(0) = 0, LeakyReLU'(0) = negative_slope,
ELU'(0) = alpha, SELU'(0) = scale * alpha, HardTanh' = 0 at both ends, Softplus' = 1 exactly
in its linear region.

Kernel contract (``forward(a)`` and ``derivative(a, h)`` with ``h = forward(a)``):

- ``a`` is a float32 or float64 array of any shape (0-d included); the result is a new array of
  the same shape and dtype, and neither ``a`` nor ``h`` is written to.
- No floating-point warning for any finite or infinite input: the tails are computed in forms
  that cannot overflow (``expm1`` on ``min(a, 0)``, ``log1p(exp(-|a|))``,
  ``special.expit``). NaN propagates through ``forward``. The only non-finite output
  for finite input is SELU's ``scale * a`` beyond ``finfo.max / scale``, which rounds to inf
  as it should.
- Sigmoid (and SiLU, softplus') keep relative accuracy in the tails like ``torch.sigmoid``:
  exact zeros only where the value underflows the dtype.
- ``derivative`` reuses ``h`` where that is cheaper (sigmoid, tanh, SiLU, GELU), so ``h`` must be
  the exact output of ``forward(a)``.

Parameters are bounded (``|value| <= 1e6`` and similar) so that every constant a kernel mixes
into a float32 array is representable in float32.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field

from initscope.engine.special import expit, ndtr

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "GELU_ARGMIN",
    "GELU_MAX_DERIVATIVE",
    "GELU_MIN",
    "SELU",
    "SELU_ALPHA",
    "SELU_SCALE",
    "SILU_ARGMAX_DERIVATIVE",
    "SILU_MAX_DERIVATIVE",
    "SILU_MIN",
    "Activation",
    "ActivationFn",
    "ActivationName",
    "FloatArray",
    "HardTanh",
    "LeakyReLU",
    "Linear",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "activation_names",
]

FloatArray = NDArray[np.floating[Any]]

ActivationName = Literal[
    "linear",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "softplus",
    "hard_tanh",
]

# torch.nn.SELU (Klambauer et al. 2017, eqs. 14-15), to the digits PyTorch writes them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SELU_SCALED_ALPHA = SELU_SCALE * SELU_ALPHA  # 1.7580993408473766

# GELU(a) = a Phi(a). Its minimum solves GELU'(a) = Phi(a) + a phi(a) = 0 (root found by
# bisection to 1 ulp); GELU'' = phi(a) (2 - a^2) vanishes at a = sqrt(2), where GELU' peaks at
# Phi(sqrt 2) + sqrt(2) phi(sqrt 2) = (1 + erf 1)/2 + 1/(e sqrt(pi)).
GELU_ARGMIN = -0.7517915246935645
GELU_MIN = -0.16997120747990369
GELU_MAX_DERIVATIVE = 1.128904145185155
# SiLU(a) = a s(a). SiLU' = s (1 + a (1 - s)) = 0 gives SiLU(a*) = a* + 1 = -W(1/e) (Lambert W).
# SiLU'' = s (1 - s) (2 - a tanh(a/2)) vanishes at a tanh(a/2) = 2, where SiLU' = a s(a) / 2.
SILU_MIN = -0.2784645427610738
SILU_ARGMAX_DERIVATIVE = 2.3993572805154675
SILU_MAX_DERIVATIVE = 1.0998393201288668

_INF = math.inf
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GAUSS_TAIL = 40.0  # a * phi(a) is exactly 0 in float64 (and float32) for |a| >= 40
_EXP_CUTOFF = 1000.0  # exp(-x) is exactly 0 in float64 (and float32) for x >= 1000
_PARAM_LIMIT = 1e6

_FORBID = ConfigDict(extra="forbid")


class ActivationFn(Protocol):
    """What the simulation and the theory need from an activation; every class here is one.

    ``formula``: the definition on one line. ``saturating``: phi' -> 0 in a tail where phi stays
    away from 0 (sigmoid, tanh, hard_tanh, elu, selu); ReLU-like "off" tails are not saturation.
    """

    formula: ClassVar[str]
    saturating: ClassVar[bool]

    def __hash__(self) -> int:  # frozen dataclasses: usable as cache keys (initscope.engine.theory)
        ...

    @property
    def name(self) -> ActivationName:
        """The discriminator tag, e.g. ``"leaky_relu"``."""
        ...

    @property
    def label(self) -> str:
        """``name``, plus ``(param=value, ...)`` for parameters off their defaults."""
        ...

    @property
    def natural_range(self) -> tuple[float, float]:
        """``(inf phi, sup phi)`` over the real line, -inf/+inf where unbounded."""
        ...

    @property
    def bounded(self) -> bool:
        """Both ends of ``natural_range`` are finite."""
        ...

    @property
    def max_derivative(self) -> float:
        """``sup_a |phi'(a)|`` (attained, or approached in a tail)."""
        ...

    @property
    def pytorch_gain(self) -> float | None:
        """``torch.nn.init.calculate_gain`` for this activation; None where PyTorch has none."""
        ...

    def forward(self, a: FloatArray) -> FloatArray:
        """``h = phi(a)`` elementwise: a new array, same shape and dtype as ``a``."""
        ...

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        """``phi'(a)`` elementwise, given ``h = forward(a)`` exactly: a new array like ``a``."""
        ...


class _Base:
    """Shared behaviour. Subclasses are frozen, keyword-only dataclasses with a ``name`` tag."""

    __pydantic_config__ = _FORBID

    @property
    def label(self) -> str:
        """``name`` alone, or ``name(param=value, ...)`` listing parameters off their defaults."""
        if not dataclasses.is_dataclass(self):  # pragma: no cover - every subclass is one
            raise TypeError(f"{type(self).__name__} is not a dataclass")
        values = {f.name: (getattr(self, f.name), f.default) for f in dataclasses.fields(self)}
        name = str(values.pop("name")[0])
        params = [
            f"{key}={value!r}" for key, (value, default) in values.items() if value != default
        ]
        return f"{name}({', '.join(params)})" if params else name

    @property
    def natural_range(self) -> tuple[float, float]:
        """``(inf phi, sup phi)`` over the real line; -inf/+inf where unbounded."""
        raise NotImplementedError  # pragma: no cover - every subclass overrides it

    @property
    def bounded(self) -> bool:
        """Whether both ends of ``natural_range`` are finite."""
        low, high = self.natural_range
        return math.isfinite(low) and math.isfinite(high)


# -- kernels shared by several classes --------------------------------------------------------


# Speed notes (2048 x 1024 float64, the benchmark's layer): every fresh temporary costs as much
# as a cheap ufunc pass, so kernels work in place in one or two output-sized buffers; np.clip
# beats np.maximum/np.minimum; masked assignment (np.where, copyto(where=)) costs ~6 ms on
# random signs, so branches are blended arithmetically; a min/max reduction (0.2 ms) lets the
# common all-finite case skip the guards that infinities need.


def _sigmoid(x: FloatArray, scale: float = 1.0, out: FloatArray | None = None) -> FloatArray:
    """``1 / (1 + exp(-scale x))`` by ``special.expit``: no overflow, relative accuracy.

    The ``0.5 + 0.5 tanh(x/2)`` form is three times faster but rounds the tail to exact zeros
    below a = -17 in float32, where ``torch.sigmoid`` still returns ~1e-8; exact zeros would
    then read as "dead" units. ``scale * x`` must not overflow (callers clip ``x`` first when
    ``scale > 2``). ``out`` may be ``x`` itself.
    """
    s = np.multiply(x, scale, out=np.empty_like(x) if out is None else out)
    return expit(s, out=s)


def _times_a(p: FloatArray, a: FloatArray) -> FloatArray:
    """``p *= a`` in place for a weight ``0 <= p <= 1`` with ``p -> 0`` as ``a -> -inf``.

    At ``a = -inf`` the product is the limit 0, not ``-inf * 0 = NaN``.
    """
    if a.size and a.min() > -_INF:  # also False when a holds NaN: take the guarded path
        p *= a
    else:
        p *= np.clip(a, np.finfo(a.dtype).min, _INF)
    return p


def _elu(a: FloatArray, alpha: float, scale: float) -> FloatArray:
    """``scale * (max(a, 0) + alpha * expm1(min(a, 0)))``."""
    h = np.clip(a, -_INF, 0.0, out=np.empty_like(a))
    np.expm1(h, out=h)
    h *= alpha * scale
    if scale == 1.0 and alpha <= 1.0:
        # alpha * expm1(a) >= a for a <= 0 when alpha <= 1 (also after rounding), and h = 0 < a
        # for a > 0: the max adds the positive part without a second buffer.
        return np.maximum(h, a, out=h)
    pos = np.clip(a, 0.0, _INF, out=np.empty_like(a))
    if scale != 1.0:
        with np.errstate(over="ignore"):  # scale * a beyond finfo.max is inf, and that is right
            pos *= scale
    h += pos
    return h


def _elu_derivative(a: FloatArray, alpha: float, scale: float) -> FloatArray:
    """``scale * alpha * exp(a)`` for ``a <= 0`` (PyTorch's branch at 0), ``scale`` for a > 0.

    Exact for a > 0 and at a = 0; elsewhere the absolute error is ~eps * scale.
    """
    d = np.clip(a, -_INF, 0.0, out=np.empty_like(a))
    np.exp(d, out=d)  # 1 for a >= 0
    if alpha != 1.0:
        d *= alpha
        d -= 1.0
        d *= np.less_equal(a, 0.0)  # 0 where a > 0, so that branch ends at exactly 1
        d += 1.0
    if scale != 1.0:
        d *= scale
    return d


# -- the activations, in catalogue order ----------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Linear(_Base):
    """Identity, phi(a) = a: the "linear" nonlinearity of ``torch.nn.init.calculate_gain``.

    The reference case of Glorot & Bengio (2010), whose variance argument assumes phi'(0) = 1.
    """

    formula: ClassVar[str] = "a"
    saturating: ClassVar[bool] = False
    name: Literal["linear"] = "linear"

    def forward(self, a: FloatArray) -> FloatArray:
        return a.copy()

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        return np.ones_like(a)

    @property
    def natural_range(self) -> tuple[float, float]:
        return (-_INF, _INF)

    @property
    def max_derivative(self) -> float:
        return 1.0

    @property
    def pytorch_gain(self) -> float | None:
        return 1.0


@dataclass(frozen=True, kw_only=True)
class Sigmoid(_Base):
    """Logistic sigmoid, phi(a) = 1 / (1 + exp(-a)); phi' = phi (1 - phi) <= 1/4 (``nn.Sigmoid``).

    Glorot & Bengio (2010) show how its non-zero mean and saturation at 0 and 1 slow deep
    networks; computed with special.expit.
    """

    formula: ClassVar[str] = "1 / (1 + exp(-a))"
    saturating: ClassVar[bool] = True
    name: Literal["sigmoid"] = "sigmoid"

    def forward(self, a: FloatArray) -> FloatArray:
        return _sigmoid(a)

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        d = np.subtract(1.0, h, out=np.empty_like(h))
        d *= h
        return d

    @property
    def natural_range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    @property
    def max_derivative(self) -> float:
        return 0.25

    @property
    def pytorch_gain(self) -> float | None:
        return 1.0


@dataclass(frozen=True, kw_only=True)
class Tanh(_Base):
    """Hyperbolic tangent, phi(a) = tanh(a); phi' = 1 - phi^2 (``torch.tanh``).

    The zero-centred saturating unit of Glorot & Bengio (2010); its edge of chaos with
    sigma_b = 0 is sigma_w^2 = 1 (Poole et al. 2016).
    """

    formula: ClassVar[str] = "tanh(a)"
    saturating: ClassVar[bool] = True
    name: Literal["tanh"] = "tanh"

    def forward(self, a: FloatArray) -> FloatArray:
        return np.tanh(a, out=np.empty_like(a))

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        d = np.square(h, out=np.empty_like(h))
        np.subtract(1.0, d, out=d)
        return d

    @property
    def natural_range(self) -> tuple[float, float]:
        return (-1.0, 1.0)

    @property
    def max_derivative(self) -> float:
        return 1.0

    @property
    def pytorch_gain(self) -> float | None:
        return 5.0 / 3.0


@dataclass(frozen=True, kw_only=True)
class ReLU(_Base):
    """Rectified linear unit, phi(a) = max(a, 0) (Nair & Hinton 2010; ``torch.nn.ReLU``).

    phi'(a) = 1 for a > 0 and 0 for a <= 0 (PyTorch's value at the kink).
    """

    formula: ClassVar[str] = "max(a, 0)"
    saturating: ClassVar[bool] = False
    name: Literal["relu"] = "relu"

    def forward(self, a: FloatArray) -> FloatArray:
        return np.maximum(a, 0.0, out=np.empty_like(a))  # NaN propagates, as in torch

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        return np.greater(a, 0.0, out=np.empty_like(a))

    @property
    def natural_range(self) -> tuple[float, float]:
        return (0.0, _INF)

    @property
    def max_derivative(self) -> float:
        return 1.0

    @property
    def pytorch_gain(self) -> float | None:
        return math.sqrt(2.0)


@dataclass(frozen=True, kw_only=True)
class LeakyReLU(_Base):
    """Leaky ReLU, phi(a) = a for a > 0, negative_slope * a otherwise (Maas et al. 2013).

    ``torch.nn.LeakyReLU``: phi'(a) = 1 for a > 0 and negative_slope for a <= 0.
    """

    formula: ClassVar[str] = "max(a, 0) + negative_slope * min(a, 0)"
    saturating: ClassVar[bool] = False
    name: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: Annotated[
        float,
        Field(ge=0, lt=1, allow_inf_nan=False, description="Slope for a <= 0, in [0, 1)."),
    ] = 0.01

    def forward(self, a: FloatArray) -> FloatArray:
        h = np.empty_like(a)
        if self.negative_slope == 0.0:  # 0 * -inf would be NaN
            return np.clip(a, 0.0, _INF, out=h)
        np.multiply(a, self.negative_slope, out=h)
        return np.maximum(a, h, out=h)  # slope < 1: a > slope * a exactly when a > 0

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        d = np.greater(a, 0.0, out=np.empty_like(a))
        return np.maximum(d, self.negative_slope, out=d)

    @property
    def natural_range(self) -> tuple[float, float]:
        return (-_INF if self.negative_slope > 0 else 0.0, _INF)

    @property
    def max_derivative(self) -> float:
        return max(1.0, self.negative_slope)

    @property
    def pytorch_gain(self) -> float | None:
        return math.sqrt(2.0 / (1.0 + self.negative_slope**2))


@dataclass(frozen=True, kw_only=True)
class ELU(_Base):
    """Exponential linear unit, phi(a) = a for a > 0, alpha (exp(a) - 1) otherwise.

    Clevert, Unterthiner & Hochreiter (2015), ``torch.nn.ELU``. phi'(a) = alpha exp(a) for
    a <= 0 (alpha at the kink, as PyTorch), 1 for a > 0. Saturates at -alpha as a -> -inf.
    """

    formula: ClassVar[str] = "max(a, 0) + alpha * (exp(min(a, 0)) - 1)"
    saturating: ClassVar[bool] = True
    name: Literal["elu"] = "elu"
    alpha: Annotated[
        float,
        Field(
            gt=0,
            le=_PARAM_LIMIT,
            allow_inf_nan=False,
            description="Saturation value -alpha for a -> -inf.",
        ),
    ] = 1.0

    def forward(self, a: FloatArray) -> FloatArray:
        return _elu(a, self.alpha, 1.0)

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        return _elu_derivative(a, self.alpha, 1.0)

    @property
    def natural_range(self) -> tuple[float, float]:
        return (-self.alpha, _INF)

    @property
    def max_derivative(self) -> float:
        return max(1.0, self.alpha)

    @property
    def pytorch_gain(self) -> float | None:
        return None


@dataclass(frozen=True, kw_only=True)
class SELU(_Base):
    """Scaled ELU, phi(a) = scale * (a for a > 0, alpha (exp(a) - 1) otherwise).

    Klambauer et al. (2017), ``torch.nn.SELU``: alpha = 1.6732632423543772848170429916717,
    scale = 1.0507009873554804934193349852946 make N(0, 1) a fixed point of the mean-field map.
    phi'(a) = scale * alpha * exp(a) for a <= 0, scale for a > 0; its sup scale * alpha is the
    left limit at 0.
    """

    formula: ClassVar[str] = (
        "scale * (max(a, 0) + alpha * (exp(min(a, 0)) - 1)), alpha = 1.6733, scale = 1.0507"
    )
    saturating: ClassVar[bool] = True
    name: Literal["selu"] = "selu"

    def forward(self, a: FloatArray) -> FloatArray:
        return _elu(a, SELU_ALPHA, SELU_SCALE)

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        return _elu_derivative(a, SELU_ALPHA, SELU_SCALE)

    @property
    def natural_range(self) -> tuple[float, float]:
        return (-_SELU_SCALED_ALPHA, _INF)

    @property
    def max_derivative(self) -> float:
        return _SELU_SCALED_ALPHA

    @property
    def pytorch_gain(self) -> float | None:
        return 0.75


@dataclass(frozen=True, kw_only=True)
class GELU(_Base):
    """Gaussian error linear unit, phi(a) = a Phi(a), Phi the standard normal CDF.

    Hendrycks & Gimpel (2016), ``torch.nn.GELU(approximate="none")`` (the exact erf form).
    phi'(a) = Phi(a) + a phi(a); minimum GELU_MIN at GELU_ARGMIN, sup phi' at a = sqrt(2).
    """

    formula: ClassVar[str] = "a * Phi(a), Phi(a) = (1 + erf(a / sqrt(2))) / 2"
    saturating: ClassVar[bool] = False
    name: Literal["gelu"] = "gelu"

    def forward(self, a: FloatArray) -> FloatArray:
        return _times_a(ndtr(a, out=np.empty_like(a)), a)

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        # Phi(a) = h / a to a few ulp wherever a is a finite normal number: this saves a second
        # ndtr, which costs ~15 ns per element against ~1 ns for each ufunc pass below.
        with np.errstate(divide="ignore", invalid="ignore"):  # a = 0 or inf: redone below
            d = np.divide(h, a, out=np.empty_like(a))
            g = np.clip(a, -_GAUSS_TAIL, _GAUSS_TAIL, out=np.empty_like(a))
            np.square(g, out=g)
            g *= -0.5
            np.exp(g, out=g)
            g *= a  # a phi(a) is exactly 0 beyond the clip
        g *= _INV_SQRT_2PI
        d += g
        info = np.finfo(a.dtype)
        ok = np.greater_equal(a, 4 * info.smallest_normal)
        ok |= np.less_equal(a, -4 * info.smallest_normal)
        ok &= np.isfinite(a)
        if not ok.all():  # a ~ 0 or subnormal, +-inf, NaN: evaluate those few directly
            redo = np.flatnonzero(~ok)
            x = np.clip(a.flat[redo], -_GAUSS_TAIL, _GAUSS_TAIL)
            d.flat[redo] = ndtr(a.flat[redo]) + x * np.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return d

    @property
    def natural_range(self) -> tuple[float, float]:
        return (GELU_MIN, _INF)

    @property
    def max_derivative(self) -> float:
        return GELU_MAX_DERIVATIVE

    @property
    def pytorch_gain(self) -> float | None:
        return None


@dataclass(frozen=True, kw_only=True)
class SiLU(_Base):
    """Sigmoid-weighted linear unit (swish), phi(a) = a s(a), s the logistic sigmoid.

    Elfwing, Uchibe & Doya (2017); Ramachandran, Zoph & Le (2017); ``torch.nn.SiLU``.
    phi'(a) = s(a) (1 + a (1 - s(a))); minimum SILU_MIN = -W(1/e), sup phi' SILU_MAX_DERIVATIVE.
    """

    formula: ClassVar[str] = "a / (1 + exp(-a))"
    saturating: ClassVar[bool] = False
    name: Literal["silu"] = "silu"

    def forward(self, a: FloatArray) -> FloatArray:
        return _times_a(_sigmoid(a), a)

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        # phi' = s + h (1 - s). Not s (1 - h) + h: that cancels to 0 for h > 1/eps.
        s = _sigmoid(a)
        d = np.subtract(1.0, s, out=np.empty_like(a))
        if h.size and h.max() < _INF:
            d *= h
        else:  # 1 - s is exactly 0 at a = +inf, where h = inf would make inf * 0 = NaN
            d *= np.clip(h, -_INF, np.finfo(h.dtype).max)
        d += s
        return d

    @property
    def natural_range(self) -> tuple[float, float]:
        return (SILU_MIN, _INF)

    @property
    def max_derivative(self) -> float:
        return SILU_MAX_DERIVATIVE

    @property
    def pytorch_gain(self) -> float | None:
        return None


@dataclass(frozen=True, kw_only=True)
class Softplus(_Base):
    """Softplus, phi(a) = log(1 + exp(beta a)) / beta, and phi(a) = a where beta a > threshold.

    Dugas et al. (2001); ``torch.nn.Softplus(beta, threshold)``, whose switch to the identity
    above the threshold is reproduced exactly, including phi' = 1 there. Elsewhere
    phi'(a) = s(beta a), s the logistic sigmoid. Computed as max(a, 0) + log1p(exp(-|beta a|))/beta.
    """

    formula: ClassVar[str] = "log(1 + exp(beta * a)) / beta, or a where beta * a > threshold"
    saturating: ClassVar[bool] = False
    name: Literal["softplus"] = "softplus"
    beta: Annotated[
        float,
        Field(ge=1e-6, le=_PARAM_LIMIT, allow_inf_nan=False, description="Sharpness, > 0."),
    ] = 1.0
    threshold: Annotated[
        float,
        Field(
            gt=0,
            le=_PARAM_LIMIT,
            allow_inf_nan=False,
            description="phi(a) = a where beta * a exceeds this (PyTorch).",
        ),
    ] = 20.0

    def forward(self, a: FloatArray) -> FloatArray:
        beta = self.beta
        reach = _EXP_CUTOFF / beta  # clipping |a| here leaves exp(-|beta a|) exactly 0 anyway
        t = np.clip(a, -reach, reach, out=np.empty_like(a))
        np.abs(t, out=t)
        t *= -beta
        np.exp(t, out=t)
        t *= np.less_equal(a, self.threshold / beta)  # PyTorch: exactly a where beta a > threshold
        np.log1p(t, out=t)
        if beta != 1.0:
            t /= beta
        t += np.clip(a, 0.0, _INF, out=np.empty_like(a))
        return t

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        reach = _EXP_CUTOFF / self.beta
        d = np.clip(a, -reach, reach, out=np.empty_like(a))
        _sigmoid(d, self.beta, out=d)
        linear = np.greater(a, self.threshold / self.beta)
        return np.maximum(d, linear, out=d)  # 1 exactly in the linear region, as PyTorch

    @property
    def natural_range(self) -> tuple[float, float]:
        return (0.0, _INF)

    @property
    def max_derivative(self) -> float:
        return 1.0

    @property
    def pytorch_gain(self) -> float | None:
        return None


@dataclass(frozen=True, kw_only=True)
class HardTanh(_Base):
    """Hard tanh, phi(a) = clip(a, min_val, max_val) (Collobert 2004; ``torch.nn.Hardtanh``).

    phi'(a) = 1 strictly inside (min_val, max_val), 0 elsewhere, ends included (PyTorch).
    """

    formula: ClassVar[str] = "min(max(a, min_val), max_val)"
    saturating: ClassVar[bool] = True
    name: Literal["hard_tanh"] = "hard_tanh"
    min_val: Annotated[
        float,
        Field(ge=-_PARAM_LIMIT, le=_PARAM_LIMIT, allow_inf_nan=False, description="Lower bound."),
    ] = -1.0
    max_val: Annotated[
        float,
        Field(
            ge=-_PARAM_LIMIT,
            le=_PARAM_LIMIT,
            allow_inf_nan=False,
            description="Upper bound, > min_val.",
        ),
    ] = 1.0

    def __post_init__(self) -> None:
        if not self.min_val < self.max_val:
            raise ValueError(f"min_val ({self.min_val}) must be below max_val ({self.max_val})")

    def forward(self, a: FloatArray) -> FloatArray:
        return np.clip(a, self.min_val, self.max_val, out=np.empty_like(a))

    def derivative(self, a: FloatArray, h: FloatArray) -> FloatArray:
        above = np.greater(a, self.min_val)
        return np.logical_and(above, np.less(a, self.max_val), out=np.empty_like(a))

    @property
    def natural_range(self) -> tuple[float, float]:
        return (self.min_val, self.max_val)

    @property
    def max_derivative(self) -> float:
        return 1.0

    @property
    def pytorch_gain(self) -> float | None:
        return None


Activation = Annotated[
    Linear | Sigmoid | Tanh | ReLU | LeakyReLU | ELU | SELU | GELU | SiLU | Softplus | HardTanh,
    Field(discriminator="name"),
]

ACTIVATIONS: tuple[type[ActivationFn], ...] = (
    Linear,
    Sigmoid,
    Tanh,
    ReLU,
    LeakyReLU,
    ELU,
    SELU,
    GELU,
    SiLU,
    Softplus,
    HardTanh,
)

_NAMES: tuple[ActivationName, ...] = tuple(cls().name for cls in ACTIVATIONS)


def activation_names() -> tuple[ActivationName, ...]:
    """The ``name`` tags in catalogue order."""
    return _NAMES
