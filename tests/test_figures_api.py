"""Figures through HTTP: content negotiation, the format override, sizes and their bounds."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG = b"\x89PNG\r\n\x1a\n"
BODY: dict[str, Any] = {
    "network": {
        "input_dim": 20,
        "depth": 3,
        "width": 16,
        "activation": "tanh",
        "init": "xavier_normal",
    },
    "input": {"samples": 200},
}


def png_size(content: bytes) -> tuple[int, int]:
    assert content.startswith(PNG)
    width, height = struct.unpack(">II", content[16:24])  # the IHDR chunk
    return width, height


def test_accept_png_returns_a_png(client: TestClient) -> None:
    response = client.post("/analyze", json=BODY, headers={"accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["vary"] == "Accept"
    assert response.content.startswith(PNG)


def test_accept_svg_returns_svg(client: TestClient) -> None:
    response = client.post("/analyze", json=BODY, headers={"accept": "image/svg+xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.text.startswith("<?xml")
    assert "<svg" in response.text
    assert "1-layer" in response.text  # panel titles are text, not paths


def test_format_parameter_overrides_accept(client: TestClient) -> None:
    response = client.post("/analyze?format=png", json=BODY, headers={"accept": "application/json"})
    assert response.headers["content-type"] == "image/png"
    response = client.post("/analyze?format=json", json=BODY, headers={"accept": "image/png"})
    assert response.headers["content-type"] == "application/json"
    assert response.json()["layers"]


def test_requested_pixel_size(client: TestClient) -> None:
    response = client.post("/analyze?format=png&width=900&height=600&dpi=120", json=BODY)
    assert response.status_code == 200
    assert png_size(response.content) == (900, 600)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("width=10", "width"),
        ("height=100000", "height"),
        ("dpi=5000", "dpi"),
        ("format=gif", "format"),
    ],
)
def test_absurd_figure_options_are_422(client: TestClient, query: str, name: str) -> None:
    response = client.post(f"/analyze?{query}", json=BODY)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["query", name]


def test_same_request_same_image(client: TestClient) -> None:
    first = client.post("/analyze?format=png", json=BODY).content
    # no-cache: recomputed, not the stored copy of the first answer
    again = client.post("/analyze?format=png", json=BODY, headers={"cache-control": "no-cache"})
    assert first == again.content


def test_compare_figure(client: TestClient) -> None:
    body = json.loads((EXAMPLES / "compare-sigmoid.json").read_text())
    body["recommend"] = False  # the test settings' budget pays for the variants only
    response = client.post("/compare?format=png", json=body)
    assert response.status_code == 200
    width, height = png_size(response.content)
    assert width > height  # three rows of six panels


def test_openapi_declares_the_three_media_types(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/analyze", "/compare"):
        content = schema["paths"][path]["post"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "image/png", "image/svg+xml"}
        assert "406" in schema["paths"][path]["post"]["responses"]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("analyze-*.json")))
def test_analyze_examples_run_as_json_and_png(default_client: TestClient, name: str) -> None:
    body = json.loads((EXAMPLES / name).read_text())
    assert default_client.post("/analyze", json=body).status_code == 200
    assert default_client.post("/analyze?format=png", json=body).content.startswith(PNG)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("sweep-*.json")))
def test_sweep_examples_run_as_json_and_png(default_client: TestClient, name: str) -> None:
    body = json.loads((EXAMPLES / name).read_text())
    assert default_client.post("/sweep", json=body).status_code == 200
    assert default_client.post("/sweep?format=png", json=body).content.startswith(PNG)
