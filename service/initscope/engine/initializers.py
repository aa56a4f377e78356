"""Weight and bias initialisers: frozen dataclasses that are also the Pydantic schema.

Conventions (SCIENCE.md): a dense layer computes ``a = h @ W + b`` with ``W`` of shape
``(fan_in, fan_out)`` (Keras / "Deep Learning from Scratch" layout; PyTorch stores the
transpose ``(out, in)``, with the same fans). The mean-field theory is parametrised by
``sigma_w^2 = fan_in * Var(W_ij)`` and ``sigma_b^2 = Var(b_i)``.

Every weight initialiser has

* ``scheme``: a ``Literal`` discriminator; the first value is the canonical name, the others
  are aliases. Aliases are rewritten to the canonical name on construction.
* ``formula`` (class constant): the rule on one line.
* ``iid_gaussian`` (class constant): entries are i.i.d. and Gaussian-like, so the mean-field
  theory applies when they are also zero-mean; ``theory_applicable`` checks that per instance.
* ``sample(rng, fan_in, fan_out, dtype)``: a ``(fan_in, fan_out)`` array drawn from ``rng``
  only, deterministic for a given generator state. Drawn and computed in float64 whatever
  ``dtype`` is, then cast: for one state ``sample(.., float32)`` is exactly
  ``sample(.., float64).astype(float32)``, so two dtypes under one seed are one network.
* ``entry_mean(fan_in, fan_out)`` and ``variance(fan_in, fan_out)``: the exact mean and
  variance of one entry ``W_ij``. For deterministic schemes (constant, identity) these are
  the mean and (population) variance of the produced matrix's entries.
"""

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeAlias, get_args, get_type_hints

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field

from initscope.engine.special import ndtr, ndtri

__all__ = [
    "BIAS_INITS",
    "WEIGHT_INITS",
    "BiasConstant",
    "BiasInit",
    "BiasNormal",
    "BiasZeros",
    "Constant",
    "FloatArray",
    "FloatDType",
    "HeNormal",
    "HeUniform",
    "Identity",
    "LecunNormal",
    "LecunUniform",
    "Lsuv",
    "Nonlinearity",
    "Normal",
    "Ones",
    "Orthogonal",
    "Sparse",
    "TruncatedNormal",
    "Uniform",
    "VarianceScaling",
    "WeightInit",
    "XavierNormal",
    "XavierUniform",
    "Zeros",
    "calculate_gain",
    "scheme_names",
    "truncated_normal_moments",
]

FloatArray: TypeAlias = NDArray[np.floating[Any]]
FloatDType: TypeAlias = np.dtype[np.floating[Any]] | type[np.floating[Any]]

_FORBID = ConfigDict(extra="forbid")
# Parameters are bounded to |x| <= 1e6: beyond that no initialisation is meaningful, and the
# variances derived from them (std^2, gain^2 / fan) stay representable.
PARAMETER_LIMIT = 1e6
Finite = Annotated[float, Field(ge=-PARAMETER_LIMIT, le=PARAMETER_LIMIT, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, le=PARAMETER_LIMIT, allow_inf_nan=False)]

Nonlinearity: TypeAlias = Literal[
    "linear", "identity", "sigmoid", "tanh", "relu", "leaky_relu", "selu"
]

# Std of a standard normal truncated to [-2, 2] (Keras' VarianceScaling constant).
_TRUNC2_STD = 0.87962566103423978
# Refuse truncation intervals this many stds away from the mean: their probability mass
# underflows double precision and sampling would collapse onto a cut-off.
_MAX_TRUNCATION_DISTANCE = 30.0

_SCHEME_NAMES: dict[type[Any], tuple[str, ...]] = {}

_CONV_GAIN_ONE = frozenset(
    {
        "linear",
        "identity",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
    }
)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """PyTorch's ``torch.nn.init.calculate_gain``, value for value.

    linear / identity / conv* / sigmoid: 1; tanh: 5/3; relu: sqrt(2);
    leaky_relu: sqrt(2 / (1 + slope^2)) with slope = ``param`` (0.01 when None);
    selu: 3/4. ``param`` is ignored for every other nonlinearity.
    """
    if nonlinearity in _CONV_GAIN_ONE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, int | float) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def scheme_names(cls: type[Any]) -> tuple[str, ...]:
    """The ``Literal`` values of ``cls.scheme``: canonical name first, then aliases."""
    names = _SCHEME_NAMES.get(cls)
    if names is None:
        names = get_args(get_type_hints(cls)["scheme"])
        if not names or not all(isinstance(n, str) for n in names):
            raise TypeError(f"{cls.__name__}.scheme is not a Literal of strings")
        _SCHEME_NAMES[cls] = names
    return names


