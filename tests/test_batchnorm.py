"""Batch norm and dropout per layer: the backward pass against finite differences, the
book's batch-norm figure (a bad init's histograms restored), dropout's effect on the
distributions, the theory withheld, labels, and the request contract."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.engine.analysis import analyze
from initscope.engine.layers import BatchNorm as BatchNormLayer
from initscope.engine.layers import dropout_mask, jacobians
from initscope.engine.network import LayerDropout, Network, gradient_stream, input_stream
from initscope.engine.simulation import analysis_network, make_input, make_upstream, simulate
from initscope.figures.panels import summary
from initscope.http.api import create_app
from initscope.jobs import AnalysisJob, BatchNorm
from initscope.results import Analysis
from initscope.schemas import CompareRequest, to_jobs

from tests.helpers import make_job

EXAMPLES = Path(__file__).resolve().parent.parent / "service" / "initscope" / "examples"

# --- finite differences ------------------------------------------------------------------

# Three layers of a tiny float64 net, every option in play: BN before tanh (gamma, beta set),
# BN after sigmoid followed by dropout, and dropout alone on a softplus layer.
TINY_LAYERS: list[dict[str, Any]] = [
    {
        "units": 5,
        "activation": "tanh",
        "init": {"scheme": "normal", "std": 0.7},
        "bias": {"scheme": "normal", "std": 0.3},
        "batch_norm": {"gamma": 1.3, "beta": -0.2, "eps": 1e-3},
    },
    {
        "units": 4,
        "activation": "sigmoid",
        "init": {"scheme": "normal", "std": 0.9},
        "batch_norm": {"placement": "after", "gamma": 0.8, "beta": 0.1},
        "dropout": 0.3,
    },
    {"units": 3, "activation": "softplus", "init": "xavier_normal", "dropout": 0.5},
]


def tiny_job(layers: list[dict[str, Any]] = TINY_LAYERS) -> AnalysisJob:
    body = {
        "network": {"input_dim": 3, "layers": layers},
        "input": {"samples": 7},
        "dtype": "float64",
        "seed": 11,
    }
    return make_job(body)


def tiny_net(job: AnalysisJob) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], Any]:
    """The input, each layer's (W, b) and the upstream gradient, as :func:`simulate` draws."""
    x = make_input(job, input_stream(job.seed))
    params = [(b.dense.w.value, b.dense.b.value) for b in analysis_network(job).blocks]
    return x, params, make_upstream(job, gradient_stream(job.seed))


def forward(job: AnalysisJob, x: np.ndarray, params: list[Any]) -> tuple[np.ndarray, Network]:
    """The training-mode forward pass of the job's network with the given (W, b)."""
    network = analysis_network(job)
    for block, (w, b) in zip(network.blocks, params, strict=True):
        block.dense.w.value, block.dense.b.value = w, b
    return network.forward(x, "train"), network


