"""The simulation's numbers against independent computations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from initscope.engine.analysis import analyze
from initscope.engine.network import gradient_stream, input_stream
from initscope.engine.simulation import analysis_network, make_input, make_upstream, simulate
from initscope.engine.statistics import data_range, effective_rank, histogram, summarise
from initscope.jobs import AnalysisJob

from tests.helpers import make_job

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TINY: dict[str, Any] = {
    "network": {
        "input_dim": 3,
        "layers": [
            {
                "units": 4,
                "activation": "tanh",
                "init": "xavier_normal",
                "bias": {"scheme": "normal", "std": 0.3},
            },
            {"units": 5, "activation": "gelu", "init": {"scheme": "normal", "std": 0.7}},
            {
                "units": 3,
                "activation": {"name": "elu", "alpha": 0.5},
                "init": "he_uniform",
                "bias": {"scheme": "constant", "value": 0.1},
            },
            {"units": 2, "activation": "sigmoid", "init": "orthogonal"},
        ],
    },
    "input": {"samples": 6},
    "dtype": "float64",
    "seed": 3,
}


def _reference(
    job: AnalysisJob,
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    x = make_input(job, input_stream(job.seed))
    params = [(b.dense.w.value, b.dense.b.value) for b in analysis_network(job).blocks]
    g = make_upstream(job, gradient_stream(job.seed))
    return x, params, g


def _loss_from(
    job: AnalysisJob,
    params: list[tuple[np.ndarray, np.ndarray]],
    g: np.ndarray,
    start: int,
    h: np.ndarray,
) -> float:
    """L = sum(g * h_L), running the network from layer ``start`` (0-based) on ``h``."""
    for spec, (w, b) in list(zip(job.layers, params, strict=True))[start:]:
        h = spec.activation.forward(h @ w + b)
    return float(np.sum(g * h))


def test_backprop_matches_finite_differences() -> None:
    job = make_job(TINY)
    sim = simulate(job)
    x, params, g = _reference(job)
    eps = 1e-6
    n = job.samples

    # dL/dW for every layer, entry by entry, by central differences.
    h_inputs = [x]
    for spec, (w, b) in zip(job.layers, params, strict=True):
        h_inputs.append(spec.activation.forward(h_inputs[-1] @ w + b))
    for i, layer in enumerate(sim.layers):
        w, b = params[i]
        numeric = np.zeros_like(w)
        for idx in np.ndindex(*w.shape):
            for sign in (1, -1):
                wp = w.copy()
                wp[idx] += sign * eps
                trial = [*params[:i], (wp, b), *params[i + 1 :]]
                numeric[idx] += sign * _loss_from(job, trial, g, 0, x)
        numeric /= 2 * eps
        assert layer.gradients.weight_grad_norm == pytest.approx(
            np.linalg.norm(numeric) / n, rel=1e-6
        )
        # dL/dh_i for the layer's output, by perturbing h_i and running the rest.
        h_out = h_inputs[i + 1]
        dh = np.zeros_like(h_out)
        for idx in np.ndindex(*h_out.shape):
            for sign in (1, -1):
                hp = h_out.copy()
                hp[idx] += sign * eps
                dh[idx] += sign * _loss_from(job, params, g, i + 1, hp)
        dh /= 2 * eps
        assert layer.gradients.output_grad_rms == pytest.approx(
            float(np.sqrt(np.mean(dh**2))), rel=1e-6
        )


def test_forward_statistics_match_a_reference_forward() -> None:
    job = make_job(TINY)
    sim = simulate(job)
    x, params, _ = _reference(job)
    h = x
    for layer, spec, (w, b) in zip(sim.layers, job.layers, params, strict=True):
        a = h @ w + b
        h = spec.activation.forward(a)
        d = spec.activation.derivative(a, h)
        assert layer.activations.mean == pytest.approx(h.mean(), rel=1e-12)
        assert layer.activations.std == pytest.approx(h.std(), rel=1e-12)
        assert layer.activations.min == h.min()
        assert layer.activations.max == h.max()
        assert layer.preactivations.mean == pytest.approx(a.mean(), rel=1e-12)
        assert layer.mean_derivative_sq == pytest.approx(np.mean(d**2), rel=1e-12)
        assert layer.sigma_w2 == pytest.approx(spec.init.variance(*w.shape) * w.shape[0])


def test_same_seed_same_numbers_and_other_seed_differs() -> None:
    first = analyze(make_job(TINY))
    again = analyze(make_job(TINY))
    other = analyze(make_job({**TINY, "seed": 4}))
    assert first.simulation == again.simulation
    assert first.diagnosis == again.diagnosis
    assert first.simulation != other.simulation


def test_input_and_upstream_gradient_do_not_depend_on_the_network() -> None:
    """Two networks under one seed see the same data: the basis of side-by-side comparison."""
    a = make_job(TINY)
    b = make_job(
        {
            **TINY,
            "network": {
                "input_dim": 3,
                "depth": 2,
                "width": 2,
                "activation": "relu",
                "init": "he_normal",
            },
        }
    )
    xa = make_input(a, input_stream(a.seed))
    xb = make_input(b, input_stream(b.seed))
    np.testing.assert_array_equal(xa, xb)
    ga = make_upstream(a, gradient_stream(a.seed))
    gb = make_upstream(b, gradient_stream(b.seed))
    np.testing.assert_array_equal(ga, gb)


@pytest.mark.parametrize(
    "distribution",
    [
        {"name": "normal", "mean": 0.3, "std": 2.0},
        {"name": "uniform", "low": -0.5, "high": 1.5},
    ],
)
def test_one_seed_draws_one_input_and_upstream_in_every_dtype(
    distribution: dict[str, Any],
) -> None:
    """Issue 12: the input and dL/dh_L of a float32 analysis are the float64 ones rounded."""
    body = {**TINY, "input": {"samples": 50, "distribution": distribution}}
    wide = make_job({**body, "dtype": "float64"})
    narrow = make_job({**body, "dtype": "float32"})
    x = make_input(narrow, input_stream(narrow.seed))
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, make_input(wide, input_stream(wide.seed)).astype(np.float32))
    g = make_upstream(narrow, gradient_stream(narrow.seed))
    assert g.dtype == np.float32
    np.testing.assert_array_equal(
        g, make_upstream(wide, gradient_stream(wide.seed)).astype(np.float32)
    )
    for block32, block64 in zip(
        analysis_network(narrow).blocks, analysis_network(wide).blocks, strict=True
    ):
        for p32, p64 in zip(block32.parameters(), block64.parameters(), strict=True):
            np.testing.assert_array_equal(p32.value, p64.value.astype(np.float32))


# The README's first request (its histogram aside): 5 sigmoid layers of 100, weights N(0, 1).
SIGMOID_STD_1: dict[str, Any] = json.loads((EXAMPLES / "analyze-sigmoid-std1.json").read_text())


def test_float32_and_float64_analyse_one_network() -> None:
    """Issue 12's example (the README's first request: 5 sigmoid layers of 100, weights
    N(0, 1), 1000 normal samples, seed 0). Before the fix float32 drew its own network: layer
    1's output-gradient RMS, relative to the last layer's, was 0.823 in float32 and 0.875 in
    float64 (0.824 and 0.875 absolute). Now both dtypes analyse one network, and differ only by
    float32's rounding (measured: below 1e-7 relative)."""
    single = simulate(make_job({**SIGMOID_STD_1, "dtype": "float32"}))
    double = simulate(make_job({**SIGMOID_STD_1, "dtype": "float64"}))
    assert single.input_rms == pytest.approx(double.input_rms, rel=1e-6)
    for s, d in zip(single.layers, double.layers, strict=True):
        assert s.gradients.output_grad_rms == pytest.approx(d.gradients.output_grad_rms, rel=1e-4)
        assert s.gradients.relative_to_last == pytest.approx(d.gradients.relative_to_last, rel=1e-4)
        assert s.activations.std == pytest.approx(d.activations.std, rel=1e-4)
    assert double.layers[0].gradients.relative_to_last == pytest.approx(0.8750, abs=5e-5)
    assert single.layers[0].gradients.relative_to_last == pytest.approx(0.8750, abs=5e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_histogram_accounts_for_every_value(dtype: str) -> None:
    job = make_job(
        {
            "network": {
                "input_dim": 50,
                "depth": 3,
                "width": 40,
                "activation": "relu",
                "init": {"scheme": "normal", "std": 0.3},
            },
            "input": {"samples": 300},
            "histogram": {"bins": 17, "range": [0.0, 0.5]},
            "dtype": dtype,
        }
    )
    for layer in simulate(job).layers:
        hist = layer.activations.histogram
        assert hist.total == 300 * 40
        assert hist.overflow > 0  # relu outputs exceed 0.5
        assert hist.underflow == 0  # and never go below 0
        assert len(hist.counts) == 17
        assert hist.edges[0] == 0.0
        assert hist.edges[-1] == 0.5


def test_histogram_matches_numpy_inside_the_range() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(10_000)
    x[:5] = [-1.0, 1.0, 0.0, 2.5, -2.5]  # ends and outside
    x[5:26] = np.linspace(-1.0, 1.0, 21)  # every edge, where rounding could misplace a value
    hist = histogram(x, 20, (-1.0, 1.0))
    inside = x[(x >= -1) & (x <= 1)]
    expected, _ = np.histogram(inside, bins=20, range=(-1, 1))
    assert list(hist.counts) == expected.tolist()
    assert hist.underflow == np.count_nonzero(x < -1)
    assert hist.overflow == np.count_nonzero(x > 1)


def test_histogram_default_range_is_each_layers_own_range() -> None:
    job = make_job(
        {
            "network": {
                "input_dim": 5,
                "depth": 2,
                "width": 7,
                "activation": "relu",
                "init": "he_normal",
            },
            "input": {"samples": 40},
        }
    )
    for layer in simulate(job).layers:
        stats = layer.activations
        assert stats.histogram.edges[0] == stats.min
        assert stats.histogram.edges[-1] == pytest.approx(stats.max, rel=1e-15)
        assert stats.histogram.underflow == stats.histogram.overflow == 0


def test_histogram_counts_non_finite_values_apart() -> None:
    x = np.array([0.5, np.nan, np.inf, -np.inf, 2.0, -3.0], dtype=np.float32)
    for summary in (None, summarise(x)):
        hist = histogram(x, 4, (0.0, 1.0), summary)
        assert list(hist.counts) == [0, 0, 1, 0]
        assert (hist.underflow, hist.overflow, hist.non_finite) == (1, 1, 3)


def test_overflow_is_counted_and_located_not_raised() -> None:
    job = make_job(
        {
            "network": {
                "input_dim": 100,
                "depth": 8,
                "width": 100,
                "activation": "linear",
                "init": {"scheme": "normal", "std": 1e4},
            },
            "input": {"samples": 50},
        }
    )
    result = analyze(job)
    first_bad = next(x for x in result.simulation.layers if x.activations.non_finite)
    assert first_bad.index > 1
    assert first_bad.activations.histogram.total == 50 * 100
    assert first_bad.activations.histogram.non_finite == first_bad.activations.non_finite
    assert result.diagnosis.verdict == "non_finite"
    finding = result.diagnosis.findings[0]
    assert finding.layers[0] == first_bad.index
    assert f"layer {first_bad.index}" in finding.message


def test_effective_rank_of_known_spectra() -> None:
    rng = np.random.default_rng(0)
    u = rng.standard_normal((500, 1))
    rank_one = u @ rng.standard_normal((1, 40))
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-6)
    # Orthogonal, equal-norm centred columns: a flat spectrum of 4 -> erank 4.
    q, _ = np.linalg.qr(rng.standard_normal((400, 4)))
    q -= q.mean(axis=0)
    q, _ = np.linalg.qr(q)
    assert effective_rank(q) == pytest.approx(4.0, rel=1e-6)
    assert effective_rank(np.ones((10, 3))) == 0.0
    # Singular values (3, 1): p = (0.75, 0.25) -> exp(H).
    m = np.zeros((4, 2))
    m[0, 0], m[1, 0], m[2, 1], m[3, 1] = (
        3 / np.sqrt(2),
        -3 / np.sqrt(2),
        1 / np.sqrt(2),
        -1 / np.sqrt(2),
    )
    p = np.array([0.75, 0.25])
    assert effective_rank(m) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-9)