def truncated_normal_moments(alpha: float, beta: float) -> tuple[float, float]:
    """Mean and variance of N(0, 1) truncated to the standardised interval [alpha, beta].

    With phi the standard normal pdf, Phi its cdf and Z = Phi(beta) - Phi(alpha):
    mean = (phi(alpha) - phi(beta)) / Z,
    var = 1 + (alpha phi(alpha) - beta phi(beta)) / Z - mean^2.
    Z is evaluated on the side of 0 where it keeps its relative precision.
    """
    if not alpha < beta:
        raise ValueError(f"need alpha < beta, got [{alpha}, {beta}]")
    z = _truncated_mass(alpha, beta)
    pdf_a, pdf_b = _std_normal_pdf(alpha), _std_normal_pdf(beta)
    mean = (pdf_a - pdf_b) / z
    # x phi(x) -> 0 as |x| -> inf; an infinite bound (std far below b - a) is no truncation.
    tail_a, tail_b = (
        0.0 if math.isinf(x) else x * pdf for x, pdf in ((alpha, pdf_a), (beta, pdf_b))
    )
    var = 1.0 + (tail_a - tail_b) / z - mean**2
    return mean, max(var, 0.0)


# --------------------------------------------------------------------------------------------
# sampling kernels: every random quantity is drawn and computed in float64, then cast, so one
# generator state gives the same network in every dtype (a float32 draw is the float64 one,
# rounded) and comparing dtypes compares like with like


def _std_normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _truncated_mass(alpha: float, beta: float) -> float:
    if alpha > -beta:  # interval centred right of 0: mirror it to the left tail
        return float(ndtr(-alpha) - ndtr(-beta))
    return float(ndtr(beta) - ndtr(alpha))


def _float_dtype(dtype: FloatDType) -> np.dtype[np.floating[Any]]:
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise TypeError(f"initialisers produce floating arrays, not {dt}")
    return dt


def _cast(x: FloatArray, dt: np.dtype[np.floating[Any]]) -> FloatArray:
    return x if x.dtype == dt else x.astype(dt)


def _check_fans(fan_in: int, fan_out: int) -> None:
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"fans must be >= 1, got fan_in={fan_in}, fan_out={fan_out}")


def _gaussian(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dt: np.dtype[np.floating[Any]],
    std: float,
    mean: float = 0.0,
) -> FloatArray:
    """N(mean, std^2) entries: mean + std z, z ~ N(0, 1) drawn in float64, then cast."""
    x = rng.standard_normal(shape)
    x *= std
    if mean != 0.0:
        x += mean
    return _cast(x, dt)


def _uniform(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dt: np.dtype[np.floating[Any]],
    low: float,
    high: float,
) -> FloatArray:
    """U[low, high) entries as low + (high - low) u, like ``torch.Tensor.uniform_``; u drawn
    in float64, then cast."""
    x = rng.random(shape)
    x *= high - low
    x += low
    return _cast(x, dt)


def _truncated_gaussian(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dt: np.dtype[np.floating[Any]],
    mean: float,
    std: float,
    a: float,
    b: float,
) -> FloatArray:
    """N(mean, std^2) truncated to the absolute interval [a, b], by inverse CDF.

    u ~ U[Phi(alpha), Phi(beta)], x = mean + std * Phi^-1(u), clipped to [a, b] (as PyTorch's
    ``trunc_normal_`` does), with alpha = (a - mean)/std, beta = (b - mean)/std. Computed in
    float64, then cast, and on the side of 0 where Phi keeps its precision.
    A std that underflowed to 0 (a scale of 1e-320, say) leaves the limit, a point mass at
    the mean clipped to [a, b]; the same uniforms are drawn either way.
    """
    u = rng.random(shape)
    if std == 0.0:
        return _cast(np.full(shape, min(max(mean, a), b)), dt)
    alpha, beta = (a - mean) / std, (b - mean) / std
    mirror = alpha > -beta
    lo, hi = (-beta, -alpha) if mirror else (alpha, beta)
    p_lo, p_hi = float(ndtr(lo)), float(ndtr(hi))
    u *= p_hi - p_lo
    u += p_lo
    z = ndtri(u, out=u)
    z *= -std if mirror else std
    z += mean
    np.clip(z, a, b, out=z)
    return _cast(z, dt)


