"""LSUV (Mishkin & Matas 2015, arXiv:1511.06422): orthogonal pre-init, then per layer
W <- W / sqrt(Var(h)) on the request's own input until |Var(h) - 1| < tol.

Var(h) over all values is the layer's reported activation std squared, so every check reads
the result the client gets. Depth 10, width 100, 1000 samples, seed 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from initscope.engine.activations import Linear
from initscope.engine.analysis import analyze
from initscope.engine.initializers import WEIGHT_INITS, Lsuv, Orthogonal, WeightInit
from initscope.engine.layers import lsuv
from initscope.engine.network import input_stream
from initscope.engine.simulation import analysis_network, make_input, simulate
from initscope.results import Simulation
from pydantic import TypeAdapter, ValidationError

from tests.helpers import make_job

INPUTS: dict[str, dict[str, Any]] = {
    "normal": {"name": "normal", "mean": 0.0, "std": 1.0},
    "uniform": {"name": "uniform", "low": -1.0, "high": 1.0},
}


def _body(
    activation: str,
    init: dict[str, Any],
    distribution: str = "normal",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "network": {
            "input_dim": 100,
            "depth": 10,
            "width": 100,
            "activation": activation,
            "init": init,
        },
        "input": {"samples": 1000, "distribution": INPUTS[distribution]},
        "statistics": {"effective_rank": False},
        "seed": 0,
        **extra,
    }


def _run(activation: str, init: dict[str, Any], distribution: str = "normal", **extra: Any):
    return simulate(make_job(_body(activation, init, distribution, **extra)))


def _variances(sim: Simulation) -> list[float]:
    stds = [layer.activations.std for layer in sim.layers]
    assert all(std is not None for std in stds)
    return [std**2 for std in stds if std is not None]


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
@pytest.mark.parametrize(
    ("activation", "max_iterations"),
    # tanh's output variance is below 1 for any weights: it gets within 0.1 of 1 only by
    # saturating, after ~15 rescalings (see the next test), so it needs more than the default.
    [("relu", 10), ("tanh", 100)],
)
def test_every_layer_reaches_unit_variance(
    activation: str, max_iterations: int, distribution: str
) -> None:
    tol = 0.1
    init = {"scheme": "lsuv", "tol": tol, "max_iterations": max_iterations}
    sim = _run(activation, init, distribution)
    for layer, variance in zip(sim.layers, _variances(sim), strict=True):
        report = layer.lsuv
        assert report is not None
        assert abs(variance - 1.0) < tol
        assert report.converged
        assert report.iterations >= 1
        assert report.scale > 0
        assert report.final_variance == pytest.approx(variance, rel=1e-12)


def test_tanh_is_reported_not_converged_at_the_default_iterations() -> None:
    # Measured: v creeps from 0.39 to 0.864 in 10 rescalings, and tanh saturates on the way.
    sim = _run("tanh", {"scheme": "lsuv"})
    for layer, variance in zip(sim.layers, _variances(sim), strict=True):
        assert layer.lsuv is not None
        assert layer.lsuv.iterations == 10
        assert not layer.lsuv.converged
        assert layer.lsuv.final_variance == pytest.approx(variance, rel=1e-12)
        assert 0.8 < variance < 0.9


def test_tanh_pays_for_unit_variance_with_saturation() -> None:
    sim = _run("tanh", {"scheme": "lsuv", "max_iterations": 100})
    for layer in sim.layers:
        assert layer.lsuv is not None
        assert 10 < layer.lsuv.iterations < 25  # measured 15-16
        assert layer.activations.saturated_fraction is not None
        assert layer.activations.saturated_fraction > 0.5  # measured 0.78


def test_one_iteration_on_a_strongly_nonlinear_layer_is_not_converged() -> None:
    sim = _run("tanh", {"scheme": "lsuv", "tol": 0.05, "max_iterations": 1})
    for layer, variance in zip(sim.layers, _variances(sim), strict=True):
        assert layer.lsuv is not None
        assert layer.lsuv.iterations == 1
        assert not layer.lsuv.converged
        assert layer.lsuv.final_variance == pytest.approx(variance, rel=1e-12)
        assert abs(variance - 1.0) >= 0.05


def test_sigmoid_can_never_converge() -> None:
    # Var(sigmoid(a)) <= 1/4 for any a: every layer uses all its iterations and says so.
    sim = _run("sigmoid", {"scheme": "lsuv", "max_iterations": 5})
    for layer, variance in zip(sim.layers, _variances(sim), strict=True):
        assert layer.lsuv is not None
        assert layer.lsuv.iterations == 5
        assert not layer.lsuv.converged
        assert variance <= 0.25


def test_dead_layer_stops_without_dividing_by_zero() -> None:
    # A bias of -100 keeps every ReLU pre-activation negative: h = 0, Var(h) = 0.
    body = _body("relu", {"scheme": "lsuv"})
    body["network"]["bias"] = {"scheme": "constant", "value": -100.0}
    result = analyze(make_job(body))  # filterwarnings = error: no warning either
    for layer in result.simulation.layers:
        assert layer.lsuv is not None
        assert layer.lsuv.iterations == 0
        assert layer.lsuv.scale == 1.0
        assert layer.lsuv.final_variance == 0.0
        assert not layer.lsuv.converged
        assert layer.sigma_w2 == pytest.approx(Orthogonal().variance(100, 100) * 100, rel=1e-2)


def test_non_finite_output_stops_without_converging() -> None:
    h_prev = np.ones((4, 3))
    h_prev[0, 0] = np.inf
    w = Orthogonal().sample(np.random.default_rng(0), 3, 2)
    before = w.copy()
    a, h, report = lsuv(Lsuv(), Linear(), h_prev, w, np.zeros(2))
    assert report.iterations == 0
    assert report.final_variance is None
    assert not report.converged
    np.testing.assert_array_equal(w, before)
    assert a.shape == h.shape == (4, 2)


def test_reported_scale_and_sigma_w2_describe_the_final_weights() -> None:
    job = make_job(_body("relu", {"scheme": "lsuv"}, dtype="float64"))
    sim = simulate(job)
    h = make_input(job, input_stream(job.seed))
    drawn = analysis_network(job).blocks  # as drawn, before LSUV
    for layer, spec, block in zip(sim.layers, job.layers, drawn, strict=True):
        assert layer.lsuv is not None
        w0, b = block.dense.w.value, block.dense.b.value
        w = w0 * layer.lsuv.scale
        assert layer.sigma_w2 == pytest.approx(100 * np.var(w), rel=1e-9)
        # Not the pre-init's sigma_w^2 = 1: the data decides (measured 1.7 to 3.0).
        assert layer.sigma_w2 != pytest.approx(1.0, rel=0.1)
        h = spec.activation.forward(h @ w + b)
        assert layer.activations.std == pytest.approx(h.std(), rel=1e-9)


def test_same_seed_same_result_and_other_seed_differs() -> None:
    first = _run("relu", {"scheme": "lsuv"})
    again = _run("relu", {"scheme": "lsuv"})
    other = _run("relu", {"scheme": "lsuv"}, seed=1)
    assert first == again
    assert first != other


def test_scheme_defaults_and_bounds() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(WeightInit)
    assert adapter.validate_python({"scheme": "lsuv"}) == Lsuv(tol=0.1, max_iterations=10)
    for bad in (
        {"tol": 0.0},
        {"tol": 1.0},
        {"max_iterations": 0},
        {"max_iterations": 101},
        {"tolerance": 0.1},
    ):
        with pytest.raises(ValidationError):
            adapter.validate_python({"scheme": "lsuv", **bad})
    with pytest.raises(ValueError, match="tol"):
        Lsuv(tol=1.5)
    assert Lsuv in WEIGHT_INITS
    assert not Lsuv().theory_applicable
    assert Lsuv().variance(100, 50) == Orthogonal().variance(100, 50)


def test_pre_init_is_the_orthogonal_draw() -> None:
    for shape in ((6, 4), (4, 6)):
        np.testing.assert_array_equal(
            Lsuv().sample(np.random.default_rng(5), *shape),
            Orthogonal(gain=1.0).sample(np.random.default_rng(5), *shape),
        )


def test_budget_counts_the_rescaling_passes() -> None:
    job = make_job(_body("relu", {"scheme": "lsuv", "max_iterations": 7}))
    assert job.lsuv_macs == 7 * job.macs
    assert job.cost == 8 * job.macs


def test_api_exposes_the_report(client: TestClient) -> None:
    body: dict[str, Any] = {
        "network": {
            "input_dim": 32,
            "depth": 3,
            "width": 32,
            "activation": "relu",
            "init": {"scheme": "lsuv", "tol": 0.05},
        },
        "input": {"samples": 200},
    }
    response = client.post("/analyze", json=body)
    assert response.status_code == 200, response.text
    for layer in response.json()["layers"]:
        assert layer["init"] == "lsuv(tol=0.05, max_iterations=10, target='output')"
        assert layer["lsuv"]["converged"] is True
        assert abs(layer["lsuv"]["final_variance"] - 1) < 0.05
        assert abs(layer["activations"]["std"] ** 2 - 1) < 0.05

    plain = client.post(
        "/analyze", json={**body, "network": {**body["network"], "init": "he_normal"}}
    )
    assert all(layer["lsuv"] is None for layer in plain.json()["layers"])


@pytest.mark.parametrize(
    "init", [{"scheme": "lsuv", "tol": 1}, {"scheme": "lsuv", "max_iterations": 0}]
)
def test_api_refuses_bad_parameters(client: TestClient, init: dict[str, Any]) -> None:
    body = {"network": {"input_dim": 4, "depth": 1, "width": 4, "activation": "relu", "init": init}}
    assert client.post("/analyze", json=body).status_code == 422


def test_catalogue_lists_lsuv(client: TestClient) -> None:
    response = client.get("/initializers")
    assert response.status_code == 200
    [entry] = [x for x in response.json() if x["scheme"] == "lsuv"]
    assert entry["kind"] == "weight"
    assert entry["theory_applicable"] is False
    params = {p["name"]: p for p in entry["parameters"]}
    assert params["tol"]["default"] == 0.1
    assert params["tol"]["constraints"] == {"exclusiveMinimum": 0, "exclusiveMaximum": 1}
    assert params["max_iterations"]["default"] == 10
    assert params["max_iterations"]["constraints"] == {"minimum": 1, "maximum": 100}


def test_preactivation_target_normalises_tanh_without_saturating_it() -> None:
    """The paper's setting (the nonlinearity a layer of its own): Var(a) -> 1, so tanh
    converges at the default 10 iterations and stays out of its flat tails."""
    job = make_job(
        {
            "network": {
                "input_dim": 100,
                "depth": 10,
                "width": 100,
                "activation": "tanh",
                "init": {"scheme": "lsuv", "target": "preactivation"},
            },
            "input": {"samples": 500},
        }
    )
    for layer in simulate(job).layers:
        assert layer.lsuv is not None
        assert layer.lsuv.converged
        pre_std = layer.preactivations.std or 0.0
        assert abs(pre_std**2 - 1) < 0.1
        assert (layer.activations.saturated_fraction or 1.0) < 0.1
