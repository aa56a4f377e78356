"""Activations: definitions, derivatives, ranges and constants against independent references.

References are computed here with ``math`` / ``scipy.special`` in float64, never with the
module's own helpers. Tolerances: central differences with step 1e-5 have truncation error
~1e-10 and round-off ~1e-10 on the [-8, 8] grid, so 1e-6 relative / 1e-8 absolute is loose by
two orders; float32 kernels are compared with float64 to 1e-5 relative / 1e-6 absolute
(a few float32 ulps of values of order 1). Warnings are errors (pyproject), so every call
below also checks that no floating-point warning is raised.
"""

import dataclasses
import math
import pickle
import re
from typing import Any, get_args

import numpy as np
import pytest
from initscope.engine.activations import (
    ACTIVATIONS,
    ELU,
    GELU,
    GELU_ARGMIN,
    GELU_MAX_DERIVATIVE,
    GELU_MIN,
    SELU,
    SELU_ALPHA,
    SELU_SCALE,
    SILU_ARGMAX_DERIVATIVE,
    SILU_MAX_DERIVATIVE,
    SILU_MIN,
    Activation,
    ActivationFn,
    ActivationName,
    HardTanh,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
    activation_names,
)
from pydantic import TypeAdapter, ValidationError
from scipy import optimize, special

CATALOGUE = (
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
)
DEFAULTS: list[ActivationFn] = [cls() for cls in ACTIVATIONS]
VARIANTS: list[ActivationFn] = [
    LeakyReLU(negative_slope=0.0),
    LeakyReLU(negative_slope=0.2),
    ELU(alpha=0.5),
    ELU(alpha=2.0),
    Softplus(beta=2.0, threshold=5.0),
    Softplus(beta=0.5),
    HardTanh(min_val=-0.5, max_val=2.0),
]
EVERY = DEFAULTS + VARIANTS
ADAPTER: TypeAdapter[Any] = TypeAdapter(Activation)
DTYPES = [np.float32, np.float64]
SQRT_2PI = math.sqrt(2.0 * math.pi)

every_activation = pytest.mark.parametrize("act", EVERY, ids=lambda act: act.label)
every_dtype = pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: dtype.__name__)


def _kinks(act: ActivationFn) -> list[float]:
    """Points where phi or phi' is not smooth (or PyTorch switches branch)."""
    points = [0.0]
    if isinstance(act, HardTanh):
        points += [act.min_val, act.max_val]
    if isinstance(act, Softplus):
        points.append(act.threshold / act.beta)
    return points


def _wide_grid() -> np.ndarray:
    """Step 1e-4 on [-50, 50] plus both signs of 1e-300 .. 1e300 and the kinks of VARIANTS."""
    tails = np.logspace(-300, 300, 61)
    kinks = [k for act in EVERY for k in _kinks(act)]
    return np.concatenate([np.linspace(-50, 50, 1_000_001), tails, -tails, kinks])


WIDE = _wide_grid()