# --------------------------------------------------------------------------------------------
# weight initialisers


class _WeightInitBase:
    """Shared behaviour: alias canonicalisation and the default theory check."""

    iid_gaussian: ClassVar[bool]

    def __post_init__(self) -> None:
        canonical = scheme_names(type(self))[0]
        if getattr(self, "scheme", canonical) != canonical:
            object.__setattr__(self, "scheme", canonical)

    @property
    def theory_applicable(self) -> bool:
        """Whether W ~ i.i.d., zero-mean, Gaussian-like, so the mean-field theory applies."""
        return self.iid_gaussian


@dataclass(frozen=True, kw_only=True)
class Normal(_WeightInitBase):
    """W_ij ~ N(mean, std^2) i.i.d. (``torch.nn.init.normal_``, Keras ``RandomNormal``).

    The mean-field theory applies only with mean = 0; then sigma_w^2 = fan_in * std^2.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij ~ N(mean, std^2)"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["normal"] = "normal"
    mean: Finite = 0.0
    std: Positive = 1.0

    @property
    def theory_applicable(self) -> bool:
        return self.mean == 0.0

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        _check_fans(fan_in, fan_out)
        return _gaussian(rng, (fan_in, fan_out), _float_dtype(dtype), self.std, self.mean)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return self.mean

    def variance(self, fan_in: int, fan_out: int) -> float:
        return self.std**2


@dataclass(frozen=True, kw_only=True)
class Uniform(_WeightInitBase):
    """W_ij ~ U[low, high) i.i.d. (``torch.nn.init.uniform_``, Keras ``RandomUniform``).

    Var = (high - low)^2 / 12. Zero-mean (low = -high) uniform entries are treated as
    mean-field applicable: only the variance enters the wide-layer limit.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij ~ U[low, high)"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["uniform"] = "uniform"
    low: Finite = -0.05
    high: Finite = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.low < self.high:
            raise ValueError(f"high ({self.high}) must be greater than low ({self.low})")

    @property
    def theory_applicable(self) -> bool:
        return self.low == -self.high

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        _check_fans(fan_in, fan_out)
        return _uniform(rng, (fan_in, fan_out), _float_dtype(dtype), self.low, self.high)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.5 * (self.low + self.high)

    def variance(self, fan_in: int, fan_out: int) -> float:
        return (self.high - self.low) ** 2 / 12.0


class _Filled(_WeightInitBase):
    """Every entry the same value ``fill``: deterministic, so the variance is 0."""

    @property
    def fill(self) -> float:
        raise NotImplementedError

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        _check_fans(fan_in, fan_out)
        return np.full((fan_in, fan_out), self.fill, dtype=_float_dtype(dtype))

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return self.fill

    def variance(self, fan_in: int, fan_out: int) -> float:
        return 0.0


@dataclass(frozen=True, kw_only=True)
class Constant(_Filled):
    """W_ij = value for every entry (``torch.nn.init.constant_``, Keras ``Constant``).

    Every unit of the layer computes the same thing: W has rank 1 (rank 0 for value 0).
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij = value"
    iid_gaussian: ClassVar[bool] = False
    scheme: Literal["constant"] = "constant"
    value: Finite

    @property
    def fill(self) -> float:
        return self.value


@dataclass(frozen=True, kw_only=True)
class Zeros(_Filled):
    """W_ij = 0 (``torch.nn.init.zeros_``, Keras ``Zeros``): no signal passes at all."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij = 0"
    iid_gaussian: ClassVar[bool] = False
    scheme: Literal["zeros"] = "zeros"

    @property
    def fill(self) -> float:
        return 0.0


@dataclass(frozen=True, kw_only=True)
class Ones(_Filled):
    """W_ij = 1 (``torch.nn.init.ones_``, Keras ``Ones``): rank-1, identical units."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij = 1"
    iid_gaussian: ClassVar[bool] = False
    scheme: Literal["ones"] = "ones"

    @property
    def fill(self) -> float:
        return 1.0


@dataclass(frozen=True, kw_only=True)
class XavierNormal(_WeightInitBase):
    """Glorot & Bengio (2010), PyTorch ``xavier_normal_``: W_ij ~ N(0, std^2) with
    std = gain * sqrt(2 / (fan_in + fan_out)).

    Not the book's "Xavier" (that is ``lecun_normal``, std = 1/sqrt(fan_in)). Keras'
    ``GlorotNormal`` is the truncated ``variance_scaling(1, fan_avg, truncated_normal)``.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij ~ N(0, gain^2 * 2/(fan_in + fan_out))"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["xavier_normal", "glorot_normal"] = "xavier_normal"
    gain: Positive = 1.0

    def std(self, fan_in: int, fan_out: int) -> float:
        _check_fans(fan_in, fan_out)
        return self.gain * math.sqrt(2.0 / (fan_in + fan_out))

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        std = self.std(fan_in, fan_out)
        return _gaussian(rng, (fan_in, fan_out), _float_dtype(dtype), std)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        return self.std(fan_in, fan_out) ** 2


