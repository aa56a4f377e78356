"""The input-output Jacobian spectrum (Pennington, Schoenholz & Ganguli 2017, arXiv:1711.04735).

The batched product against finite differences, then the paper's qualitative results at width
128 with fixed seeds: orthogonal weights with tanh near q* = 0 are far more isometric than
Gaussian ones at the same sigma_w^2 = 1, and ReLU's spread grows with depth for either.
The measured values (seed 0, k = 8) are quoted next to each tolerance.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from initscope.engine.analysis import analyze
from initscope.engine.layers import JacobianProduct
from initscope.engine.network import input_stream
from initscope.engine.simulation import analysis_network, make_input, simulate
from initscope.jobs import AnalysisJob
from initscope.results import JacobianSpectrum

from tests.helpers import make_job

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
            {"units": 2, "activation": "sigmoid", "init": "orthogonal"},
        ],
    },
    "input": {"samples": 6},
    "jacobian": {"samples": 2},
    "dtype": "float64",
    "seed": 3,
}

WIDTH = 128
GAUSSIAN_TANH = {"scheme": "normal", "std": 1 / math.sqrt(WIDTH)}  # sigma_w^2 = 1
ORTHOGONAL_TANH = {"scheme": "orthogonal", "gain": 1.0}  # sigma_w^2 = 1
GAUSSIAN_RELU = {"scheme": "he_normal"}  # sigma_w^2 = 2
ORTHOGONAL_RELU = {"scheme": "orthogonal", "gain": math.sqrt(2)}  # sigma_w^2 = 2


def _network_function(job: AnalysisJob, params: list[tuple[np.ndarray, np.ndarray]], x: Any):
    h: Any = np.asarray(x, dtype=np.float64)
    for spec, (w, b) in zip(job.layers, params, strict=True):
        h = spec.activation.forward(h @ w + b)
    return h


def _reference(job: AnalysisJob) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    x = make_input(job, input_stream(job.seed))
    params = [(b.dense.w.value, b.dense.b.value) for b in analysis_network(job).blocks]
    return x, params


def _spectrum(activation: str, init: dict[str, Any], depth: int, std: float) -> JacobianSpectrum:
    job = make_job(
        {
            "network": {
                "input_dim": WIDTH,
                "depth": depth,
                "width": WIDTH,
                "activation": activation,
                "init": init,
            },
            "input": {"samples": 256, "distribution": {"name": "normal", "std": std}},
            "jacobian": {"samples": 8},
            "statistics": {"effective_rank": False},
            "dtype": "float64",
            "seed": 0,
        }
    )
    jacobian = simulate(job).jacobian
    assert jacobian is not None
    return jacobian


def _relative_spread(spectrum: JacobianSpectrum) -> float:
    """Var(s^2) / mean(s^2)^2: the spread, free of the overall scale."""
    assert spectrum.variance_squared is not None
    assert spectrum.mean_squared_singular_value is not None
    return spectrum.variance_squared / spectrum.mean_squared_singular_value**2


def test_batched_product_matches_finite_differences() -> None:
    job = make_job(TINY)
    x, params = _reference(job)
    k = job.jacobian_samples
    kept = []
    h = x
    for spec, (w, b) in zip(job.layers, params, strict=True):
        a = h @ w + b
        h = spec.activation.forward(a)
        kept.append((w, spec.activation.derivative(a, h)))
    product = JacobianProduct(k)
    for w, d in kept:
        product.matmul(w)
        product.scale(d, per_sample=True)
    batched = product.result()
    assert batched.shape == (k, 3, 2)

    eps = 1e-6
    for i in range(k):
        numeric = np.zeros((3, 2))
        for p in range(3):
            step = np.zeros(3)
            step[p] = eps
            plus = _network_function(job, params, x[i] + step)
            minus = _network_function(job, params, x[i] - step)
            numeric[p] = (plus - minus) / (2 * eps)  # J[p, q] = d h_L[q] / d x[p]
        np.testing.assert_allclose(batched[i], numeric, rtol=1e-7, atol=1e-10)

    # The simulation's own spectrum is the SVD of the same matrices.
    spectrum = simulate(job).jacobian
    assert spectrum is not None
    s = np.linalg.svd(batched, compute_uv=False)
    assert spectrum.samples == k
    assert spectrum.singular_values == 2
    assert spectrum.max == pytest.approx(s.max(), rel=1e-12)
    assert spectrum.min == pytest.approx(s.min(), rel=1e-12)
    assert spectrum.mean_squared_singular_value == pytest.approx(np.mean(s**2), rel=1e-12)
    assert spectrum.variance_squared == pytest.approx(np.var(s**2), rel=1e-9)
    assert spectrum.zero == spectrum.excluded_samples == 0
    assert spectrum.log10_histogram.total == s.size
    assert len(spectrum.log10_histogram.counts) == 30


def test_jacobian_is_off_unless_asked_for() -> None:
    body = {key: value for key, value in TINY.items() if key != "jacobian"}
    job = make_job(body)
    assert job.jacobian_samples == 0
    assert job.cost == job.macs
    assert simulate(job).jacobian is None


def test_orthogonal_tanh_is_far_more_isometric_than_gaussian() -> None:
    # tanh, sigma_w^2 = 1, sigma_b = 0, q^0 = 0.01: critical (chi_1 -> 1 as q -> q* = 0).
    gaussian = _spectrum("tanh", GAUSSIAN_TANH, depth=16, std=0.1)
    orthogonal = _spectrum("tanh", ORTHOGONAL_TANH, depth=16, std=0.1)
    # Measured: Var(s^2) 6.9 (Gaussian) vs 0.0052 (orthogonal); s in [0, 4.6] vs [0.65, 0.95].
    assert gaussian.variance_squared is not None
    assert orthogonal.variance_squared is not None
    assert orthogonal.variance_squared < gaussian.variance_squared / 100
    assert orthogonal.min is not None
    assert orthogonal.max is not None
    assert gaussian.min is not None
    assert gaussian.max is not None
    assert orthogonal.max / orthogonal.min < 2
    assert gaussian.min < 1e-3 * gaussian.max
    assert orthogonal.zero == 0  # full rank
    # The first moment does not tell them apart: both are mean-field's prod chi_1 ~ 0.76.
    for spectrum in (gaussian, orthogonal):
        assert spectrum.mean_squared_singular_value == pytest.approx(0.76, rel=0.15)


def test_mean_squared_singular_value_is_the_product_of_chi_1() -> None:
    # Mean field: mean(s^2) = (N_L / min(N_0, N_L)) prod_l sigma_w^2 E[phi'(a_l)^2]. With
    # orthogonal weights only the D's fluctuate: measured 0.779 vs 0.761 (2 %).
    job = make_job(
        {
            "network": {
                "input_dim": WIDTH,
                "depth": 16,
                "width": WIDTH,
                "activation": "tanh",
                "init": ORTHOGONAL_TANH,
            },
            "input": {"samples": 256, "distribution": {"name": "normal", "std": 0.1}},
            "jacobian": {"samples": 8},
            "dtype": "float64",
        }
    )
    sim = simulate(job)
    assert sim.jacobian is not None
    chi = [layer.sigma_w2 * (layer.mean_derivative_sq or 0.0) for layer in sim.layers]
    assert sim.jacobian.mean_squared_singular_value == pytest.approx(math.prod(chi), rel=0.05)


@pytest.mark.parametrize("init", [GAUSSIAN_RELU, ORTHOGONAL_RELU], ids=["gaussian", "orthogonal"])
def test_relu_spread_grows_with_depth_either_way(init: dict[str, Any]) -> None:
    # Var(s^2) / mean(s^2)^2 grows ~ linearly in L for ReLU, Gaussian or orthogonal.
    # Measured depth 4 -> 16: Gaussian 8.7 -> 39, orthogonal 4.8 -> 18.
    shallow = _spectrum("relu", init, depth=4, std=1.0)
    deep = _spectrum("relu", init, depth=16, std=1.0)
    assert _relative_spread(deep) > 2.5 * _relative_spread(shallow)
    # ReLU zeroes about half of each D: J is rank-deficient, those s are counted apart.
    assert deep.zero > 0
    assert deep.log10_histogram.total + deep.zero == deep.samples * deep.singular_values


def test_relu_gaussian_spreads_more_than_orthogonal_at_depth() -> None:
    gaussian = _spectrum("relu", GAUSSIAN_RELU, depth=16, std=1.0)
    orthogonal = _spectrum("relu", ORTHOGONAL_RELU, depth=16, std=1.0)
    assert _relative_spread(gaussian) > 1.5 * _relative_spread(orthogonal)  # 39 vs 18


def test_overflowing_jacobian_is_excluded_and_counted() -> None:
    # std 1e4 linear layers of 4 units: J ~ 1e40 per entry overflows float32.
    job = make_job(
        {
            "network": {
                "input_dim": 4,
                "depth": 10,
                "width": 4,
                "activation": "linear",
                "init": {"scheme": "normal", "std": 1e4},
            },
            "input": {"samples": 5},
            "jacobian": {"samples": 3},
            "dtype": "float32",
        }
    )
    spectrum = simulate(job).jacobian
    assert spectrum is not None
    assert spectrum.excluded_samples == 3
    assert spectrum.mean_squared_singular_value is None
    assert spectrum.variance_squared is None
    assert spectrum.min is None
    assert spectrum.max is None
    assert spectrum.log10_histogram.total == 0


def test_jacobian_samples_are_capped_by_the_input_rows() -> None:
    job = make_job({**TINY, "input": {"samples": 1}, "jacobian": {"samples": 5}})
    assert job.jacobian_count == 1
    spectrum = simulate(job).jacobian
    assert spectrum is not None
    assert spectrum.samples == 1


def test_cost_counts_the_jacobian() -> None:
    job = make_job({**TINY, "jacobian": {"samples": 4}})
    n0, widths = 3, [3, 4, 5, 2]
    product = 4 * sum(n0 * a * b for a, b in itertools.pairwise(widths))
    assert job.jacobian_macs == product + 4 * n0 * 2 * 2
    assert job.cost == job.macs + job.jacobian_macs
    assert job.flops == 6 * job.macs + 2 * job.jacobian_macs


def _shorthand(**network: Any) -> dict[str, Any]:
    base = {"input_dim": 8, "depth": 3, "width": 8, "activation": "tanh", "init": "orthogonal"}
    return {"network": {**base, **network}}


def test_api_reports_the_spectrum(client: TestClient) -> None:
    body = {**_shorthand(), "input": {"samples": 16}, "jacobian": {"samples": 4}}
    response = client.post("/analyze", json=body)
    assert response.status_code == 200, response.text
    jacobian = response.json()["jacobian"]
    assert jacobian["samples"] == 4
    assert jacobian["singular_values"] == 8
    assert 0 < jacobian["min"] <= jacobian["max"]
    histogram = jacobian["log10_histogram"]
    assert len(histogram["counts"]) == 30
    assert sum(histogram["counts"]) + jacobian["zero"] == 4 * 8

    plain = client.post("/analyze", json={**_shorthand(), "input": {"samples": 16}})
    assert plain.status_code == 200
    assert plain.json()["jacobian"] is None


@pytest.mark.parametrize("samples", [0, 65, 2.5])
def test_api_bounds_the_jacobian_samples(client: TestClient, samples: Any) -> None:
    body = {**_shorthand(), "jacobian": {"samples": samples}}
    response = client.post("/analyze", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][:3] == ["body", "jacobian", "samples"]


def test_budget_refuses_a_too_large_jacobian(client: TestClient) -> None:
    # The pass is 64 x 10 x 512^2 = 1.7e8 multiply-adds, within the test settings' 2e8; the
    # Jacobian of 64 samples adds 64 x 10 x 512^3 + 64 x 512^3 = 9.4e10.
    network = _shorthand(input_dim=512, width=512, depth=10)
    body = {**network, "input": {"samples": 64}, "jacobian": {"samples": 64}, "recommend": False}
    response = client.post("/analyze", json=body)
    assert response.status_code == 422
    codes = {e["type"]: e for e in response.json()["errors"]}
    assert set(codes) == {"compute_budget"}
    message = codes["compute_budget"]["msg"]
    assert "Jacobian spectrum 9.45e+10" in message
    assert "limit is 2e+08" in message
    assert "64 x" in message
    without = client.post("/analyze", json={**body, "jacobian": None})
    assert without.status_code == 200


def test_analyze_meta_counts_the_jacobian_flops() -> None:
    job = make_job(TINY)
    assert analyze(job).meta.flops == 6 * job.macs + 2 * job.jacobian_macs