def backward(network: Network, g: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """dL/dx and each dL/dW (summed over samples) for L = sum(g * h_L)."""
    dx = network.backward(g.copy())
    grads = [block.dense.w.grad for block in network.blocks]
    assert all(grad is not None for grad in grads)
    return dx, grads  # type: ignore[return-value]


def masks(network: Network) -> list[np.ndarray | None]:
    return [b.dropout.mask if b.dropout is not None else None for b in network.blocks]


def numeric(f: Any, array: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of ``array``."""
    out = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        keep = array[idx]
        array[idx] = keep + step
        up = f()
        array[idx] = keep - step
        down = f()
        array[idx] = keep
        out[idx] = (up - down) / (2 * step)
    return out


def test_backprop_through_batch_norm_and_dropout_matches_finite_differences() -> None:
    job = tiny_job()
    x, params, g = tiny_net(job)

    def loss() -> float:
        return float(np.sum(g * forward(job, x, params)[0]))

    _, network = forward(job, x, params)
    assert network.blocks[0].before is not None
    assert network.blocks[1].after is not None
    mask = masks(network)
    assert mask[1] is not None
    assert mask[2] is not None
    assert (mask[2] == 0).any()  # some units really dropped
    dx, dws = backward(network, g)
    np.testing.assert_allclose(dx, numeric(loss, x), rtol=1e-6, atol=1e-9)
    for dw, (w, _) in zip(dws, params, strict=True):
        np.testing.assert_allclose(dw, numeric(loss, w), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("placement", ["before", "after"])
def test_batch_norm_backward_is_the_papers_formula(placement: str) -> None:
    """dx = (1/N) gamma/sigma (N dy - sum dy - xhat sum(dy xhat)), checked on one BN alone."""
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, size=(6, 4))
    dy = rng.normal(size=(6, 4))
    bn = BatchNorm(placement=placement, gamma=1.7, beta=0.4)  # type: ignore[arg-type]
    layer = BatchNormLayer(bn, 4, x.dtype)
    y = layer.forward(x, "train")
    n = x.shape[0]
    sigma = np.sqrt(x.var(axis=0) + bn.eps)
    xhat = (x - x.mean(axis=0)) / sigma
    np.testing.assert_allclose(y, bn.gamma * xhat + bn.beta, rtol=1e-12)
    expected = (bn.gamma / sigma) / n * (n * dy - dy.sum(0) - xhat * (dy * xhat).sum(0))
    np.testing.assert_allclose(layer.backward(dy.copy()), expected, rtol=1e-10)
    np.testing.assert_allclose(layer.gamma.grad, (dy * xhat).sum(0), rtol=1e-12)  # type: ignore[arg-type]
    np.testing.assert_allclose(layer.beta.grad, dy.sum(0), rtol=1e-12)  # type: ignore[arg-type]

    def loss() -> float:
        return float(np.sum(dy * BatchNormLayer(bn, 4, x.dtype).forward(x, "train")))

    numeric_dx = numeric(loss, x)
    np.testing.assert_allclose(expected, numeric_dx, rtol=1e-6, atol=1e-9)


def test_the_simulation_reports_the_checked_gradients() -> None:
    job = tiny_job()
    x, params, g = tiny_net(job)
    _, network = forward(job, x, params)
    dx, _ = backward(network, g)
    sim = simulate(job)
    assert sim.input_grad_rms == pytest.approx(float(np.sqrt(np.mean(dx**2))), rel=1e-12)
    assert sim.layers[-1].gradients.output_grad_rms == pytest.approx(
        float(np.sqrt(np.mean(g**2))), rel=1e-12
    )


# --- dropout masks -------------------------------------------------------------------------


def test_dropout_keeps_one_minus_rate_and_scales_the_kept_values() -> None:
    rate = 0.3
    f32 = np.dtype("float32")
    mask = dropout_mask(rate, LayerDropout(0, 1).keep(rate, (2000, 100), f32), f32)
    assert mask.dtype == np.float32
    assert np.unique(mask).tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert np.mean(mask > 0) == pytest.approx(0.7, abs=0.005)
    assert mask.mean() == pytest.approx(1.0, abs=0.01)  # E[m] = 1: inverted scaling


def test_higher_rates_drop_a_superset_and_layers_have_their_own_masks() -> None:
    f64 = np.dtype("float64")
    low = dropout_mask(0.2, LayerDropout(5, 2).keep(0.2, (50, 40), f64), f64)
    high = dropout_mask(0.5, LayerDropout(5, 2).keep(0.5, (50, 40), f64), f64)
    assert np.all((high > 0) <= (low > 0))
    other = dropout_mask(0.5, LayerDropout(5, 3).keep(0.5, (50, 40), f64), f64)
    assert not np.array_equal(high, other)


def test_variants_that_differ_only_in_init_share_the_masks() -> None:
    """The masks do not depend on how many draws W and b took (uniform vs orthogonal)."""
    base = {"input_dim": 20, "depth": 3, "width": 30, "activation": "relu", "dropout": 0.4}
    request = CompareRequest.model_validate(
        {
            "base": {**base, "init": "he_uniform"},
            "variants": [{"name": "he"}, {"name": "orth", "init": "orthogonal"}],
            "input": {"samples": 64},
        }
    )
    (_, one), (_, two) = to_jobs(request, Settings())
    for job in (one, two):
        assert job.layers[0].dropout == 0.4
    results = [simulate(one), simulate(two)]
    zeros = [[layer.activations.zero_fraction for layer in r.layers] for r in results]
    assert zeros[0] != zeros[1]  # the networks differ ...
    x, params, _ = tiny_net(one)
    masks_one = masks(forward(one, x, params)[1])
    x, params, _ = tiny_net(two)
    masks_two = masks(forward(two, x, params)[1])
    for a, b in zip(masks_one, masks_two, strict=True):  # ... the masks do not
        assert a is not None
        assert b is not None
        np.testing.assert_array_equal(a, b)


def test_results_are_reproducible_for_a_seed() -> None:
    job = tiny_job()
    assert simulate(job) == simulate(job)


# --- the book's batch-norm figure --------------------------------------------------------


@cache
def compare(name: str) -> dict[str, Analysis]:
    body = json.loads((EXAMPLES / f"{name}.json").read_text())
    jobs = to_jobs(CompareRequest.model_validate(body), Settings())
    return {variant: analyze(job) for variant, job in jobs}


def stds(result: Analysis) -> list[float]:
    return [layer.activations.std or 0.0 for layer in result.simulation.layers]


def test_batch_norm_restores_the_histograms_of_std_001() -> None:
    results = compare("compare-batch-norm")
    plain, normed = results["std=0.01"], results["std=0.01 + BN"]
    assert max(stds(plain)) < 0.03  # collapsed onto 0.5 ...
    assert plain.diagnosis.verdict == "vanishing_gradients"
    assert all(0.18 < s < 0.23 for s in stds(normed))  # ... spread over sigmoid's range
    for layer in normed.simulation.layers:
        counts = np.array(layer.activations.histogram.counts)
        assert np.count_nonzero(counts > 0.01 * counts.sum()) >= 12  # a broad bump
    assert normed.diagnosis.verdict == "healthy"
    decay = normed.gradient_decay.first_to_last
    assert decay is not None
    assert 0.9 < decay < 1.3


def test_batch_norm_undoes_the_saturation_of_std_1() -> None:
    results = compare("compare-batch-norm")
    plain, normed = results["std=1"], results["std=1 + BN"]
    assert min(x.activations.saturated_fraction or 0 for x in plain.simulation.layers) > 0.45
    saturated = [x.activations.saturated_fraction for x in normed.simulation.layers]
    assert all(s is not None and s < 0.01 for s in saturated)
    # With batch norm the weight scale cancels: std 1 and std 0.01 give the same histograms
    # up to the different random weights.
    same = results["std=0.01 + BN"]
    np.testing.assert_allclose(stds(normed), stds(same), rtol=0.02)


def relu_run(std: float, **extra: Any) -> Analysis:
    network = {"input_dim": 100, "depth": 5, "width": 100, "activation": "relu"}
    body = {
        "network": {**network, "init": {"scheme": "normal", "std": std}, **extra},
        "input": {"samples": 1000},
    }
    return analyze(make_job(body))


def test_batch_norm_after_relu_normalises_the_output_the_histogram_shows() -> None:
    plain, before, after = (
        relu_run(0.01),
        relu_run(0.01, batch_norm={}),
        relu_run(0.01, batch_norm={"placement": "after"}),
    )
    assert stds(plain)[-1] < 1e-4  # the signal vanishes layer by layer
    # BN before: phi's inputs are N(0, 1)-like, ReLU's output has std sqrt(1/2 - 1/(2 pi)).
    assert all(abs(s - 0.584) < 0.02 for s in stds(before))
    # BN after: the output itself is normalised (what the histogram shows), mean 0, std 1
    # less eps' share: 1 / sqrt(1 + eps / Var(relu(a))), 0.9985 for layer 1's Var of 0.0034.
    for layer in after.simulation.layers:
        assert layer.activations.std == pytest.approx(1.0, abs=2e-3)
        assert layer.activations.mean == pytest.approx(0.0, abs=1e-4)
        assert layer.activations.min is not None
        assert layer.activations.min < 0
    edges = after.simulation.layers[0].activations.histogram.edges
    assert edges[0] < 0  # the layer's own range, not ReLU's [0, inf)


# --- dropout's effect on the distributions ----------------------------------------------


def test_dropout_zeroes_values_and_grows_the_second_moment_by_one_over_keep() -> None:
    """E[(m v)^2] = E[v^2] / (1 - rate): with He, the RMS grows ~1/sqrt(1 - rate) a layer."""
    results = compare("compare-dropout")
    relu_zeros = results["no dropout"].simulation.layers[0].activations.zero_fraction
    for name, rate in (("no dropout", 0.0), ("dropout 0.2", 0.2), ("dropout 0.5", 0.5)):
        layers = results[name].simulation.layers
        rms = np.array([x.activations.rms or 0.0 for x in layers])
        growth = float(np.exp(np.mean(np.diff(np.log(rms)))))
        assert growth == pytest.approx(1 / np.sqrt(1 - rate), rel=0.05)
        # Layer 1 sees the same input and W in every variant: dropout zeroes a further
        # fraction `rate` of what ReLU passed (100 000 values: binomial noise ~0.0016).
        zeros = layers[0].activations.zero_fraction
        assert zeros == pytest.approx(relu_zeros + (1 - relu_zeros) * rate, abs=0.01)
    assert results["no dropout"].theory is not None
    assert results["no dropout"].theory.applicable


# --- theory, diagnosis and labels --------------------------------------------------------


def test_theory_is_withheld_with_a_note_naming_the_layers() -> None:
    results = compare("compare-batch-norm")
    theory = results["std=1 + BN"].theory
    assert theory is not None
    assert not theory.applicable
    assert not theory.layers
    assert any("layers 1-5: batch norm" in note for note in theory.notes)
    dropped = compare("compare-dropout")["dropout 0.5"].theory
    assert dropped is not None
    assert not dropped.applicable
    assert any("dropout" in note for note in dropped.notes)
    plain = results["std=1"].theory
    assert plain is not None
    assert plain.applicable


def test_the_recommendation_says_batch_norm_makes_the_init_matter_little() -> None:
    results = compare("compare-batch-norm")
    advice = results["std=0.01 + BN"].diagnosis.recommendation
    assert advice is not None
    reason = advice.reason
    assert reason.startswith("Keep it: no finding was raised")
    assert "Batch norm before the activation in every layer" in reason
    assert "Mean-field theory" not in reason  # withheld, so not quoted


def test_labels_mention_batch_norm_and_dropout() -> None:
    results = compare("compare-batch-norm")
    assert summary(results["std=1 + BN"].simulation.layers).endswith(", BN")
    assert "BN" not in summary(results["std=1"].simulation.layers)
    job = tiny_job()
    labels = [spec.extras for spec in job.layers]
    assert labels == [
        "BN(gamma=1.3, beta=-0.2, eps=0.001)",
        "BN after(gamma=0.8, beta=0.1), dropout 0.3",
        "dropout 0.5",
    ]
    assert summary(simulate(job).layers).endswith("mixed BN/dropout")


# --- the contract ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Any:
    with TestClient(create_app(Settings())) as c:
        yield c


SMALL = {"input_dim": 4, "depth": 2, "width": 8, "activation": "relu", "init": "he_normal"}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"batch_norm": {"eps": 0}}, "eps"),
        ({"batch_norm": {"gamma": 1e4}}, "gamma"),
        ({"batch_norm": {"placement": "middle"}}, "placement"),
        ({"batch_norm": {"momentum": 0.1}}, "momentum"),
    ],
)
def test_bad_options_are_a_422_naming_the_field(
    client: Any, patch: dict[str, Any], field: str
) -> None:
    response = client.post("/analyze", json={"network": {**SMALL, **patch}})
    assert response.status_code == 422
    assert field in json.dumps(response.json())


def test_the_response_carries_each_layers_options(client: Any) -> None:
    layers = [
        {"units": 6, "activation": "tanh", "init": "xavier_normal", "batch_norm": {}},
        {"units": 3, "activation": "relu", "init": "he_normal", "dropout": 0.25},
    ]
    response = client.post("/analyze", json={"network": {"input_dim": 4, "layers": layers}})
    assert response.status_code == 200
    out = response.json()["layers"]
    assert out[0]["batch_norm"] == {"placement": "before", "gamma": 1.0, "beta": 0.0, "eps": 1e-5}
    assert out[0]["dropout"] == 0.0
    assert out[1]["batch_norm"] is None
    assert out[1]["dropout"] == 0.25
    assert response.json()["theory"]["applicable"] is False


def test_a_variant_cannot_patch_and_replace_the_network(client: Any) -> None:
    body = {
        "base": SMALL,
        "variants": [
            {"name": "a"},
            {"name": "b", "network": SMALL, "dropout": 0.5},
        ],
    }
    response = client.post("/compare", json=body)
    assert response.status_code == 422
    assert "dropout" in json.dumps(response.json())


def test_a_constant_column_normalises_to_beta_even_with_the_smallest_eps_in_float32() -> None:
    x = np.zeros((5, 2), dtype=np.float32)
    x[:, 1] = np.arange(5)
    layer = BatchNormLayer(BatchNorm(gamma=2.0, beta=0.5, eps=1e-30), 2, x.dtype)
    y = layer.forward(x, "train")
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[:, 0], 0.5)
    np.testing.assert_allclose(y[:, 1], 2.0 * (np.arange(5) - 2) / np.sqrt(2) + 0.5, rtol=1e-6)
    assert np.isfinite(layer.backward(np.ones_like(x))).all()


def test_the_jacobian_with_dropout_is_each_samples_own_derivative() -> None:
    """Without batch norm the samples do not interact: J_i = d h_L(x_i) / d x_i, mask fixed."""
    layers = [{**layer, "batch_norm": None} for layer in TINY_LAYERS]
    job = tiny_job(layers)
    x, params, _ = tiny_net(job)
    _, network = forward(job, x, params)
    batched = jacobians(network, 2)
    for i in range(2):
        for q in range(batched.shape[2]):
            fd = numeric(lambda i=i, q=q: float(forward(job, x, params)[0][i, q]), x)
            np.testing.assert_allclose(batched[i, :, q], fd[i], rtol=1e-6, atol=1e-10)