@dataclass(frozen=True, kw_only=True)
class XavierUniform(_WeightInitBase):
    """Glorot & Bengio (2010), PyTorch ``xavier_uniform_``: W_ij ~ U[-bound, bound) with
    bound = gain * sqrt(6 / (fan_in + fan_out)) = sqrt(3) * (xavier_normal std).

    Var = gain^2 * 2 / (fan_in + fan_out). Keras ``GlorotUniform`` is the same with gain 1.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij ~ U[-b, b), b = gain * sqrt(6/(fan_in + fan_out))"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["xavier_uniform", "glorot_uniform"] = "xavier_uniform"
    gain: Positive = 1.0

    def bound(self, fan_in: int, fan_out: int) -> float:
        _check_fans(fan_in, fan_out)
        return math.sqrt(3.0) * self.gain * math.sqrt(2.0 / (fan_in + fan_out))

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        bound = self.bound(fan_in, fan_out)
        return _uniform(rng, (fan_in, fan_out), _float_dtype(dtype), -bound, bound)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        return self.bound(fan_in, fan_out) ** 2 / 3.0


def _mode_fan(mode: Literal["fan_in", "fan_out"], fan_in: int, fan_out: int) -> int:
    _check_fans(fan_in, fan_out)
    return fan_in if mode == "fan_in" else fan_out


@dataclass(frozen=True, kw_only=True)
class HeNormal(_WeightInitBase):
    """He et al. (2015), PyTorch ``kaiming_normal_(a, mode, nonlinearity)``:
    W_ij ~ N(0, std^2), std = gain / sqrt(fan_mode), gain = calculate_gain(nonlinearity,
    negative_slope).

    ``negative_slope`` is PyTorch's ``a``. The defaults (leaky_relu, slope 0, fan_in) give
    gain sqrt(2): the book's "He" std = sqrt(2 / fan_in). Keras' ``HeNormal`` is the
    truncated ``variance_scaling(2, fan_in, truncated_normal)``.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij ~ N(0, gain^2 / fan_mode), gain = calculate_gain(...)"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["he_normal", "kaiming_normal"] = "he_normal"
    negative_slope: Finite = 0.0
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Nonlinearity = "leaky_relu"

    @property
    def gain(self) -> float:
        return calculate_gain(self.nonlinearity, self.negative_slope)

    def std(self, fan_in: int, fan_out: int) -> float:
        return self.gain / math.sqrt(_mode_fan(self.mode, fan_in, fan_out))

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        std = self.std(fan_in, fan_out)
        return _gaussian(rng, (fan_in, fan_out), _float_dtype(dtype), std)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        return self.std(fan_in, fan_out) ** 2


@dataclass(frozen=True, kw_only=True)
class HeUniform(_WeightInitBase):
    """He et al. (2015), PyTorch ``kaiming_uniform_(a, mode, nonlinearity)``:
    W_ij ~ U[-bound, bound), bound = sqrt(3) * gain / sqrt(fan_mode).

    PyTorch's ``nn.Linear`` default is this with negative_slope = sqrt(5), giving
    gain^2 = 1/3 and Var = 1 / (3 fan_in): much smaller than He's 2 / fan_in.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij ~ U[-b, b), b = sqrt(3) * gain / sqrt(fan_mode)"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["he_uniform", "kaiming_uniform"] = "he_uniform"
    negative_slope: Finite = 0.0
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Nonlinearity = "leaky_relu"

    @property
    def gain(self) -> float:
        return calculate_gain(self.nonlinearity, self.negative_slope)

    def bound(self, fan_in: int, fan_out: int) -> float:
        return math.sqrt(3.0) * self.gain / math.sqrt(_mode_fan(self.mode, fan_in, fan_out))

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        bound = self.bound(fan_in, fan_out)
        return _uniform(rng, (fan_in, fan_out), _float_dtype(dtype), -bound, bound)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        return self.bound(fan_in, fan_out) ** 2 / 3.0


@dataclass(frozen=True, kw_only=True)
class LecunNormal(_WeightInitBase):
    """LeCun et al. (1998): W_ij ~ N(0, 1/fan_in), untruncated, so sigma_w^2 = 1.

    This is what "Deep Learning from Scratch" calls "Xavier" (std = 1/sqrt(n)). Keras'
    ``LecunNormal`` differs: it is truncated (``variance_scaling(1, fan_in, truncated)``).
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij ~ N(0, 1/fan_in)"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["lecun_normal"] = "lecun_normal"

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        _check_fans(fan_in, fan_out)
        std = 1.0 / math.sqrt(fan_in)
        return _gaussian(rng, (fan_in, fan_out), _float_dtype(dtype), std)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        _check_fans(fan_in, fan_out)
        return 1.0 / fan_in