def test_effective_rank_is_computed_only_when_asked_for() -> None:
    network = {"input_dim": 8, "depth": 2, "width": 8, "activation": "tanh", "init": "orthogonal"}
    body = {"network": network, "input": {"samples": 50}}
    assert all(layer.effective_rank is None for layer in analyze(make_job(body)).simulation.layers)
    asked = make_job({**body, "statistics": {"effective_rank": True}})
    ranks = [layer.effective_rank for layer in analyze(asked).simulation.layers]
    assert all(rank is not None and 1.0 < rank <= 8.0 for rank in ranks)


def test_constant_init_gives_identical_units_and_rank_one() -> None:
    job = make_job(
        {
            "network": {
                "input_dim": 20,
                "depth": 3,
                "width": 30,
                "activation": "tanh",
                "init": {"scheme": "constant", "value": 0.05},
            },
            "input": {"samples": 200},
            "statistics": {"effective_rank": True},
        }
    )
    result = analyze(job)
    for layer in result.simulation.layers:
        assert layer.distinct_units == 1
        assert layer.effective_rank == pytest.approx(1.0, abs=1e-3)
    assert result.diagnosis.verdict == "symmetric_units"


def test_dead_units_are_units_that_never_pass_gradient() -> None:
    job = make_job(
        {
            "network": {
                "input_dim": 10,
                "layers": [
                    {
                        "units": 50,
                        "activation": "relu",
                        "init": {"scheme": "normal", "std": 0.01},
                        "bias": {"scheme": "constant", "value": -1.0},
                    },
                    {"units": 10, "activation": "relu", "init": "he_normal"},
                ],
            },
            "input": {"samples": 100},
        }
    )
    result = analyze(job)
    assert result.simulation.layers[0].dead_units == 50
    assert result.simulation.layers[0].activations.zero_fraction == 1.0
    assert "dead_units" in {f.code for f in result.diagnosis.findings}