def _eval(act: ActivationFn, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = act.forward(a)
    return h, act.derivative(a, h)


# -- catalogue ------------------------------------------------------------------------------


def test_catalogue_order_and_names() -> None:
    assert activation_names() == CATALOGUE
    assert get_args(ActivationName) == CATALOGUE
    assert tuple(act.name for act in DEFAULTS) == CATALOGUE
    assert len(set(ACTIVATIONS)) == len(ACTIVATIONS)


@pytest.mark.parametrize("cls", ACTIVATIONS, ids=lambda cls: cls.__name__)
def test_formula_and_citation(cls: type[ActivationFn]) -> None:
    assert cls.formula
    assert cls.formula.strip() == cls.formula
    assert "\n" not in cls.formula
    assert re.search(r"\b(19|20)\d\d\b", cls.__doc__ or ""), "docstring should cite a source"


def test_saturating_flags() -> None:
    saturating = {act.name for act in DEFAULTS if act.saturating}
    assert saturating == {"sigmoid", "tanh", "hard_tanh", "elu", "selu"}


@pytest.mark.parametrize(
    ("act", "gain"),
    [
        (Linear(), 1.0),
        (Sigmoid(), 1.0),
        (Tanh(), 5.0 / 3.0),
        (ReLU(), math.sqrt(2.0)),
        (LeakyReLU(), math.sqrt(2.0 / (1.0 + 0.01**2))),
        (LeakyReLU(negative_slope=0.2), math.sqrt(2.0 / 1.04)),
        (SELU(), 0.75),
        (ELU(), None),
        (GELU(), None),
        (SiLU(), None),
        (Softplus(), None),
        (HardTanh(), None),
    ],
    ids=lambda x: x.label if hasattr(x, "label") else repr(x),
)
def test_pytorch_gain(act: ActivationFn, gain: float | None) -> None:
    assert act.pytorch_gain == (None if gain is None else pytest.approx(gain, rel=1e-15))


@pytest.mark.parametrize(
    ("act", "label"),
    [
        (ELU(), "elu"),
        (ELU(alpha=1.0), "elu"),
        (LeakyReLU(negative_slope=0.1), "leaky_relu(negative_slope=0.1)"),
        (HardTanh(min_val=-2.0), "hard_tanh(min_val=-2.0)"),
        (Softplus(beta=2.0, threshold=5.0), "softplus(beta=2.0, threshold=5.0)"),
    ],
)
def test_label_lists_non_default_parameters(act: ActivationFn, label: str) -> None:
    assert act.label == label


# -- values ---------------------------------------------------------------------------------


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _phi_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@pytest.mark.parametrize(
    ("act", "a", "expected"),
    [
        (Linear(), -3.25, -3.25),
        (Sigmoid(), 0.0, 0.5),
        (Sigmoid(), 2.0, _sig(2.0)),
        (Sigmoid(), -3.0, _sig(-3.0)),
        (Tanh(), 0.7, math.tanh(0.7)),
        (ReLU(), -2.0, 0.0),
        (ReLU(), 3.0, 3.0),
        (LeakyReLU(negative_slope=0.1), -2.0, -0.2),
        (LeakyReLU(negative_slope=0.1), 2.0, 2.0),
        (ELU(), -1.0, math.expm1(-1.0)),
        (ELU(alpha=2.0), -1.0, 2.0 * math.expm1(-1.0)),
        (ELU(alpha=2.0), 1.5, 1.5),
        (SELU(), -1.0, SELU_SCALE * SELU_ALPHA * math.expm1(-1.0)),
        (SELU(), 2.0, 2.0 * SELU_SCALE),
        (GELU(), 1.0, 0.8413447460685429),
        (GELU(), -1.0, -_phi_cdf(-1.0)),
        (GELU(), 3.0, 3.0 * _phi_cdf(3.0)),
        (SiLU(), 1.0, _sig(1.0)),
        (SiLU(), -2.0, -2.0 * _sig(-2.0)),
        (Softplus(), 0.0, math.log(2.0)),
        (Softplus(), -3.0, math.log1p(math.exp(-3.0))),
        (Softplus(), 19.9, math.log1p(math.exp(19.9))),  # just below the threshold: not linear
        (Softplus(beta=2.0), 1.0, math.log1p(math.exp(2.0)) / 2.0),
        (HardTanh(), 0.3, 0.3),
        (HardTanh(min_val=-0.5, max_val=2.0), 3.0, 2.0),
        (HardTanh(min_val=-0.5, max_val=2.0), -3.0, -0.5),
    ],
    ids=lambda x: x.label if hasattr(x, "label") else repr(x),
)
def test_forward_matches_textbook_definition(act: ActivationFn, a: float, expected: float) -> None:
    h = act.forward(np.array([a]))
    assert h[0] == pytest.approx(expected, rel=1e-14, abs=1e-16)


def test_selu_constants_are_pytorchs() -> None:
    assert SELU_ALPHA == 1.6732632423543772848170429916717
    assert SELU_SCALE == 1.0507009873554804934193349852946
    assert SELU().natural_range[0] == pytest.approx(-1.7580993408473766, rel=1e-15)


@pytest.mark.parametrize(
    ("act", "threshold"), [(Softplus(), 20.0), (Softplus(beta=2.0, threshold=5.0), 2.5)]
)
def test_softplus_switches_to_identity_above_threshold(act: Softplus, threshold: float) -> None:
    above = np.array([threshold + 1e-9, threshold + 0.5, 1e3, 1e30])
    h, d = _eval(act, above)
    np.testing.assert_array_equal(h, above)  # bit-exact identity, as torch.nn.Softplus
    np.testing.assert_array_equal(d, 1.0)
    at = np.array([threshold])  # beta * a == threshold is not "above": still the log form
    expected = math.log1p(math.exp(act.beta * threshold)) / act.beta
    h_at, d_at = _eval(act, at)
    assert h_at[0] == pytest.approx(expected, rel=1e-15)
    assert h_at[0] != threshold
    assert d_at[0] == pytest.approx(_sig(act.beta * threshold), rel=1e-15)


@pytest.mark.parametrize(
    ("act", "a", "expected"),
    [
        (ReLU(), 0.0, 0.0),
        (ReLU(), -0.0, 0.0),
        (LeakyReLU(negative_slope=0.2), 0.0, 0.2),
        (ELU(), 0.0, 1.0),
        (ELU(alpha=2.0), 0.0, 2.0),
        (ELU(alpha=0.5), 0.0, 0.5),
        (ELU(alpha=0.5), 1e-300, 1.0),
        (SELU(), 0.0, SELU_SCALE * SELU_ALPHA),
        (SELU(), 1e-300, SELU_SCALE),
        (HardTanh(), -1.0, 0.0),
        (HardTanh(), 1.0, 0.0),
        (HardTanh(), 0.999, 1.0),
        (HardTanh(min_val=-0.5, max_val=2.0), -0.5, 0.0),
        (Linear(), 0.0, 1.0),
        (Sigmoid(), 0.0, 0.25),
        (Tanh(), 0.0, 1.0),
        (GELU(), 0.0, 0.5),
        (SiLU(), 0.0, 0.5),
        (Softplus(), 0.0, 0.5),
    ],
    ids=lambda x: x.label if hasattr(x, "label") else repr(x),
)
def test_derivative_at_kinks_follows_pytorch(act: ActivationFn, a: float, expected: float) -> None:
    _, d = _eval(act, np.array([a]))
    assert d[0] == pytest.approx(expected, rel=1e-15)


@every_activation
def test_derivative_matches_central_differences(act: ActivationFn) -> None:
    a = np.linspace(-8.0, 8.0, 3201)
    for kink in _kinks(act):
        a = a[np.abs(a - kink) > 1e-3]
    plus, minus = a + 1e-5, a - 1e-5
    numeric = (act.forward(plus) - act.forward(minus)) / (plus - minus)
    _, d = _eval(act, a)
    np.testing.assert_allclose(d, numeric, rtol=1e-6, atol=1e-8)


def test_gelu_derivative_from_h_matches_direct_formula() -> None:
    """GELU' reuses Phi = h / a: check it where that ratio is delicate (tiny, huge, signs)."""
    mags = np.concatenate([np.logspace(-323, 3, 400), [5e-324, 2.2e-308, 1e300]])
    a = np.concatenate([mags, -mags, [0.0, -0.0, 0.5, -0.75]])
    x = np.clip(a, -40.0, 40.0)
    expected = special.ndtr(a) + x * np.exp(-0.5 * x * x) / SQRT_2PI
    _, d = _eval(GELU(), a)
    np.testing.assert_allclose(d, expected, rtol=1e-13, atol=1e-300)


# -- dtype, shape, extremes -----------------------------------------------------------------


@every_activation
@every_dtype
@pytest.mark.parametrize("shape", [(), (7,), (0, 3), (4, 5)], ids=str)
def test_dtype_and_shape_preserved_and_inputs_untouched(
    act: ActivationFn, dtype: type[np.floating[Any]], shape: tuple[int, ...]
) -> None:
    a = np.random.default_rng(0).normal(scale=3.0, size=shape).astype(dtype)
    if a.ndim == 2 and a.size:
        a = a.T  # non-contiguous input
    a_before = a.copy()
    h = act.forward(a)
    h_before = h.copy()
    d = act.derivative(a, h)
    for out in (h, d):
        assert isinstance(out, np.ndarray)
        assert out.dtype == dtype
        assert out.shape == a.shape
        assert not np.shares_memory(out, a)
    assert not np.shares_memory(d, h)
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(h, h_before)


@every_activation
def test_float32_agrees_with_float64(act: ActivationFn) -> None:
    a32 = np.linspace(-12.0, 12.0, 2401, dtype=np.float32)
    h32, d32 = _eval(act, a32)
    h64, d64 = _eval(act, a32.astype(np.float64))
    np.testing.assert_allclose(h32, h64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d32, d64, rtol=1e-5, atol=1e-6)


def _extremes(dtype: type[np.floating[Any]]) -> np.ndarray:
    info = np.finfo(dtype)
    big, tiny = float(info.max), float(info.smallest_subnormal)
    values = [big, 1e30, 1e3, 40.0, 1.0, 1e-30, tiny, 0.0]
    return np.array([*values, *(-v for v in values)], dtype=dtype)


@every_activation
@every_dtype
def test_extreme_inputs_stay_finite(act: ActivationFn, dtype: type[np.floating[Any]]) -> None:
    a = _extremes(dtype)
    h, d = _eval(act, a)
    overflow = isinstance(act, SELU) & (a == np.finfo(dtype).max)  # scale * max > max
    assert np.isfinite(h[~overflow]).all()
    assert np.isposinf(h[overflow]).all()
    assert np.isfinite(d).all()
    assert ((d >= 0) | (act.name in ("gelu", "silu"))).all()


@every_activation
@every_dtype
def test_infinite_inputs_give_the_limits(act: ActivationFn, dtype: type[np.floating[Any]]) -> None:
    info = np.finfo(dtype)
    a = np.array([-np.inf, np.inf, -info.max, info.max], dtype=dtype)
    h, d = _eval(act, a)
    low, high = act.natural_range
    expected_low = 0.0 if act.name in ("gelu", "silu") else low  # they return to 0
    rel = float(info.eps)
    assert h[0] == pytest.approx(expected_low, rel=rel)
    assert h[1] == pytest.approx(high, rel=rel)
    np.testing.assert_array_equal(d[:2], d[2:])  # the derivative's tails are flat
    assert np.isnan(act.forward(np.array([np.nan], dtype=dtype))).all()


# -- range and derivative bound -------------------------------------------------------------


@every_activation
def test_natural_range_contains_every_output(act: ActivationFn) -> None:
    h, _ = _eval(act, WIDE)
    low, high = act.natural_range
    slack = 1e-15  # rounding of a * Phi(a) near GELU's minimum
    assert h.min() >= low - slack
    assert h.max() <= high + slack
    assert act.bounded == (math.isfinite(low) and math.isfinite(high))


@every_activation
def test_natural_range_is_tight(act: ActivationFn) -> None:
    h, _ = _eval(act, WIDE)
    low, high = act.natural_range
    if math.isfinite(low):
        assert h.min() - low <= 1e-9
    else:
        assert h.min() < -1e100
    if math.isfinite(high):
        assert high - h.max() <= 1e-9
    else:
        assert h.max() > 1e100


@every_activation
def test_max_derivative_is_the_sup_of_abs_derivative(act: ActivationFn) -> None:
    _, d = _eval(act, WIDE)
    assert np.abs(d).max() <= act.max_derivative * (1 + 1e-12)
    assert np.abs(d).max() == pytest.approx(act.max_derivative, abs=1e-6)


def test_bounded_property() -> None:
    bounded = {act.name for act in DEFAULTS if act.bounded}
    assert bounded == {"sigmoid", "tanh", "hard_tanh"}


# -- constants ------------------------------------------------------------------------------


def test_gelu_constants() -> None:
    def gelu(x: float) -> float:
        return x * _phi_cdf(x)

    best = optimize.minimize_scalar(
        gelu, bounds=(-2.0, 0.0), method="bounded", options={"xatol": 1e-12}
    )
    assert best.fun == pytest.approx(GELU_MIN, abs=1e-15)
    assert best.x == pytest.approx(GELU_ARGMIN, abs=1e-6)
    stationary = _phi_cdf(GELU_ARGMIN) + GELU_ARGMIN * math.exp(-0.5 * GELU_ARGMIN**2) / SQRT_2PI
    assert abs(stationary) < 1e-15
    assert gelu(GELU_ARGMIN) == pytest.approx(GELU_MIN, rel=1e-15)
    closed = 0.5 * (1.0 + math.erf(1.0)) + 1.0 / (math.e * math.sqrt(math.pi))
    assert closed == pytest.approx(GELU_MAX_DERIVATIVE, rel=1e-15)
    assert math.isclose(GELU_MIN, -0.16997120, abs_tol=1e-8)  # the commonly quoted digits
    assert math.isclose(GELU_MAX_DERIVATIVE, 1.1289041, abs_tol=1e-7)  # the commonly quoted digits


def test_silu_constants() -> None:
    assert -special.lambertw(1.0 / math.e).real == pytest.approx(SILU_MIN, rel=1e-15)
    root = optimize.brentq(lambda x: x * math.tanh(x / 2.0) - 2.0, 1.0, 4.0, xtol=1e-15)
    assert root == pytest.approx(SILU_ARGMAX_DERIVATIVE, rel=1e-14)
    s = _sig(root)
    assert s + root * s * (1.0 - s) == pytest.approx(SILU_MAX_DERIVATIVE, rel=1e-15)
    assert math.isclose(SILU_MIN, -0.27846454, abs_tol=1e-8)  # the commonly quoted digits
    assert math.isclose(SILU_MAX_DERIVATIVE, 1.0998393, abs_tol=1e-7)  # the commonly quoted digits


# -- schema ---------------------------------------------------------------------------------


def test_schema_parses_parameters() -> None:
    act = ADAPTER.validate_python({"name": "leaky_relu", "negative_slope": 0.1})
    assert act == LeakyReLU(negative_slope=0.1)
    assert act.negative_slope == 0.1
    assert ADAPTER.validate_json('{"name": "elu", "alpha": 2}').label == "elu(alpha=2.0)"


@pytest.mark.parametrize("name", CATALOGUE)
def test_schema_name_alone_gives_defaults(name: str) -> None:
    act = ADAPTER.validate_python({"name": name})
    assert act == ACTIVATIONS[CATALOGUE.index(name)]()


@every_activation
def test_schema_json_round_trip(act: ActivationFn) -> None:
    assert ADAPTER.validate_json(ADAPTER.dump_json(act)) == act


def test_schema_unknown_name_lists_expected_tags() -> None:
    with pytest.raises(ValidationError) as info:
        ADAPTER.validate_python({"name": "swish"})
    (error,) = info.value.errors()
    assert error["type"] == "union_tag_invalid"
    for name in CATALOGUE:
        assert f"'{name}'" in error["msg"]


def test_schema_requires_the_name() -> None:
    with pytest.raises(ValidationError) as info:
        ADAPTER.validate_python({"negative_slope": 0.1})
    assert info.value.errors()[0]["type"] == "union_tag_not_found"


def test_schema_rejects_misspelt_parameter() -> None:
    with pytest.raises(ValidationError) as info:
        ADAPTER.validate_python({"name": "leaky_relu", "negative_slop": 0.1})
    (error,) = info.value.errors()
    assert error["type"] == "unexpected_keyword_argument"
    assert error["loc"][-1] == "negative_slop"


@pytest.mark.parametrize(("low", "high"), [(1.0, 1.0), (2.0, -2.0)])
def test_schema_rejects_empty_hard_tanh_interval(low: float, high: float) -> None:
    with pytest.raises(ValidationError, match=r"min_val .* must be below max_val"):
        ADAPTER.validate_python({"name": "hard_tanh", "min_val": low, "max_val": high})
    with pytest.raises(ValueError, match="must be below"):
        HardTanh(min_val=low, max_val=high)


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"name": "elu", "alpha": 0.0}, "greater_than"),
        ({"name": "elu", "alpha": -1.0}, "greater_than"),
        ({"name": "elu", "alpha": "inf"}, "finite_number"),
        ({"name": "leaky_relu", "negative_slope": 1.0}, "less_than"),
        ({"name": "leaky_relu", "negative_slope": -0.1}, "greater_than_equal"),
        ({"name": "leaky_relu", "negative_slope": "nan"}, "finite_number"),
        ({"name": "softplus", "beta": 0.0}, "greater_than_equal"),
        ({"name": "softplus", "threshold": 0.0}, "greater_than"),
        ({"name": "hard_tanh", "max_val": 1e7}, "less_than_equal"),
    ],
    ids=lambda x: str(x),
)
def test_schema_rejects_out_of_range_parameters(body: dict[str, Any], error_type: str) -> None:
    with pytest.raises(ValidationError) as info:
        ADAPTER.validate_python(body)
    assert [e["type"] for e in info.value.errors()] == [error_type]