@dataclass(frozen=True, kw_only=True)
class LecunUniform(_WeightInitBase):
    """LeCun et al. (1998), Keras ``LecunUniform``: W_ij ~ U[-bound, bound),
    bound = sqrt(3 / fan_in), so Var = 1/fan_in."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij ~ U[-b, b), b = sqrt(3/fan_in)"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["lecun_uniform"] = "lecun_uniform"

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        _check_fans(fan_in, fan_out)
        bound = math.sqrt(3.0 / fan_in)
        return _uniform(rng, (fan_in, fan_out), _float_dtype(dtype), -bound, bound)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        _check_fans(fan_in, fan_out)
        return 1.0 / fan_in


@dataclass(frozen=True, kw_only=True)
class TruncatedNormal(_WeightInitBase):
    """PyTorch ``trunc_normal_(mean, std, a, b)``: N(mean, std^2) conditioned on [a, b].

    ``a`` and ``b`` are ABSOLUTE cut-offs (not multiples of std) and the variance is not
    corrected: with [a, b] = mean -+ 2 std the std shrinks to 0.8796 std. Sampled like
    PyTorch by inverse CDF: u ~ U[Phi(alpha), Phi(beta)], W = mean + std * Phi^-1(u),
    clipped to [a, b], with alpha = (a - mean)/std, beta = (b - mean)/std.
    ``variance`` is the exact truncated variance
    std^2 [1 + (alpha phi(alpha) - beta phi(beta))/Z - ((phi(alpha) - phi(beta))/Z)^2],
    Z = Phi(beta) - Phi(alpha). Intervals lying more than 30 std from ``mean`` are refused:
    their probability mass underflows.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W_ij ~ N(mean, std^2) conditioned on a <= W_ij <= b"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["truncated_normal", "trunc_normal"] = "truncated_normal"
    mean: Finite = 0.0
    std: Positive = 1.0
    a: Finite = -2.0
    b: Finite = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.a < self.b:
            raise ValueError(f"b ({self.b}) must be greater than a ({self.a})")
        alpha, beta = self._standardised()
        distance = max(alpha, -beta, 0.0)
        if distance > _MAX_TRUNCATION_DISTANCE:
            raise ValueError(
                f"[a, b] = [{self.a}, {self.b}] lies {distance:.3g} std from mean; "
                f"at most {_MAX_TRUNCATION_DISTANCE:g} is supported"
            )

    def _standardised(self) -> tuple[float, float]:
        return (self.a - self.mean) / self.std, (self.b - self.mean) / self.std

    @property
    def theory_applicable(self) -> bool:
        return self.mean == 0.0 and self.a == -self.b

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        _check_fans(fan_in, fan_out)
        return _truncated_gaussian(
            rng, (fan_in, fan_out), _float_dtype(dtype), self.mean, self.std, self.a, self.b
        )

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        mean, _ = truncated_normal_moments(*self._standardised())
        return self.mean + self.std * mean

    def variance(self, fan_in: int, fan_out: int) -> float:
        _, var = truncated_normal_moments(*self._standardised())
        return self.std**2 * var


