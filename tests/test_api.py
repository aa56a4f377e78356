"""The HTTP contract, through the app with its lifespan (and so its process pool) running."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

ISSUE_EXAMPLE: dict[str, Any] = {
    "network": {
        "input_dim": 100,
        "layers": [
            {
                "units": 100,
                "activation": "sigmoid",
                "init": {"scheme": "normal", "std": 1.0},
                "bias": {"scheme": "zeros"},
            }
        ],
    },
    "input": {"samples": 1000, "distribution": "normal"},
    "histogram": {"bins": 30, "range": [0, 1]},
    "seed": 0,
}

SHORTHAND: dict[str, Any] = {
    "network": {
        "input_dim": 100,
        "depth": 5,
        "width": 100,
        "activation": "sigmoid",
        "init": {"scheme": "xavier_normal"},
    },
}


def _only_error(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1, errors
    error: dict[str, Any] = errors[0]
    return error


def test_analyze_returns_every_documented_key(client: TestClient) -> None:
    response = client.post("/analyze", json=ISSUE_EXAMPLE)
    assert response.status_code == 200, response.text
    body = response.json()
    (layer,) = body["layers"]
    assert set(layer["activations"]) >= {
        "mean",
        "std",
        "min",
        "max",
        "zero_fraction",
        "saturated_fraction",
        "histogram",
    }
    assert set(layer["activations"]["histogram"]) == {
        "edges",
        "counts",
        "underflow",
        "overflow",
        "non_finite",
    }
    assert set(layer["preactivations"]) == {"mean", "std"}
    assert set(layer["gradients"]) == {
        "output_grad_rms",
        "weight_grad_norm",
        "relative_to_last",
        "update_ratio",
    }
    for key in ("mean_derivative_sq", "dead_units", "effective_rank", "sample_correlation"):
        assert key in layer
    hist = layer["activations"]["histogram"]
    assert len(hist["edges"]) == 31
    assert hist["edges"][0] == 0.0
    assert hist["edges"][-1] == 1.0
    assert sum(hist["counts"]) + hist["underflow"] + hist["overflow"] + hist["non_finite"] == (
        1000 * 100
    )
    assert set(body["gradient_decay"]) == {"first_to_last", "per_layer_factor"}
    assert body["gradient_decay"]["first_to_last"] == 1.0  # one layer: it is its own last
    assert body["diagnosis"]["verdict"] == "saturation"
    recommendation = body["diagnosis"]["recommendation"]
    assert set(recommendation) == {
        "init",
        "bias",
        "activation",
        "batch_norm",
        "reason",
        "verified",
        "alternatives",
    }
    assert recommendation["verified"]["verdict"] == "healthy"
    assert recommendation["reason"].startswith("Use ")
    assert set(recommendation["verified"]) == {
        "verdict",
        "findings",
        "first_to_last",
        "last_to_first_rms",
        "update_ratio",
    }
    meta = body["meta"]
    assert meta["seed"] == 0
    assert meta["dtype"] == "float32"
    assert meta["flops"] == 6 * 1000 * 100 * 100
    assert meta["elapsed_ms"] > 0
    assert meta["version"]


def test_same_request_same_numbers(client: TestClient) -> None:
    first = client.post("/analyze", json=SHORTHAND).json()
    # no-cache: recomputed, not the stored copy of the first answer
    second = client.post("/analyze", json=SHORTHAND, headers={"cache-control": "no-cache"}).json()
    first["meta"].pop("elapsed_ms")
    second["meta"].pop("elapsed_ms")
    assert first == second


def test_shorthand_expands_to_identical_layers(client: TestClient) -> None:
    layer = {"units": 100, "activation": "sigmoid", "init": "xavier_normal"}
    layered = {"network": {"input_dim": 100, "layers": [layer] * 5}}
    short = client.post("/analyze", json=SHORTHAND).json()
    long = client.post("/analyze", json=layered).json()
    assert short["layers"] == long["layers"]


def test_names_and_objects_are_interchangeable(client: TestClient) -> None:
    by_name = {
        "network": {
            "input_dim": 8,
            "depth": 2,
            "width": 8,
            "activation": "leaky_relu",
            "init": "kaiming_normal",
        }
    }
    by_object = {
        "network": {
            "input_dim": 8,
            "depth": 2,
            "width": 8,
            "activation": {"name": "leaky_relu", "negative_slope": 0.01},
            "init": {"scheme": "he_normal"},
        }
    }
    a = client.post("/analyze", json=by_name).json()
    b = client.post("/analyze", json=by_object).json()
    assert a["layers"] == b["layers"]


def test_inline_data_is_used_as_given(client: TestClient) -> None:
    body = {
        "network": {
            "input_dim": 2,
            "layers": [
                {"units": 1, "activation": "linear", "init": {"scheme": "ones"}},
            ],
        },
        "input": {"data": [[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5]]},
        "dtype": "float64",
    }
    response = client.post("/analyze", json=body)
    assert response.status_code == 200, response.text
    stats = response.json()["layers"][0]["activations"]
    assert stats["min"] == -0.5  # row sums: 3, 7, -0.5
    assert stats["max"] == 7.0
    assert stats["mean"] == pytest.approx((3 + 7 - 0.5) / 3)


def test_catalogue_lists_every_activation_with_gain(client: TestClient) -> None:
    response = client.get("/activations")
    assert response.status_code == 200
    items = {item["name"]: item for item in response.json()}
    assert list(items) == [
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
    assert items["tanh"]["pytorch_gain"] == pytest.approx(5 / 3)
    assert items["relu"]["pytorch_gain"] == pytest.approx(2**0.5)
    assert items["gelu"]["pytorch_gain"] is None
    assert items["sigmoid"]["natural_range"] == [0.0, 1.0]
    assert items["relu"]["natural_range"] == [0.0, None]
    slope = next(p for p in items["leaky_relu"]["parameters"] if p["name"] == "negative_slope")
    assert slope["default"] == 0.01
    assert slope["constraints"]["minimum"] == 0
    assert all(item["formula"] for item in items.values())


def test_catalogue_lists_every_initializer_with_aliases(client: TestClient) -> None:
    response = client.get("/initializers")
    assert response.status_code == 200
    weights = {i["scheme"]: i for i in response.json() if i["kind"] == "weight"}
    biases = {i["scheme"] for i in response.json() if i["kind"] == "bias"}
    assert set(weights) == {
        "normal",
        "uniform",
        "constant",
        "zeros",
        "ones",
        "truncated_normal",
        "xavier_normal",
        "xavier_uniform",
        "he_normal",
        "he_uniform",
        "lecun_normal",
        "lecun_uniform",
        "variance_scaling",
        "orthogonal",
        "identity",
        "sparse",
        "lsuv",
    }
    assert biases == {"zeros", "constant", "normal"}
    assert weights["xavier_normal"]["aliases"] == ["glorot_normal"]
    assert weights["he_uniform"]["aliases"] == ["kaiming_uniform"]
    mode = next(p for p in weights["he_normal"]["parameters"] if p["name"] == "mode")
    assert mode["choices"] == ["fan_in", "fan_out"]
    assert weights["orthogonal"]["theory_applicable"] is False
    assert weights["he_normal"]["theory_applicable"] is True


def test_probes(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def _shorthand(**network: Any) -> dict[str, Any]:
    base = {"input_dim": 10, "depth": 2, "width": 5, "activation": "relu", "init": "he_normal"}
    return {"network": {**base, **network}}


def test_unknown_activation_lists_the_allowed_names(client: TestClient) -> None:
    error = _only_error(client.post("/analyze", json=_shorthand(activation="relux")))
    assert error["loc"] == ["body", "network", "activation"]
    assert error["type"] == "union_tag_invalid"
    assert "'relux'" in error["msg"]
    for name in ("sigmoid", "leaky_relu", "hard_tanh"):
        assert f"'{name}'" in error["msg"]


def test_unknown_scheme_lists_the_allowed_schemes(client: TestClient) -> None:
    body = {
        "network": {
            "input_dim": 4,
            "layers": [{"units": 3, "activation": "relu", "init": {"scheme": "kaiming"}}],
        }
    }
    error = _only_error(client.post("/analyze", json=body))
    assert error["loc"] == ["body", "network", "layers", 0, "init"]
    assert "'kaiming_normal'" in error["msg"]
    assert "'glorot_uniform'" in error["msg"]


def test_typo_in_a_key_is_refused(client: TestClient) -> None:
    body = _shorthand(init={"scheme": "normal", "sigma_W": 1.0})
    error = _only_error(client.post("/analyze", json=body))
    assert error["loc"] == ["body", "network", "init", "sigma_W"]
    body = {**_shorthand(), "sed": 1}
    error = _only_error(client.post("/analyze", json=body))
    assert error["loc"] == ["body", "sed"]
    assert error["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    ("patch", "loc", "type_"),
    [
        ({"width": 0}, ["body", "network", "width"], "greater_than_equal"),
        ({"depth": -3}, ["body", "network", "depth"], "greater_than_equal"),
        ({"input_dim": 0}, ["body", "network", "input_dim"], "greater_than_equal"),
        (
            {"init": {"scheme": "normal", "std": -1}},
            ["body", "network", "init", "std"],
            "greater_than",
        ),
        (
            {"init": {"scheme": "normal", "std": 0}},
            ["body", "network", "init", "std"],
            "greater_than",
        ),
    ],
)
def test_non_positive_sizes_and_scales(
    client: TestClient, patch: dict[str, Any], loc: list[Any], type_: str
) -> None:
    error = _only_error(client.post("/analyze", json=_shorthand(**patch)))
    assert error["loc"] == loc
    assert error["type"] == type_


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_not_echoed_as_invalid_json(
    client: TestClient, literal: str
) -> None:
    raw = (
        '{"network": {"input_dim": 4, "depth": 1, "width": 2, "activation": "relu", '
        f'"init": {{"scheme": "normal", "std": {literal}}}}}}}'
    )
    response = client.post("/analyze", content=raw, headers={"content-type": "application/json"})
    error = _only_error(response)
    assert error["loc"] == ["body", "network", "init", "std"]
    assert error["type"] == "finite_number"


def test_empty_layer_list(client: TestClient) -> None:
    body = {"network": {"input_dim": 4, "layers": []}}
    error = _only_error(client.post("/analyze", json=body))
    assert error["loc"] == ["body", "network", "layers"]
    assert error["type"] == "too_short"


def test_input_dim_must_match_inline_data(client: TestClient) -> None:
    body = {**_shorthand(input_dim=3), "input": {"data": [[1.0, 2.0], [3.0, 4.0]]}}
    error = _only_error(client.post("/analyze", json=body))
    assert error["loc"] == ["body", "network", "input_dim"]
    assert "3" in error["msg"]
    assert "2 columns" in error["msg"]


def test_ragged_inline_data(client: TestClient) -> None:
    body = {**_shorthand(input_dim=2), "input": {"data": [[1.0, 2.0], [3.0]]}}
    error = _only_error(client.post("/analyze", json=body))
    assert error["loc"] == ["body", "input"]
    assert "row 1" in error["msg"]


def test_histogram_range_must_be_ordered(client: TestClient) -> None:
    body = {**_shorthand(), "histogram": {"range": [1.0, 0.0]}}
    error = _only_error(client.post("/analyze", json=body))
    assert error["loc"] == ["body", "histogram"]
    assert "low < high" in error["msg"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (_shorthand(width=513), ["body", "network", "width"]),
        (_shorthand(depth=21), ["body", "network", "depth"]),
        ({**_shorthand(), "input": {"samples": 4097}}, ["body", "input", "samples"]),
        ({**_shorthand(), "histogram": {"bins": 201}}, ["body", "histogram", "bins"]),
        ({**_shorthand(input_dim=1), "input": {"data": [[0.0]] * 65}}, ["body", "input", "data"]),
        (
            {
                "network": {
                    "input_dim": 4,
                    "layers": [{"units": 600, "activation": "relu", "init": "he_normal"}],
                }
            },
            ["body", "network", "layers", 0, "units"],
        ),
    ],
)
def test_every_size_is_bounded(client: TestClient, body: dict[str, Any], loc: list[Any]) -> None:
    error = _only_error(client.post("/analyze", json=body))
    assert error["loc"] == loc
    assert "at most" in error["msg"]


def test_compute_budget_states_cost_and_limit(client: TestClient) -> None:
    # 4096 x (500*500*20) multiply-adds is far above the test settings' 2e8.
    body = {**_shorthand(input_dim=500, width=500, depth=20), "input": {"samples": 4096}}
    response = client.post("/analyze", json=body)
    assert response.status_code == 422
    codes = {e["type"]: e for e in response.json()["errors"]}
    assert "compute_budget" in codes
    message = codes["compute_budget"]["msg"]
    assert "limit is 2e+08" in message
    assert "4096 x" in message


@pytest.mark.parametrize("body", [[], "text", 3, None, {}, {"network": None}, {"network": []}])
def test_malformed_bodies_get_422_not_500(client: TestClient, body: Any) -> None:
    response = client.post("/analyze", json=body)
    assert response.status_code == 422
    assert response.json()["errors"]


def test_invalid_json_gets_422(client: TestClient) -> None:
    response = client.post(
        "/analyze", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "json_invalid"
