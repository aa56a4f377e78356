"""Initialisers: sampled statistics vs. the stated formulas, PyTorch/Keras conventions, schema.

Statistical checks use np.random.default_rng(0) and (1000, 800) matrices (N = 800 000
entries). The relative standard error of an empirical variance is about sqrt(2/N) = 0.16%
for Gaussian entries, so the 1% tolerance below is more than 6 standard errors.
"""

import math
from typing import Any, get_args

import numpy as np
import pytest
import scipy.stats
from initscope.engine.initializers import (
    BIAS_INITS,
    WEIGHT_INITS,
    BiasConstant,
    BiasInit,
    BiasNormal,
    BiasZeros,
    Constant,
    HeNormal,
    HeUniform,
    Identity,
    LecunNormal,
    LecunUniform,
    Normal,
    Ones,
    Orthogonal,
    Sparse,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
    WeightInit,
    XavierNormal,
    XavierUniform,
    Zeros,
    calculate_gain,
    scheme_names,
    truncated_normal_moments,
)
from pydantic import TypeAdapter, ValidationError

FAN_IN, FAN_OUT = 1000, 800
N = FAN_IN * FAN_OUT
RTOL_VAR = 0.01
WEIGHT_ADAPTER: TypeAdapter[Any] = TypeAdapter(WeightInit)
BIAS_ADAPTER: TypeAdapter[Any] = TypeAdapter(BiasInit)


def draw(init: Any, seed: int = 0, dtype: Any = np.float64, shape: tuple[int, int] = (0, 0)):
    fan_in, fan_out = shape if shape != (0, 0) else (FAN_IN, FAN_OUT)
    return init.sample(np.random.default_rng(seed), fan_in, fan_out, dtype)


def example(cls: type[Any]) -> Any:
    """A valid instance of every weight class (Constant needs its value)."""
    return Constant(value=0.25) if cls is Constant else cls()


# ------------------------------------------------------------------------------------------
# calculate_gain (values of torch.nn.init.calculate_gain)