@dataclass(frozen=True, kw_only=True)
class VarianceScaling(_WeightInitBase):
    """Keras ``VarianceScaling(scale, mode, distribution)``, exactly.

    n = max(1, fan) with fan = fan_in, fan_out or (fan_in + fan_out)/2 (fan_avg), then
    truncated_normal: std = sqrt(scale/n) / 0.87962566103423978, cut at -+2 std (relative),
    so Var = scale/n; untruncated_normal: std = sqrt(scale/n); uniform: U[-l, l),
    l = sqrt(3 scale/n). Keras presets: GlorotNormal = (1, fan_avg, truncated_normal),
    LecunNormal = (1, fan_in, truncated_normal), HeNormal = (2, fan_in, truncated_normal).
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "Var(W_ij) = scale / max(1, fan_mode) (Keras VarianceScaling)"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["variance_scaling"] = "variance_scaling"
    scale: Positive = 1.0
    mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in"
    distribution: Literal["truncated_normal", "untruncated_normal", "uniform"] = "truncated_normal"

    def target_variance(self, fan_in: int, fan_out: int) -> float:
        """scale / n: the variance Keras aims for."""
        _check_fans(fan_in, fan_out)
        fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": 0.5 * (fan_in + fan_out)}
        return self.scale / max(1.0, fans[self.mode])

    def std(self, fan_in: int, fan_out: int) -> float:
        """The std parameter handed to the (possibly truncated) normal, or the uniform limit."""
        target = self.target_variance(fan_in, fan_out)
        if self.distribution == "truncated_normal":
            return math.sqrt(target) / _TRUNC2_STD
        if self.distribution == "untruncated_normal":
            return math.sqrt(target)
        return math.sqrt(3.0 * target)

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        std, dt, shape = self.std(fan_in, fan_out), _float_dtype(dtype), (fan_in, fan_out)
        if self.distribution == "truncated_normal":
            return _truncated_gaussian(rng, shape, dt, 0.0, std, -2.0 * std, 2.0 * std)
        if self.distribution == "untruncated_normal":
            return _gaussian(rng, shape, dt, std)
        return _uniform(rng, shape, dt, -std, std)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        std = self.std(fan_in, fan_out)
        if self.distribution == "truncated_normal":
            return std**2 * truncated_normal_moments(-2.0, 2.0)[1]
        if self.distribution == "untruncated_normal":
            return std**2
        return std**2 / 3.0


@dataclass(frozen=True, kw_only=True)
class Orthogonal(_WeightInitBase):
    """Saxe et al. (2014), PyTorch ``orthogonal_(gain)``: a Haar-random matrix with
    orthonormal columns (fan_in >= fan_out) or rows (fan_in < fan_out), times gain.

    Draw G ~ N(0, 1) of shape (max, min) (the transpose when fan_in < fan_out), QR it,
    multiply Q's columns by sign(diag(R)) (sign 0 counts as +1), transpose back, scale.
    Every column (or row) is a uniform unit vector, so E[W_ij] = 0 and
    Var(W_ij) = gain^2 * min(fan_in, fan_out) / (fan_in * fan_out) exactly.
    Not i.i.d.: the mean-field theory does not apply (dynamical isometry does).
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W = gain * Q, Q from QR of a Gaussian matrix (orthonormal cols/rows)"
    iid_gaussian: ClassVar[bool] = False
    scheme: Literal["orthogonal"] = "orthogonal"
    gain: Positive = 1.0

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        _check_fans(fan_in, fan_out)
        dt = _float_dtype(dtype)
        wide = fan_in < fan_out
        g = rng.standard_normal((fan_in, fan_out))
        q, r = np.linalg.qr(g.T if wide else g)
        signs = np.sign(np.diagonal(r))
        signs[signs == 0.0] = 1.0
        q *= signs
        w = q.T if wide else q
        w *= self.gain
        return np.ascontiguousarray(w, dtype=dt)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        _check_fans(fan_in, fan_out)
        return self.gain**2 * min(fan_in, fan_out) / (fan_in * fan_out)