def test_json_schema_has_discriminator_mapping() -> None:
    schema = ADAPTER.json_schema()
    assert schema["discriminator"]["propertyName"] == "name"
    assert set(schema["discriminator"]["mapping"]) == set(CATALOGUE)


# -- value semantics ------------------------------------------------------------------------


@every_activation
def test_instances_are_frozen_hashable_and_picklable(act: ActivationFn) -> None:
    assert pickle.loads(pickle.dumps(act)) == act
    assert hash(pickle.loads(pickle.dumps(act))) == hash(act)
    with pytest.raises(dataclasses.FrozenInstanceError):
        act.name = "linear"  # type: ignore[misc]


def test_parameters_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        LeakyReLU(0.1)  # type: ignore[call-arg, arg-type]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_keeps_relative_accuracy_in_the_tail(dtype: type[np.floating[Any]]) -> None:
    """Like torch.sigmoid: sigmoid(-20) is ~2e-9, not an exact zero that would read as dead."""
    a = np.array([-20.0, -30.0, -80.0], dtype=dtype)
    h = Sigmoid().forward(a)
    expected = 1 / (1 + np.exp(-a.astype(np.float64)))
    np.testing.assert_allclose(h, expected, rtol=1e-6)
    assert np.all(Sigmoid().derivative(a, h) > 0)
