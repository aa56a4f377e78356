"""POST /compare: side-by-side analyses on shared data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

ISSUE_EXAMPLE: dict[str, Any] = {
    "base": {
        "input_dim": 100,
        "depth": 5,
        "width": 100,
        "activation": "sigmoid",
        "init": {"scheme": "normal", "std": 1.0},
    },
    "variants": [
        {"name": "std=1"},
        {"name": "std=0.01", "init": {"scheme": "normal", "std": 0.01}},
        {"name": "Xavier", "init": {"scheme": "lecun_normal"}},
    ],
    "input": {"samples": 1000},
    "histogram": {"bins": 30, "range": [0, 1]},
    "seed": 0,
    "recommend": False,  # the test settings' budget pays for the three variants only
}


def test_compare_returns_each_analysis_and_a_table(client: TestClient) -> None:
    response = client.post("/compare", json=ISSUE_EXAMPLE)
    assert response.status_code == 200, response.text
    assert response.headers["vary"] == "Accept"
    body = response.json()
    assert [v["name"] for v in body["variants"]] == ["std=1", "std=0.01", "Xavier"]
    table = {row["name"]: row for row in body["table"]}
    assert table["std=1"]["verdict"] == "saturation"
    assert table["std=0.01"]["verdict"] == "vanishing_gradients"
    assert table["std=1"]["saturated_fraction"] > 0.45
    assert table["std=0.01"]["last_layer_std"] < 0.03
    for variant in body["variants"]:
        analysis = variant["analysis"]
        row = table[variant["name"]]
        assert row["first_to_last"] == analysis["gradient_decay"]["first_to_last"]
        assert row["last_layer_std"] == analysis["layers"][-1]["activations"]["std"]
        assert row["dead_fraction"] == 0.0


def test_a_comparison_equals_the_separate_analyses(client: TestClient) -> None:
    body = client.post("/compare", json=ISSUE_EXAMPLE).json()
    alone = client.post(
        "/analyze",
        json={
            "network": {**ISSUE_EXAMPLE["base"], "init": {"scheme": "normal", "std": 0.01}},
            "input": {"samples": 1000},
            "histogram": {"bins": 30, "range": [0, 1]},
            "seed": 0,
            "recommend": False,
        },
    ).json()
    second = body["variants"][1]["analysis"]
    assert second["layers"] == alone["layers"]
    assert second["diagnosis"] == alone["diagnosis"]


def test_variants_share_input_and_upstream_gradient(client: TestClient) -> None:
    first = {"units": 30, "activation": "tanh", "init": "lecun_normal"}
    body = {
        "variants": [
            {
                "name": "relu head",
                "network": {
                    "input_dim": 20,
                    "layers": [first, {"units": 10, "activation": "relu", "init": "he_normal"}],
                },
            },
            {
                "name": "sigmoid head",
                "network": {
                    "input_dim": 20,
                    "layers": [
                        first,
                        {"units": 10, "activation": "sigmoid", "init": "xavier_normal"},
                    ],
                },
            },
        ],
        "input": {"samples": 300},
    }
    response = client.post("/compare", json=body)
    assert response.status_code == 200, response.text
    a, b = (v["analysis"] for v in response.json()["variants"])
    assert a["layers"][0]["preactivations"] == b["layers"][0]["preactivations"]
    assert a["layers"][0]["activations"] == b["layers"][0]["activations"]
    assert a["input"]["input_rms"] == b["input"]["input_rms"]
    # Same upstream gradient at the (equal-width) last layer: its RMS is the same draw.
    assert a["layers"][-1]["gradients"]["output_grad_rms"] == pytest.approx(
        b["layers"][-1]["gradients"]["output_grad_rms"], rel=0, abs=0
    )
    assert a["layers"][1]["activations"] != b["layers"][1]["activations"]


def test_activation_patch_applies_to_every_layer(client: TestClient) -> None:
    body = {
        "base": {
            "input_dim": 10,
            "layers": [
                {"units": 8, "activation": "relu", "init": "he_normal"},
                {"units": 6, "activation": "relu", "init": "he_normal"},
            ],
        },
        "variants": [{"name": "relu"}, {"name": "tanh", "activation": "tanh"}],
    }
    variants = client.post("/compare", json=body).json()["variants"]
    assert [x["activation"] for x in variants[1]["analysis"]["layers"]] == ["tanh", "tanh"]
    assert [x["activation"] for x in variants[0]["analysis"]["layers"]] == ["relu", "relu"]


@pytest.mark.parametrize(
    ("patch", "loc", "needle"),
    [
        ({"variants": [{"name": "only"}]}, ["body", "variants"], "at least 2"),
        ({"variants": [{"name": f"v{i}"} for i in range(9)]}, ["body", "variants"], "at most 8"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, ["body"], "unique"),
        ({"base": None}, ["body"], "no base"),
        (
            {
                "variants": [
                    {"name": "a"},
                    {"name": "b", "init": "he_normal", "network": ISSUE_EXAMPLE["base"]},
                ]
            },
            ["body", "variants", 1],
            "either a whole network or patches",
        ),
        (
            {"variants": [{"name": "a"}, {"name": "b", "init": "kaiming"}]},
            ["body", "variants", 1, "init"],
            "'kaiming_normal'",
        ),
    ],
)
def test_invalid_comparisons(
    client: TestClient, patch: dict[str, Any], loc: list[Any], needle: str
) -> None:
    response = client.post("/compare", json={**ISSUE_EXAMPLE, **patch})
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["loc"] == loc and needle in e["msg"] for e in errors), errors


def test_budget_counts_every_variant(client: TestClient) -> None:
    # One variant (8e7 multiply-adds) fits the test settings' 2e8; four together do not.
    base = {"input_dim": 100, "depth": 4, "width": 100, "activation": "relu", "init": "he_normal"}
    body = {
        "base": base,
        "variants": [{"name": f"v{i}"} for i in range(4)],
        "input": {"samples": 2000},
    }
    response = client.post("/compare", json=body)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "variants"]
    assert error["type"] == "compute_budget"


@pytest.mark.parametrize("path", ["/analyze", "/compare"])
def test_unacceptable_media_type_is_406(client: TestClient, path: str) -> None:
    body = ISSUE_EXAMPLE if path == "/compare" else {"network": ISSUE_EXAMPLE["base"]}
    response = client.post(path, json=body, headers={"accept": "text/html"})
    assert response.status_code == 406
    assert "image/svg+xml" in response.json()["detail"]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("compare-*.json")))
def test_compare_examples_run(default_client: TestClient, name: str) -> None:
    body = json.loads((EXAMPLES / name).read_text())
    response = default_client.post("/compare", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["table"]) == len(body["variants"])


@pytest.mark.parametrize("operation", ["compare", "train"])
def test_a_variant_with_a_network_and_patches_is_refused(
    client: TestClient, operation: str
) -> None:
    """A variant is a whole network or patches over the base: both at once would leave one
    silently unused, so /compare and /train (one variant patch, schema_base) refuse it."""
    network = {"input_dim": 2, "depth": 2, "width": 8, "activation": "tanh", "init": "he_normal"}
    both = {"name": "b", "network": network, "activation": "relu"}
    body: dict[str, Any] = {"variants": [{"name": "a"}, both]}
    if operation == "compare":
        body["base"] = network
    else:
        body |= {"network": network, "task": {"name": "spirals", "samples": 60}, "epochs": 1}
    response = client.post(f"/{operation}", json=body)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "variants", 1]
    assert "not both" in error["msg"]