@dataclass(frozen=True, kw_only=True)
class Lsuv(_WeightInitBase):
    """Layer-sequential unit-variance init (Mishkin & Matas 2016, ICLR, arXiv:1511.06422).

    1. Pre-init W with ``orthogonal(gain=1)``; this is what ``sample`` draws.
    2. Forward the data to the layer and measure, over all samples and units,

           v = Var(h_prev @ W + b),

       the variance of the layer's linear output, before the nonlinearity: the paper
       normalises the output of each convolution or inner-product layer, and in Caffe the
       nonlinearity is a layer of its own.
    3. While |v - 1| >= ``tol`` and fewer than ``max_iterations`` rescalings were made:
       W <- W / sqrt(v), and measure v again.

    Layers are processed in order, each on the previous layers' final output. Steps 2-3 need the
    data, so they run in the simulation, on the request's own input; ``tol`` 0.1 and 10
    iterations are the Keras port's defaults. Without a bias (or with one constant across units)
    Var(h_prev @ (s W)) = s^2 Var(h_prev @ W), so one rescaling reaches v = 1 up to rounding
    whatever phi is: tanh and sigmoid then see unit-variance inputs, away from their flat tails.
    ``variance`` is the orthogonal pre-init's, min(fan_in, fan_out) / (fan_in * fan_out): the
    final variance of W is data-dependent and is reported per layer (sigma_w^2 measured from the
    rescaled W). Not i.i.d.: the mean-field theory does not apply.

    A bias adds what no scale of W removes: with W scaled by s,
    v(s) = s^2 Var(h_prev @ W) + 2 s Cov(h_prev @ W, b) + Var(b), Var(b) being b's spread
    across units (a bias constant across units adds nothing). v tends to Var(b) as s -> 0, so
    when Var(b) >= 1 + tol the target is out of reach: W shrinks at every rescaling and the
    layer stops after ``max_iterations``, reported as not converged. With Var(b) < 1 each
    rescaling shrinks |v - 1| by a factor of about Var(b): slowly when Var(b) is near 1.

    ``target="output"`` measures v = Var(phi(h_prev @ W + b)) instead, the Keras port's
    setting (a Dense layer with its activation). Bounded activations cannot meet it honestly:
    Var(tanh(a)) < 1 gets within tol of 1 only by saturating (8 tanh layers of 100 on 512
    normal samples stop unconverged after 10 rescalings with 71% of the values in the flat
    tails), and Var(sigmoid(a)) <= 1/4 never does. Such layers are reported as not
    converged, never hidden.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = (
        "orthogonal(gain=1), then W /= sqrt(Var(h_prev W + b)) until |Var - 1| < tol"
    )
    iid_gaussian: ClassVar[bool] = False
    scheme: Literal["lsuv"] = "lsuv"
    tol: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.1
    max_iterations: Annotated[int, Field(ge=1, le=100)] = 10
    target: Literal["output", "preactivation"] = "preactivation"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.tol < 1.0:
            raise ValueError(f"tol ({self.tol}) must be in (0, 1)")
        if not 1 <= self.max_iterations <= 100:
            raise ValueError(f"max_iterations ({self.max_iterations}) must be in [1, 100]")

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        """The orthogonal pre-init (gain 1), before any data-driven rescaling."""
        return Orthogonal().sample(rng, fan_in, fan_out, dtype)

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        """The pre-init's; the rescaled W's variance depends on the data."""
        return Orthogonal().variance(fan_in, fan_out)


@dataclass(frozen=True, kw_only=True)
class Identity(_WeightInitBase):
    """PyTorch ``eye_`` / Keras ``Identity(gain)``: W = gain * I, the (fan_in, fan_out)
    identity padded with zeros when non-square. Deterministic: ``rng`` is not used.

    ``entry_mean`` and ``variance`` are the mean and population variance of W's entries:
    with k = min(fan_in, fan_out) and N = fan_in * fan_out, mean = gain k / N and
    variance = gain^2 k / N - mean^2.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "W = gain * I (padded with zeros when non-square)"
    iid_gaussian: ClassVar[bool] = False
    scheme: Literal["identity", "eye"] = "identity"
    gain: Finite = 1.0

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        _check_fans(fan_in, fan_out)
        w = np.eye(fan_in, fan_out, dtype=_float_dtype(dtype))
        if self.gain != 1.0:
            w *= self.gain
        return w

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        _check_fans(fan_in, fan_out)
        return self.gain * min(fan_in, fan_out) / (fan_in * fan_out)

    def variance(self, fan_in: int, fan_out: int) -> float:
        _check_fans(fan_in, fan_out)
        k, n = min(fan_in, fan_out), fan_in * fan_out
        return self.gain**2 * k / n - (self.gain * k / n) ** 2


