"""Extreme but admitted values give numbers or findings, never an exception; beyond the
parameter limits they give a 422 naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from initscope.engine.analysis import analyze
from initscope.schemas import AnalyzeResponse

from tests.helpers import make_job

BIG = 1e6  # the parameter limit


def _refuse(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


def assert_strict_json(text: str) -> None:
    """Parses as RFC 8259 JSON: no NaN or Infinity literals anywhere."""
    json.loads(text, parse_constant=_refuse)


INITS: list[dict[str, Any]] = [
    {"scheme": "normal", "std": BIG},
    {"scheme": "normal", "mean": BIG},
    {"scheme": "constant", "value": BIG},
    {"scheme": "uniform", "low": -BIG, "high": BIG},
    {"scheme": "truncated_normal", "std": BIG, "a": -BIG, "b": BIG},
    {"scheme": "variance_scaling", "scale": BIG},
    {"scheme": "xavier_normal", "gain": BIG},
    {"scheme": "orthogonal", "gain": BIG},
    {"scheme": "identity", "gain": BIG},
    {"scheme": "sparse", "std": BIG},
    {"scheme": "he_normal", "negative_slope": BIG},
]


@pytest.mark.parametrize("init", INITS, ids=lambda init: str(init["scheme"]))
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "selu", "gelu", "softplus", "linear"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_largest_admitted_weights_give_a_result(
    init: dict[str, Any], activation: str, dtype: str
) -> None:
    job = make_job(
        {
            "network": {
                "input_dim": 5,
                "depth": 6,
                "width": 4,
                "activation": activation,
                "init": init,
            },
            "input": {"samples": 7},
            "dtype": dtype,
        }
    )
    result = analyze(job)
    assert_strict_json(AnalyzeResponse.from_result(result).model_dump_json())
    for layer in result.simulation.layers:
        assert layer.activations.histogram.total == 7 * 4


@pytest.mark.parametrize(
    "extra",
    [
        {
            "network": {
                "input_dim": 5,
                "depth": 2,
                "width": 4,
                "activation": "tanh",
                "init": "he_normal",
                "bias": {"scheme": "normal", "std": BIG},
            }
        },
        {
            "network": {
                "input_dim": 5,
                "depth": 2,
                "width": 4,
                "activation": "relu",
                "init": "he_normal",
            },
            "input": {"distribution": {"name": "uniform", "low": -BIG, "high": BIG}},
        },
        {
            "network": {
                "input_dim": 2,
                "depth": 2,
                "width": 4,
                "activation": "relu",
                "init": "he_normal",
            },
            "input": {"data": [[1e300, -1e300], [1.0, 2.0]]},
            "dtype": "float64",
        },
        {
            "network": {
                "input_dim": 2,
                "depth": 2,
                "width": 4,
                "activation": "linear",
                "init": {"scheme": "normal", "std": BIG},
            },
            "input": {"data": [[1e300, -1e300], [1.0, 2.0]]},
            "dtype": "float64",
        },
        {
            "network": {
                "input_dim": 2,
                "depth": 2,
                "width": 4,
                "activation": "relu",
                "init": "he_normal",
            },
            "histogram": {"range": [-1e307, 1e307]},
        },
    ],
)
def test_extreme_inputs_and_ranges(extra: dict[str, Any]) -> None:
    result = analyze(make_job(extra))
    assert_strict_json(AnalyzeResponse.from_result(result).model_dump_json())
    for layer in result.simulation.layers:
        hist = layer.activations.histogram
        assert hist.total == result.simulation.samples * layer.units


@pytest.mark.parametrize(
    ("init", "field"),
    [
        ({"scheme": "normal", "std": 1e7}, "std"),
        ({"scheme": "normal", "mean": -1e7}, "mean"),
        ({"scheme": "xavier_normal", "gain": 1e300}, "gain"),
    ],
)
def test_beyond_the_parameter_limit_is_422(
    client: TestClient, init: dict[str, Any], field: str
) -> None:
    body = {"network": {"input_dim": 4, "depth": 1, "width": 2, "activation": "relu", "init": init}}
    response = client.post("/analyze", json=body)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "network", "init", field]
    assert "1000000" in error["msg"]


@pytest.mark.parametrize("value_range", [[-1e308, 1e308], [0.0, 5e-324]])
def test_unbinnable_histogram_range_is_422(client: TestClient, value_range: list[float]) -> None:
    body = {
        "network": {
            "input_dim": 4,
            "depth": 1,
            "width": 2,
            "activation": "relu",
            "init": "he_normal",
        },
        "histogram": {"range": value_range},
    }
    response = client.post("/analyze", json=body)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "histogram"]
    assert "finite bins" in error["msg"]