def test_float32_values_are_binned_against_the_reported_float64_edges() -> None:
    """Binning float32 data in float32 would misplace values near edges. The reported edges are
    float64, and every value falls in the bin those edges say (NumPy's own float32 edges would
    differ from the reported ones by rounding)."""
    rng = np.random.default_rng(2)
    x = rng.random(200_000, dtype=np.float32)
    x[:31] = np.linspace(0.0, 1.0, 31).astype(np.float32)  # float32 neighbours of the edges
    hist = histogram(x, 30, (0.0, 1.0))
    expected, edges = np.histogram(x.astype(np.float64), bins=30, range=(0.0, 1.0))
    assert list(hist.counts) == expected.tolist()
    assert hist.edges == tuple(edges.tolist())


def _reference_histogram(x: np.ndarray, edges: np.ndarray) -> tuple[list[int], int, int]:
    """Bin i holds edges[i] <= x < edges[i+1] (the last bin closed), compared in float64."""
    v = x.astype(np.float64)
    index = np.searchsorted(edges, v, side="right") - 1
    index[v == edges[-1]] = len(edges) - 2
    inside = (v >= edges[0]) & (v <= edges[-1])
    counts = np.bincount(index[inside], minlength=len(edges) - 1)
    return (
        counts.tolist(),
        int(np.count_nonzero(v < edges[0])),
        int(np.count_nonzero(v > edges[-1])),
    )