@dataclass(frozen=True, kw_only=True)
class Sparse(_WeightInitBase):
    """Martens (2010) sparse initialisation, as PyTorch ``sparse_(sparsity, std)``:
    in every column, ceil(sparsity * rows) entries at random positions are 0 and the rest
    are N(0, std^2).

    In our (fan_in, fan_out) layout rows = fan_in: each output unit (a column of W) has
    exactly k = ceil(sparsity * fan_in) zero incoming weights, which is Martens' rule.
    (PyTorch applies the same per-column rule to its (out, in) weight, i.e. it counts zeros
    per input unit instead.) Like PyTorch, k is ``math.ceil(sparsity * fan_in)`` in floating
    point. E[W_ij] = 0, Var(W_ij) = std^2 (fan_in - k) / fan_in. Not i.i.d.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "per column ceil(sparsity * fan_in) zeros, rest ~ N(0, std^2)"
    iid_gaussian: ClassVar[bool] = False
    scheme: Literal["sparse"] = "sparse"
    sparsity: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.9
    std: Positive = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity ({self.sparsity}) must be in [0, 1)")

    def zeros_per_column(self, fan_in: int) -> int:
        return math.ceil(self.sparsity * fan_in)

    def sample(
        self,
        rng: np.random.Generator,
        fan_in: int,
        fan_out: int,
        dtype: FloatDType = np.float64,
    ) -> FloatArray:
        _check_fans(fan_in, fan_out)
        w = _gaussian(rng, (fan_in, fan_out), _float_dtype(dtype), self.std)
        zero = np.zeros((fan_in, fan_out), dtype=np.bool_)
        zero[: self.zeros_per_column(fan_in)] = True
        rng.permuted(zero, axis=0, out=zero)  # shuffles every column independently
        w[zero] = 0.0
        return w

    def entry_mean(self, fan_in: int, fan_out: int) -> float:
        return 0.0

    def variance(self, fan_in: int, fan_out: int) -> float:
        _check_fans(fan_in, fan_out)
        return self.std**2 * (fan_in - self.zeros_per_column(fan_in)) / fan_in


# --------------------------------------------------------------------------------------------
# bias initialisers


@dataclass(frozen=True, kw_only=True)
class BiasZeros:
    """b_i = 0, so sigma_b^2 = 0 (Keras' default bias initialiser)."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "b_i = 0"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["zeros"] = "zeros"

    @property
    def theory_applicable(self) -> bool:
        return True

    def sample(
        self, rng: np.random.Generator, units: int, dtype: FloatDType = np.float64
    ) -> FloatArray:
        return np.zeros(units, dtype=_float_dtype(dtype))

    def variance(self) -> float:
        return 0.0


@dataclass(frozen=True, kw_only=True)
class BiasConstant:
    """b_i = value for every unit. sigma_b^2 = 0; a nonzero value shifts every
    pre-activation by the same amount, which the zero-mean mean-field theory does not model."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "b_i = value"
    iid_gaussian: ClassVar[bool] = False
    scheme: Literal["constant"] = "constant"
    value: Finite

    @property
    def theory_applicable(self) -> bool:
        return self.value == 0.0

    def sample(
        self, rng: np.random.Generator, units: int, dtype: FloatDType = np.float64
    ) -> FloatArray:
        return np.full(units, self.value, dtype=_float_dtype(dtype))

    def variance(self) -> float:
        return 0.0


@dataclass(frozen=True, kw_only=True)
class BiasNormal:
    """b_i ~ N(mean, std^2) i.i.d.: sigma_b^2 = std^2 (Poole et al. 2016 use mean 0)."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    formula: ClassVar[str] = "b_i ~ N(mean, std^2)"
    iid_gaussian: ClassVar[bool] = True
    scheme: Literal["normal"] = "normal"
    std: Positive
    mean: Finite = 0.0

    @property
    def theory_applicable(self) -> bool:
        return self.mean == 0.0

    def sample(
        self, rng: np.random.Generator, units: int, dtype: FloatDType = np.float64
    ) -> FloatArray:
        return _gaussian(rng, (units,), _float_dtype(dtype), self.std, self.mean)

    def variance(self) -> float:
        return self.std**2


# --------------------------------------------------------------------------------------------
# exports

WeightInit = Annotated[
    Normal
    | Uniform
    | Constant
    | Zeros
    | Ones
    | XavierNormal
    | XavierUniform
    | HeNormal
    | HeUniform
    | LecunNormal
    | LecunUniform
    | TruncatedNormal
    | VarianceScaling
    | Orthogonal
    | Identity
    | Sparse
    | Lsuv,
    Field(discriminator="scheme"),
]
BiasInit = Annotated[BiasZeros | BiasConstant | BiasNormal, Field(discriminator="scheme")]

WEIGHT_INITS: tuple[type[Any], ...] = (
    Normal,
    Uniform,
    Constant,
    Zeros,
    Ones,
    XavierNormal,
    XavierUniform,
    HeNormal,
    HeUniform,
    LecunNormal,
    LecunUniform,
    TruncatedNormal,
    VarianceScaling,
    Orthogonal,
    Identity,
    Sparse,
    Lsuv,
)
BIAS_INITS: tuple[type[Any], ...] = (BiasZeros, BiasConstant, BiasNormal)
