"""POST /sweep: phase diagrams, simulated and predicted, with the edge of chaos."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.engine.sweep import run_sweep
from initscope.schemas import SweepRequest

TANH: dict[str, Any] = {
    "activation": "tanh",
    "depth": 20,
    "width": 200,
    "samples": 256,
    "seed": 0,
    "x": {"param": "sigma_w2", "values": [0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0]},
    "y": {"param": "sigma_b2", "values": [0.0, 0.05, 0.1, 0.2]},
    "metric": "chi_1",
    "source": "both",
}


def test_critical_curve_crosses_the_cells_where_the_gradient_ratio_is_closest_to_1() -> None:
    """Per row (one sigma_b^2), the simulated per-layer gradient factor (chi_1 measured over the
    deeper half of 20 layers) is closest to 1 in the cell next to the theoretical critical
    sigma_w^2 (within one grid step). At sigma_b^2 = 0 the critical q* is 0 and q approaches it
    only like 1/l, so the finite net sits slightly on the ordered side there."""
    result = run_sweep(SweepRequest.model_validate(TANH).job(Settings()))
    assert result.simulation is not None
    assert result.critical is not None
    xs = np.array(TANH["x"]["values"])
    curve_w = np.array([w for w, _ in result.critical])
    curve_b = np.array([b for _, b in result.critical])
    for row, sigma_b2 in zip(result.simulation, TANH["y"]["values"], strict=True):
        measured = np.array([np.nan if v is None else v for v in row])
        closest = xs[np.nanargmin(np.abs(np.log(measured)))]
        critical = float(np.interp(sigma_b2, curve_b, curve_w))
        step = np.max(np.diff(xs))
        assert abs(closest - critical) <= step, (sigma_b2, closest, critical)


def test_theory_and_simulation_agree_on_chi_1() -> None:
    result = run_sweep(SweepRequest.model_validate(TANH).job(Settings()))
    assert result.simulation is not None
    assert result.theory is not None
    sim = np.array(result.simulation, dtype=float)
    pred = np.array(result.theory, dtype=float)
    # Measured over the deeper half of 20 layers, where q has nearly reached q*; the largest
    # gap (7 %) is tanh at sigma_w^2 = 1, sigma_b^2 = 0, whose q* = 0 is approached like 1/l.
    assert np.nanmax(np.abs(sim / pred - 1)) < 0.1


def test_tanh_critical_point_at_zero_bias_is_sigma_w2_1() -> None:
    result = run_sweep(SweepRequest.model_validate({**TANH, "source": "theory"}).job(Settings()))
    assert result.critical is not None
    assert result.critical[0] == pytest.approx((1.0, 0.0), abs=1e-6)
    assert result.simulation is None


def test_depth_and_width_axes_have_no_critical_curve(client: TestClient) -> None:
    body = {
        **TANH,
        "x": {"param": "depth", "values": [2, 4, 8]},
        "y": {"param": "width", "values": [32, 64]},
        "metric": "first_to_last",
        "samples": 64,
    }
    response = client.post("/sweep", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["critical_curve"] is None
    assert "not drawn" in data["critical_note"]
    assert len(data["simulation"]) == 2
    assert len(data["simulation"][0]) == 3


def test_std_axis_is_in_the_users_units(client: TestClient) -> None:
    body = {
        **TANH,
        "x": {"param": "std", "values": [0.05, 0.0707, 0.1]},
        "source": "theory",
        "metric": "chi_1",
    }
    data = client.post("/sweep", json=body).json()
    assert data["x"] == {"param": "std", "values": [0.05, 0.0707, 0.1]}
    # std 0.0707 at width 200 is sigma_w^2 ~ 1: tanh with sigma_b^2 = 0 is critical there.
    assert data["theory"][0][1] == pytest.approx(1.0, abs=0.01)


def test_sweep_figure(client: TestClient) -> None:
    response = client.post("/sweep?format=png", json={**TANH, "samples": 64, "width": 50})
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")
    svg = client.post(
        "/sweep", json={**TANH, "source": "theory"}, headers={"accept": "image/svg+xml"}
    )
    assert svg.headers["content-type"].startswith("image/svg+xml")


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"y": {"param": "sigma_w2", "values": [1.0]}}, "different things"),
        ({"x": {"param": "depth", "values": [1.5]}}, "whole numbers"),
        ({"x": {"param": "sigma_w2", "values": list(range(1, 22))}}, "at most 20"),
        ({"x": {"param": "width", "values": [100000]}}, "at most"),
        ({"metric": "loss"}, "first_to_last"),
    ],
)
def test_invalid_sweeps(client: TestClient, patch: dict[str, Any], needle: str) -> None:
    response = client.post("/sweep", json={**TANH, **patch})
    assert response.status_code == 422, response.text
    assert needle in response.text


def test_sweep_budget(client: TestClient) -> None:
    body = {**TANH, "width": 500, "samples": 4096, "source": "simulation"}
    response = client.post("/sweep", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "compute_budget"


def test_verdict_metric_labels_cells(client: TestClient) -> None:
    body = {
        **TANH,
        "depth": 6,
        "width": 40,
        "samples": 64,
        "metric": "verdict",
        "x": {"param": "sigma_w2", "values": [0.05, 1.0, 25.0]},
        "y": {"param": "sigma_b2", "values": [0.0]},
    }
    data = client.post("/sweep", json=body).json()
    assert data["simulation"][0][0] == "vanishing_gradients"
    assert data["simulation"][0][2] == "saturation"
    assert data["theory"][0] == ["ordered", "critical", "chaotic"]
    png = client.post("/sweep?format=png", json=body)
    assert png.content.startswith(b"\x89PNG")
