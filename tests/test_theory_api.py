"""Theory beside simulation in /analyze: the response keys, applicability, the recommendation."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def _net(**network: Any) -> dict[str, Any]:
    base = {
        "input_dim": 200,
        "depth": 4,
        "width": 200,
        "activation": "tanh",
        "init": "lecun_normal",
    }
    return {"network": {**base, **network}, "input": {"samples": 500}}


def test_theory_keys_and_small_gaps(client: TestClient) -> None:
    body = client.post("/analyze", json=_net()).json()
    theory = body["theory"]
    assert theory["applicable"] is True
    assert set(theory) >= {
        "q_star",
        "chi_1",
        "phase",
        "xi_q",
        "xi_c",
        "trainable_depth",
        "applicable",
        "notes",
    }
    assert theory["phase"] == "critical"  # tanh, sigma_w^2 = 1, sigma_b^2 = 0
    assert theory["critical_sigma_w2"] == pytest.approx(1.0, abs=1e-6)
    for layer in body["layers"]:
        predicted = layer["theory"]
        assert set(predicted) >= {"q", "second_moment", "chi_1", "gradient_ratio"}
        assert abs(predicted["q_gap"]) < 0.05
        assert abs(predicted["second_moment_gap"]) < 0.05
        assert abs(predicted["gradient_ratio_gap"]) < 0.1


def test_theory_can_be_skipped(client: TestClient) -> None:
    body = client.post("/analyze", json={**_net(), "theory": False}).json()
    assert body["theory"] is None
    assert all(layer["theory"] is None for layer in body["layers"])


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"init": "orthogonal"}, "orthogonal weights are not i.i.d."),
        ({"init": {"scheme": "constant", "value": 0.01}}, "constant weights"),
        ({"init": {"scheme": "sparse"}}, "sparse weights"),
        ({"init": "identity"}, "identity weights"),
        ({"bias": {"scheme": "constant", "value": 0.5}}, "bias with nonzero mean"),
    ],
)
def test_where_the_theory_does_not_apply_it_says_so(
    client: TestClient, patch: dict[str, Any], needle: str
) -> None:
    theory = client.post("/analyze", json=_net(**patch)).json()["theory"]
    assert theory["applicable"] is False
    assert theory["q_star"] is None
    assert any(needle in note and "layers 1-4" in note for note in theory["notes"])


def test_structured_inline_data_is_flagged(client: TestClient) -> None:
    rows = [[1.0] * 8, [10.0] * 8, [0.1] * 8, [5.0] * 8]
    body = {
        "network": {
            "input_dim": 8,
            "depth": 2,
            "width": 8,
            "activation": "tanh",
            "init": "lecun_normal",
        },
        "input": {"data": rows},
    }
    theory = client.post("/analyze", json=body).json()["theory"]
    assert theory["applicable"] is False
    assert any("squared norms vary" in note for note in theory["notes"])


def _options(body: dict[str, Any]) -> list[dict[str, Any]]:
    advice = body["diagnosis"]["recommendation"]
    return [advice, *advice["alternatives"]]


def test_the_critical_point_is_a_candidate_or_an_honest_note(
    default_client: TestClient,
) -> None:
    """The critical point for this activation and this bias (Poole et al. 2016) is simulated
    as a candidate; where there is none (sigmoid), its reason says so and names the nearest."""
    tanh = _net(init={"scheme": "normal", "std": 0.3}, bias={"scheme": "normal", "std": 0.3})
    body = default_client.post("/analyze", json=tanh).json()
    assert body["diagnosis"]["verdict"] != "healthy"
    critical = [o for o in _options(body) if "with the requested sigma_b^2 = 0.09" in o["reason"]]
    assert critical, [o["reason"] for o in _options(body)]
    assert "chi_1(q*) = 1 at sigma_w^2 = 1.948" in critical[0]["reason"]
    sigmoid = _net(activation="sigmoid", init={"scheme": "normal", "std": 0.01})
    body = default_client.post("/analyze", json=sigmoid).json()
    honest = "has no sigma_w^2 in [0.1, 100] with chi_1(q*) = 1 at a finite, stable q*"
    assert any(honest in o["reason"] for o in _options(body))


def test_he_relu_is_critical_with_unbounded_depth_scales(client: TestClient) -> None:
    theory = client.post("/analyze", json=_net(activation="relu", init="he_normal")).json()[
        "theory"
    ]
    assert theory["phase"] == "critical"
    assert theory["xi_c"] is None
    assert any("xi_c is unbounded" in note for note in theory["notes"])


def _std(sigma_w2: float) -> dict[str, Any]:
    """W ~ N(0, sigma_w2 / 200): every layer of _net has fan_in 200."""
    return {"scheme": "normal", "std": (sigma_w2 / 200) ** 0.5}


def test_relu_without_bias_has_a_length_scale_but_no_correlation_scale(
    client: TestClient,
) -> None:
    """Issue 12: ReLU at sigma_w^2 = 0.01 reported xi_c = 0.189 layers (-1/ln chi_1, valid only at
    a finite, positive q*). The normalised correlation map is the arc-cosine map, slope 1 at
    c = 1 for every sigma_w^2: xi_c and the trainable depth are null, with a note giving the
    polynomial law 1 - c_l ~ 9 pi^2 / (2 l^2) (Hayou et al. 2019); xi_q = -1/ln 0.005 stays."""
    theory = client.post("/analyze", json=_net(activation="relu", init=_std(0.01))).json()["theory"]
    assert theory["xi_q"] == pytest.approx(0.18873, abs=1e-4)
    assert theory["xi_c"] is None
    assert theory["trainable_depth"] is None
    note = next(n for n in theory["notes"] if n.startswith("xi_c is unbounded"))
    assert "polynomially, 1 - c_l ~ 44.4 / l^2 (9 pi^2 / (2 l^2) for ReLU" in note
    assert "for every sigma_w^2" in note


def test_tanh_with_q_star_zero_preserves_correlations(client: TestClient) -> None:
    theory = client.post("/analyze", json=_net(init=_std(0.5))).json()["theory"]
    assert theory["q_star"] == 0.0
    assert theory["xi_c"] is None
    assert any("q* = 0" in n and "preserved" in n for n in theory["notes"])


def test_relu_at_he_with_bias_grows_linearly_and_is_not_called_chaotic(
    client: TestClient,
) -> None:
    """Issue 12: beside phase "critical" the note said "q* is infinite: the length map diverges
    (unbounded activation, chaotic)". At sigma_w^2 = 2 with sigma_b^2 = 0.09, chi_1 = 1 and q
    grows by sigma_b^2 per layer: linearly, not chaotically."""
    body = _net(activation="relu", init="he_normal", bias={"scheme": "normal", "std": 0.3})
    theory = client.post("/analyze", json=body).json()["theory"]
    assert theory["phase"] == "critical"
    assert theory["q_star"] is None
    assert not any("chaotic" in note for note in theory["notes"])
    assert any(
        "q grows without bound, linearly, by sigma_b^2 = 0.09 per layer" in note
        for note in theory["notes"]
    )


def test_relu_above_he_grows_geometrically(client: TestClient) -> None:
    theory = client.post("/analyze", json=_net(activation="relu", init=_std(4.0))).json()["theory"]
    assert theory["phase"] == "chaotic"
    assert any(
        "geometrically, by a factor of 2 per layer" in note and "(chaotic)" in note
        for note in theory["notes"]
    )