@pytest.mark.parametrize(
    ("nonlinearity", "param", "expected"),
    [
        ("linear", None, 1.0),
        ("identity", None, 1.0),
        ("conv2d", None, 1.0),
        ("conv_transpose3d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 1.6666666666666667),
        ("relu", None, 1.4142135623730951),
        ("relu", 0.5, 1.4142135623730951),  # param ignored
        ("leaky_relu", None, 1.4141428569978354),  # default slope 0.01
        ("leaky_relu", 0.0, 1.4142135623730951),
        ("leaky_relu", 0.2, 1.3867504905630728),
        ("leaky_relu", math.sqrt(5), 0.5773502691896257),  # nn.Linear's default: 1/sqrt(3)
        ("selu", None, 0.75),
    ],
)
def test_calculate_gain_matches_pytorch(nonlinearity: str, param: float | None, expected: float):
    assert calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize(("nonlinearity", "param"), [("softplus", None), ("leaky_relu", True)])
def test_calculate_gain_rejects_unknown_input(nonlinearity: str, param: Any):
    with pytest.raises(ValueError, match=r"nonlinearity|negative_slope"):
        calculate_gain(nonlinearity, param)


# ------------------------------------------------------------------------------------------
# variance(): closed forms from SCIENCE.md, then sampled statistics


VARIANCE_TABLE: list[tuple[Any, float]] = [
    (Normal(), 1.0),
    (Normal(mean=0.5, std=2.0), 4.0),
    (Uniform(), 0.1**2 / 12),
    (Uniform(low=-1.0, high=3.0), 16.0 / 12),
    (XavierNormal(), 2.0 / (FAN_IN + FAN_OUT)),
    (XavierNormal(gain=2.0), 4.0 * 2.0 / (FAN_IN + FAN_OUT)),
    (XavierUniform(gain=5.0 / 3.0), (5.0 / 3.0) ** 2 * 2.0 / (FAN_IN + FAN_OUT)),
    (HeNormal(), 2.0 / FAN_IN),
    (HeNormal(mode="fan_out", nonlinearity="tanh"), (5.0 / 3.0) ** 2 / FAN_OUT),
    (HeNormal(negative_slope=0.2), 2.0 / (1.0 + 0.04) / FAN_IN),
    (HeUniform(), 2.0 / FAN_IN),
    (HeUniform(negative_slope=math.sqrt(5)), 1.0 / (3.0 * FAN_IN)),  # torch nn.Linear default
    (HeUniform(nonlinearity="selu", mode="fan_out"), 0.75**2 / FAN_OUT),
    (LecunNormal(), 1.0 / FAN_IN),
    (LecunUniform(), 1.0 / FAN_IN),
    (TruncatedNormal(), 0.87962566103423978**2),
    (TruncatedNormal(mean=1.0, std=3.0, a=-5.0, b=7.0), (0.87962566103423978 * 3.0) ** 2),
    (VarianceScaling(), 1.0 / FAN_IN),
    (VarianceScaling(scale=2.0, mode="fan_avg"), 2.0 / ((FAN_IN + FAN_OUT) / 2)),
    (VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal"), 3.0 / FAN_OUT),
    (VarianceScaling(scale=0.5, distribution="uniform"), 0.5 / FAN_IN),
    (Orthogonal(), 1.0 / FAN_IN),
    (Orthogonal(gain=2.0), 4.0 / FAN_IN),
    (Sparse(), 0.01**2 * (FAN_IN - 900) / FAN_IN),
    (Sparse(sparsity=0.25, std=0.5), 0.25 * 750 / FAN_IN),
    (Constant(value=3.0), 0.0),
    (Zeros(), 0.0),
    (Ones(), 0.0),
]


@pytest.mark.parametrize(("init", "expected"), VARIANCE_TABLE, ids=repr)
def test_variance_matches_closed_form(init: Any, expected: float):
    assert init.variance(FAN_IN, FAN_OUT) == pytest.approx(expected, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize(("init", "expected"), VARIANCE_TABLE, ids=repr)
def test_sampled_moments_match_variance_and_mean(init: Any, expected: float):
    w = draw(init)
    assert w.shape == (FAN_IN, FAN_OUT)
    var, mean = init.variance(FAN_IN, FAN_OUT), init.entry_mean(FAN_IN, FAN_OUT)
    assert float(np.var(w)) == pytest.approx(var, rel=RTOL_VAR, abs=1e-300)
    # the sample mean is within 6 standard errors of the exact entry mean
    assert abs(float(np.mean(w)) - mean) <= 6.0 * math.sqrt(var / N) + 1e-12


@pytest.mark.parametrize(
    ("init", "bound"),
    [
        (Uniform(low=-1.0, high=3.0), (-1.0, 3.0)),
        (XavierUniform(), (-math.sqrt(6.0 / 1800), math.sqrt(6.0 / 1800))),
        (HeUniform(), (-math.sqrt(6.0 / FAN_IN), math.sqrt(6.0 / FAN_IN))),
        (LecunUniform(), (-math.sqrt(3.0 / FAN_IN), math.sqrt(3.0 / FAN_IN))),
        (
            VarianceScaling(scale=2.0, distribution="uniform"),
            (-math.sqrt(6.0 / FAN_IN), math.sqrt(6.0 / FAN_IN)),
        ),
    ],
    ids=repr,
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_samples_fill_their_bounds(init: Any, bound: tuple[float, float], dtype: Any):
    low, high = bound
    w = draw(init, dtype=dtype).astype(np.float64)
    width = high - low
    slack = 1e-6 * width  # float32 rounding of the bounds
    assert float(w.min()) >= low - slack
    assert float(w.max()) <= high + slack
    # with N entries the extremes sit within a few width/N of the bounds
    assert float(w.min()) <= low + 1e-4 * width
    assert float(w.max()) >= high - 1e-4 * width


def test_normal_draws_the_stated_std_and_mean():
    w = draw(Normal(mean=-2.0, std=0.5))
    assert float(w.std()) == pytest.approx(0.5, rel=RTOL_VAR / 2)
    assert float(w.mean()) == pytest.approx(-2.0, abs=6 * 0.5 / math.sqrt(N))


def test_deterministic_schemes_produce_their_constant():
    assert np.all(draw(Constant(value=-1.5)) == -1.5)
    assert np.all(draw(Zeros()) == 0.0)
    assert np.all(draw(Ones()) == 1.0)
    assert np.linalg.matrix_rank(draw(Ones(), shape=(20, 10))) == 1


# ------------------------------------------------------------------------------------------
# aliases, names, catalogue


@pytest.mark.parametrize("cls", [c for c in WEIGHT_INITS if len(scheme_names(c)) > 1])
def test_aliases_are_the_canonical_scheme(cls: type[Any]):
    canonical, *aliases = scheme_names(cls)
    reference = draw(WEIGHT_ADAPTER.validate_python({"scheme": canonical}), seed=7)
    for alias in aliases:
        parsed = WEIGHT_ADAPTER.validate_python({"scheme": alias})
        assert type(parsed) is cls
        assert parsed.scheme == canonical  # aliases are canonicalised
        assert parsed == cls()
        np.testing.assert_array_equal(draw(parsed, seed=7), reference)


def test_expected_aliases_exist():
    assert scheme_names(XavierNormal) == ("xavier_normal", "glorot_normal")
    assert scheme_names(XavierUniform) == ("xavier_uniform", "glorot_uniform")
    assert scheme_names(HeNormal) == ("he_normal", "kaiming_normal")
    assert scheme_names(HeUniform) == ("he_uniform", "kaiming_uniform")
    assert scheme_names(Identity) == ("identity", "eye")
    assert scheme_names(TruncatedNormal)[0] == "truncated_normal"


def test_catalogue_covers_the_union_once_with_unique_names():
    union_members = get_args(get_args(WeightInit)[0])
    assert set(union_members) == set(WEIGHT_INITS)
    assert len(WEIGHT_INITS) == len(union_members) == 17
    names = [n for cls in WEIGHT_INITS for n in scheme_names(cls)]
    assert len(names) == len(set(names))
    assert set(get_args(get_args(BiasInit)[0])) == set(BIAS_INITS)


@pytest.mark.parametrize("cls", WEIGHT_INITS + BIAS_INITS)
def test_every_class_documents_its_rule(cls: type[Any]):
    assert isinstance(cls.formula, str)
    assert cls.formula
    assert "\n" not in cls.formula
    assert cls.__doc__
    assert not cls.__doc__.startswith(cls.__name__ + "(")  # a real docstring, not the default


@pytest.mark.parametrize(
    ("init", "applicable"),
    [
        (Normal(), True),
        (Normal(mean=0.1), False),
        (Uniform(), True),
        (Uniform(low=0.0, high=1.0), False),
        (TruncatedNormal(), True),
        (TruncatedNormal(a=-1.0, b=3.0), False),
        (XavierNormal(), True),
        (XavierUniform(), True),
        (HeNormal(), True),
        (HeUniform(), True),
        (LecunNormal(), True),
        (LecunUniform(), True),
        (VarianceScaling(), True),
        (Constant(value=1.0), False),
        (Zeros(), False),
        (Ones(), False),
        (Orthogonal(), False),
        (Identity(), False),
        (Sparse(), False),
        (BiasZeros(), True),
        (BiasConstant(value=0.0), True),
        (BiasConstant(value=0.1), False),
        (BiasNormal(std=0.1), True),
        (BiasNormal(std=0.1, mean=1.0), False),
    ],
    ids=repr,
)
def test_theory_applicability(init: Any, applicable: bool):
    assert init.theory_applicable is applicable


# ------------------------------------------------------------------------------------------
# truncated normal (PyTorch trunc_normal_: absolute cut-offs, no variance correction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_truncated_normal_two_std_cut_shrinks_std(dtype: Any):
    init = TruncatedNormal(mean=1.0, std=3.0, a=1.0 - 6.0, b=1.0 + 6.0)
    w = draw(init, dtype=dtype)
    assert w.dtype == np.dtype(dtype)
    assert float(w.min()) >= -5.0
    assert float(w.max()) <= 7.0
    assert float(w.std()) == pytest.approx(0.8796 * 3.0, rel=RTOL_VAR / 2)
    assert float(w.mean()) == pytest.approx(1.0, abs=6 * 3.0 / math.sqrt(N))


def test_truncated_normal_cut_offs_are_absolute():
    # std 10 with the default a, b = -2, 2: nearly flat on [-2, 2], not cut at +-20
    w = draw(TruncatedNormal(std=10.0))
    assert float(np.abs(w).max()) <= 2.0
    assert float(np.abs(w).max()) > 1.999
    assert float(w.var()) == pytest.approx(16.0 / 12.0, rel=RTOL_VAR)


@pytest.mark.parametrize(
    ("mean", "std", "a", "b"),
    [
        (0.0, 1.0, -1.0, 3.0),  # asymmetric, straddles the mean
        (0.5, 2.0, 3.0, 9.0),  # one-sided, in the right tail
        (0.0, 1.0, -6.0, -4.0),  # one-sided, in the far left tail
        (0.0, 1.0, 7.0, 9.0),  # far right tail: Phi(7) rounds to 1 unless mirrored
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_truncated_normal_asymmetric_matches_scipy(
    mean: float, std: float, a: float, b: float, dtype: Any
):
    init = TruncatedNormal(mean=mean, std=std, a=a, b=b)
    ref = scipy.stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    ref_mean, ref_var = float(ref.mean()), float(ref.var())
    assert init.entry_mean(FAN_IN, FAN_OUT) == pytest.approx(ref_mean, rel=1e-9)
    assert init.variance(FAN_IN, FAN_OUT) == pytest.approx(ref_var, rel=1e-9)
    w = draw(init, dtype=dtype)
    assert w.dtype == np.dtype(dtype)
    assert float(w.min()) >= a
    assert float(w.max()) <= b
    assert float(w.var()) == pytest.approx(ref_var, rel=RTOL_VAR)
    assert float(w.mean()) == pytest.approx(ref_mean, abs=6 * math.sqrt(ref_var / N))
    # the whole distribution, not only two moments
    sub = w.ravel()[:20_000].astype(np.float64)
    assert scipy.stats.kstest(sub, ref.cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [(-2.0, 2.0), (-1.0, 3.0), (0.5, 0.6), (4.0, 9.0), (-12.0, -11.0), (25.0, 26.0), (-3.0, 30.0)],
)
def test_truncated_moments_match_scipy(alpha: float, beta: float):
    mean, var = truncated_normal_moments(alpha, beta)
    ref = scipy.stats.truncnorm(alpha, beta)
    ref_mean, ref_var = float(ref.mean()), float(ref.var())
    assert mean == pytest.approx(ref_mean, rel=1e-8, abs=1e-12)
    assert var == pytest.approx(ref_var, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"a": 1.0, "b": 1.0}, "greater than a"),
        ({"a": 2.0, "b": -2.0}, "greater than a"),
        ({"a": 40.0, "b": 50.0}, "std from mean"),
    ],
)
def test_truncated_normal_rejects_bad_intervals(kwargs: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        TruncatedNormal(**kwargs)
    with pytest.raises(ValidationError, match=message):
        WEIGHT_ADAPTER.validate_python({"scheme": "truncated_normal", **kwargs})


# ------------------------------------------------------------------------------------------
# variance scaling (Keras)


@pytest.mark.parametrize(
    ("scale", "mode", "n"),
    [(1.0, "fan_in", FAN_IN), (2.0, "fan_out", FAN_OUT), (1.0, "fan_avg", 900)],
)
def test_variance_scaling_truncated_hits_target(scale: float, mode: Any, n: float):
    init = VarianceScaling(scale=scale, mode=mode)
    std_pre = math.sqrt(scale / n) / 0.87962566103423978
    assert init.std(FAN_IN, FAN_OUT) == pytest.approx(std_pre, rel=1e-15)
    w = draw(init)
    assert float(w.var()) == pytest.approx(scale / n, rel=RTOL_VAR)
    assert float(np.abs(w).max()) <= 2.0 * std_pre
    assert float(np.abs(w).max()) > 1.99 * std_pre


def test_variance_scaling_with_a_scale_whose_std_underflows_gives_zeros():
    """Hypothesis found scale=5e-324: sqrt(scale / n) underflows to 0, and the truncated
    normal divided by it. The limit of the distribution is a point mass at 0."""
    init = VarianceScaling(scale=5e-324)
    assert init.std(FAN_IN, FAN_OUT) == 0.0
    w = draw(init)
    assert w.shape == (FAN_IN, FAN_OUT)
    assert not np.any(w)


def test_variance_scaling_clamps_fan_to_one():
    # Keras: n = max(1, fan); fan_avg of (1, 1) is 1, so Var = scale
    init = VarianceScaling(scale=0.5, mode="fan_avg", distribution="untruncated_normal")
    assert init.variance(1, 1) == pytest.approx(0.5)


def test_variance_scaling_keras_presets():
    # GlorotNormal / LecunNormal / HeNormal presets reach their nominal variance exactly
    glorot = VarianceScaling(scale=1.0, mode="fan_avg")
    he = VarianceScaling(scale=2.0, mode="fan_in")
    assert glorot.variance(300, 100) == pytest.approx(1.0 / 200, rel=1e-12)
    assert he.variance(300, 100) == pytest.approx(2.0 / 300, rel=1e-12)


# ------------------------------------------------------------------------------------------
# orthogonal, identity, sparse


@pytest.mark.parametrize(("fan_in", "fan_out"), [(300, 200), (200, 300), (250, 250)])
@pytest.mark.parametrize("gain", [1.0, 1.5])
def test_orthogonal_has_orthonormal_columns_or_rows(fan_in: int, fan_out: int, gain: float):
    w = draw(Orthogonal(gain=gain), shape=(fan_in, fan_out))
    assert w.shape == (fan_in, fan_out)
    if fan_in >= fan_out:
        np.testing.assert_allclose(w.T @ w, gain**2 * np.eye(fan_out), atol=1e-12)
    if fan_in <= fan_out:
        np.testing.assert_allclose(w @ w.T, gain**2 * np.eye(fan_in), atol=1e-12)
    singular = np.linalg.svd(w, compute_uv=False)
    np.testing.assert_allclose(singular, gain, rtol=1e-12)


def test_orthogonal_follows_pytorch_algorithm():
    # wide case: draw (rows, cols), transpose, QR, fix signs by diag(R), transpose back
    rng = np.random.default_rng(3)
    g = rng.standard_normal((4, 6)).T
    q, r = np.linalg.qr(g)
    expected = 2.0 * (q * np.sign(np.diagonal(r))).T
    np.testing.assert_allclose(draw(Orthogonal(gain=2.0), seed=3, shape=(4, 6)), expected)


def test_orthogonal_float32_is_orthonormal_to_single_precision():
    w = draw(Orthogonal(), dtype=np.float32, shape=(128, 64))
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.T @ w, np.eye(64), atol=1e-5)


@pytest.mark.parametrize(("fan_in", "fan_out"), [(5, 3), (3, 5), (4, 4)])
def test_identity_is_padded_and_scaled(fan_in: int, fan_out: int):
    init = Identity(gain=-2.0)
    w = draw(init, shape=(fan_in, fan_out))
    expected = np.zeros((fan_in, fan_out))
    for i in range(min(fan_in, fan_out)):
        expected[i, i] = -2.0
    np.testing.assert_array_equal(w, expected)
    assert init.variance(fan_in, fan_out) == pytest.approx(float(np.var(w)), rel=1e-12)
    assert init.entry_mean(fan_in, fan_out) == pytest.approx(float(np.mean(w)), rel=1e-12)


@pytest.mark.parametrize(
    ("sparsity", "std", "k"), [(0.9, 0.01, 900), (0.3333, 2.0, 334), (0.0, 0.1, 0)]
)
def test_sparse_zero_count_per_column(sparsity: float, std: float, k: int):
    init = Sparse(sparsity=sparsity, std=std)
    w = draw(init)
    zeros_per_column = np.count_nonzero(w == 0.0, axis=0)
    assert init.zeros_per_column(FAN_IN) == k
    np.testing.assert_array_equal(zeros_per_column, np.full(FAN_OUT, k))
    nonzero = w[w != 0.0]
    assert nonzero.size == (FAN_IN - k) * FAN_OUT
    assert float(nonzero.std()) == pytest.approx(std, rel=RTOL_VAR)
    if k:
        # zero positions are drawn independently per column, not one shared pattern
        patterns = {tuple(np.flatnonzero(w[:, j] == 0.0)) for j in range(20)}
        assert len(patterns) == 20


# ------------------------------------------------------------------------------------------
# dtypes, determinism, RNG hygiene


@pytest.mark.parametrize("cls", WEIGHT_INITS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.dtype(np.float16)])
def test_weight_dtype_and_shape_honoured(cls: type[Any], dtype: Any):
    w = draw(example(cls), dtype=dtype, shape=(64, 48))
    assert w.dtype == np.dtype(dtype)
    assert w.shape == (64, 48)
    assert np.all(np.isfinite(w))


# Every class at its defaults, then the parameters that reach other code paths: a shift (mean,
# low), a gain, a truncation, each VarianceScaling distribution, a sparsity with zeros.
ONE_NETWORK_INITS = [example(cls) for cls in WEIGHT_INITS] + [
    Normal(mean=0.3, std=2.0),
    Uniform(low=-0.2, high=0.7),
    TruncatedNormal(mean=1.0, std=3.0, a=-5.0, b=7.0),
    VarianceScaling(scale=2.0, distribution="untruncated_normal"),
    VarianceScaling(scale=0.5, distribution="uniform"),
    Orthogonal(gain=1.7),
    Identity(gain=-0.3),
    Sparse(sparsity=0.25, std=0.5),
]


@pytest.mark.parametrize("init", ONE_NETWORK_INITS, ids=repr)
@pytest.mark.parametrize("shape", [(64, 48), (48, 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_one_seed_draws_one_network_in_every_dtype(init: Any, shape: tuple[int, int], dtype: Any):
    """Issue 12: the draw does not depend on the dtype. Every random quantity is drawn in
    float64 and cast, so the narrow draw is the float64 one rounded, bit for bit (before,
    float32 drew natively with NumPy's float32 kernels: another network)."""
    narrow = draw(init, 7, dtype, shape)
    assert narrow.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(narrow, draw(init, 7, np.float64, shape).astype(dtype))


@pytest.mark.parametrize(
    "bias",
    [BiasZeros(), BiasConstant(value=0.3), BiasNormal(std=0.5), BiasNormal(mean=1.0, std=2.0)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_one_seed_draws_one_bias_in_every_dtype(bias: Any, dtype: Any):
    narrow = bias.sample(np.random.default_rng(7), 100, dtype)
    wide = bias.sample(np.random.default_rng(7), 100, np.float64)
    assert narrow.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(narrow, wide.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("cls", WEIGHT_INITS)
def test_a_draw_leaves_the_generator_in_the_same_state_in_every_dtype(cls: type[Any], dtype: Any):
    """The next layer's draws (the bias after W) do not depend on the dtype either."""
    rng = np.random.default_rng(3)
    example(cls).sample(rng, 32, 16, dtype)
    reference = np.random.default_rng(3)
    example(cls).sample(reference, 32, 16, np.float64)
    assert rng.bit_generator.state == reference.bit_generator.state


@pytest.mark.parametrize("cls", WEIGHT_INITS)
def test_same_seed_same_weights(cls: type[Any]):
    init = example(cls)
    for dtype in (np.float32, np.float64):
        np.testing.assert_array_equal(
            draw(init, 11, dtype, (64, 48)), draw(init, 11, dtype, (64, 48))
        )


@pytest.mark.parametrize(
    "cls", [c for c in WEIGHT_INITS if c not in (Constant, Zeros, Ones, Identity)]
)
def test_different_seeds_differ(cls: type[Any]):
    assert not np.array_equal(draw(cls(), 1, shape=(64, 48)), draw(cls(), 2, shape=(64, 48)))


def test_sampling_never_touches_the_global_rng():
    before = np.random.get_state(legacy=False)  # noqa: NPY002 (the legacy global RNG)
    for cls in WEIGHT_INITS:
        draw(example(cls), shape=(32, 16))
    for bias in (BiasZeros(), BiasConstant(value=1.0), BiasNormal(std=1.0)):
        bias.sample(np.random.default_rng(0), 16, np.float32)
    after = np.random.get_state(legacy=False)  # noqa: NPY002
    np.testing.assert_array_equal(before["state"]["key"], after["state"]["key"])
    assert before["state"]["pos"] == after["state"]["pos"]


@pytest.mark.parametrize("dtype", [np.int32, np.complex128, np.bool_])
def test_non_float_dtype_is_refused(dtype: Any):
    with pytest.raises(TypeError, match="floating"):
        draw(Normal(), dtype=dtype, shape=(4, 4))


@pytest.mark.parametrize(("fan_in", "fan_out"), [(0, 5), (5, 0), (-1, 3)])
def test_empty_layers_are_refused(fan_in: int, fan_out: int):
    with pytest.raises(ValueError, match="fans must be"):
        Normal().sample(np.random.default_rng(0), fan_in, fan_out, np.float64)


# ------------------------------------------------------------------------------------------
# bias initialisers


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_initialisers(dtype: Any):
    rng = np.random.default_rng(0)
    zeros = BiasZeros().sample(rng, 10, dtype)
    const = BiasConstant(value=0.3).sample(rng, 10, dtype)
    normal = BiasNormal(mean=1.0, std=0.5).sample(rng, 200_000, dtype)
    assert zeros.dtype == const.dtype == normal.dtype == np.dtype(dtype)
    assert zeros.shape == const.shape == (10,)
    assert np.all(zeros == 0.0)
    assert np.all(const == np.asarray(0.3, dtype=dtype))
    assert BiasZeros().variance() == BiasConstant(value=0.3).variance() == 0.0
    assert BiasNormal(std=0.5).variance() == 0.25
    assert float(normal.var()) == pytest.approx(0.25, rel=0.02)
    assert float(normal.mean()) == pytest.approx(1.0, abs=6 * 0.5 / math.sqrt(200_000))


def test_bias_schema():
    assert isinstance(BIAS_ADAPTER.validate_python({"scheme": "zeros"}), BiasZeros)
    assert BIAS_ADAPTER.validate_python({"scheme": "normal", "std": 0.05}) == BiasNormal(std=0.05)
    with pytest.raises(ValidationError, match="std"):
        BIAS_ADAPTER.validate_python({"scheme": "normal"})  # std has no default
    with pytest.raises(ValidationError, match="greater than 0"):
        BIAS_ADAPTER.validate_python({"scheme": "normal", "std": 0.0})
    with pytest.raises(ValidationError, match="value"):
        BIAS_ADAPTER.validate_python({"scheme": "constant"})


# ------------------------------------------------------------------------------------------
# schema validation (what the API turns into 422s)


def test_glorot_normal_parses_to_xavier_normal():
    parsed = WEIGHT_ADAPTER.validate_python({"scheme": "glorot_normal", "gain": 2})
    assert isinstance(parsed, XavierNormal)
    assert parsed.gain == 2.0
    assert WEIGHT_ADAPTER.dump_python(parsed) == {"scheme": "xavier_normal", "gain": 2.0}


def test_uniform_low_above_high_is_refused():
    with pytest.raises(ValidationError, match=r"high \(0.0\) must be greater than low"):
        WEIGHT_ADAPTER.validate_python({"scheme": "uniform", "low": 1, "high": 0})
    with pytest.raises(ValueError, match="must be greater than low"):
        Uniform(low=1.0, high=0.0)


def test_typo_key_is_refused():
    with pytest.raises(ValidationError) as info:
        WEIGHT_ADAPTER.validate_python({"scheme": "normal", "sdt": 0.1})
    [error] = info.value.errors()
    assert error["loc"][-1] == "sdt"
    assert error["type"] == "unexpected_keyword_argument"


def test_unknown_scheme_lists_expected_tags():
    with pytest.raises(ValidationError) as info:
        WEIGHT_ADAPTER.validate_python({"scheme": "xavier"})
    [error] = info.value.errors()
    assert error["type"] == "union_tag_invalid"
    for cls in WEIGHT_INITS:
        for name in scheme_names(cls):
            assert f"'{name}'" in error["ctx"]["expected_tags"]


@pytest.mark.parametrize(
    "payload",
    [
        {"scheme": "normal", "std": 0.0},
        {"scheme": "normal", "std": -1.0},
        {"scheme": "normal", "mean": float("nan")},
        {"scheme": "constant"},
        {"scheme": "constant", "value": float("inf")},
        {"scheme": "sparse", "sparsity": 1.0},
        {"scheme": "sparse", "sparsity": -0.1},
        {"scheme": "he_normal", "nonlinearity": "gelu"},
        {"scheme": "he_uniform", "mode": "fan_avg"},
        {"scheme": "variance_scaling", "scale": 0.0},
        {"scheme": "variance_scaling", "distribution": "normal"},
        {"scheme": "orthogonal", "gain": 0.0},
        {"sdt": 1.0},
    ],
    ids=repr,
)
def test_invalid_payloads_are_refused(payload: dict[str, Any]):
    with pytest.raises(ValidationError):
        WEIGHT_ADAPTER.validate_python(payload)


def test_valid_payload_round_trips():
    payload = {
        "scheme": "variance_scaling",
        "scale": 2.0,
        "mode": "fan_avg",
        "distribution": "uniform",
    }
    parsed = WEIGHT_ADAPTER.validate_python(payload)
    assert parsed == VarianceScaling(scale=2.0, mode="fan_avg", distribution="uniform")
    assert WEIGHT_ADAPTER.dump_python(parsed) == payload
    assert WEIGHT_ADAPTER.validate_json(WEIGHT_ADAPTER.dump_json(parsed)) == parsed


def test_json_schema_has_discriminator_and_forbids_extras():
    schema = WEIGHT_ADAPTER.json_schema()
    mapping = schema["discriminator"]["mapping"]
    assert mapping["glorot_uniform"] == mapping["xavier_uniform"]
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())