@pytest.mark.parametrize("summarised", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("low", "high", "bins"),
    [
        (0.0, 1.0, 30),
        (-1.0, 1.0, 30),
        (-1.0, 1.0, 7),
        (0.0, 4.2, 1000),
        (-3.7, 0.0, 17),
        (1000.0, 1000.001, 10),
        (-1e-30, 3e-30, 9),
        (2.5, 1e6, 40),
        (-1e30, 1e30, 20),
    ],
)
def test_histogram_agrees_with_exact_comparisons_next_to_every_edge(
    dtype: type[np.floating[Any]], low: float, high: float, bins: int, summarised: bool
) -> None:
    """Values on, and a few representable steps either side of, every edge; zeros, signed
    tiny values and random ones: every value lands where comparing it with the float64 edges
    puts it, however the fast path rounds; with the caller's summary too (``summarised``),
    and then also over the data's own range, where no pass counts the outer values."""
    rng = np.random.default_rng(bins)
    edges = np.linspace(low, high, bins + 1)
    around = [edges.astype(dtype)]
    for direction in (-np.inf, np.inf):
        step = around[0]
        for _ in range(3):
            step = np.nextafter(step, dtype(direction))
            around.append(step)
    tiny = np.array([0.0, -0.0, np.finfo(dtype).smallest_subnormal, -np.finfo(dtype).tiny])
    spread = rng.uniform(low - (high - low) / 4, high + (high - low) / 4, 5000)
    x = np.concatenate([*around, tiny.astype(dtype), spread.astype(dtype)])
    summary = summarise(x) if summarised else None
    hist = histogram(x, bins, (low, high), summary)
    counts, underflow, overflow = _reference_histogram(x, edges)
    assert list(hist.counts) == counts
    assert (hist.underflow, hist.overflow) == (underflow, overflow)
    assert hist.total == x.size
    if summary is not None:  # the range is the data's: every value inside, edges exact
        inner = x[(x >= dtype(low)) & (x <= dtype(high))]
        own = data_range(summarise(inner))
        hist = histogram(inner, bins, own, summarise(inner))
        counts, underflow, overflow = _reference_histogram(inner, np.linspace(*own, bins + 1))
        assert list(hist.counts) == counts
        assert hist.underflow == hist.overflow == underflow == overflow == 0
