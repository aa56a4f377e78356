"""Every error is RFC 9457 problem details, whichever layer produced it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.errors import InitscopeError
from initscope.http import problems
from initscope.http.api import create_app
from starlette.requests import Request

LIMIT = 2000
SMALL = {
    "network": {"input_dim": 4, "depth": 1, "width": 2, "activation": "relu", "init": "he_normal"}
}


class Jammed(InitscopeError):
    status = 503
    title = "Jammed"
    retry_after = 7


class TooSlow(InitscopeError):
    status = 504
    title = "Too slow"


class Unmapped(InitscopeError):
    """A domain error without a status is a bug of ours: 500."""


def _raise(exc: Exception) -> Any:
    async def endpoint() -> None:
        raise exc

    return endpoint


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """No lifespan (no pool): nothing here reaches a worker."""
    app = create_app(Settings(workers=1, blas_threads=1, max_body_bytes=LIMIT))
    for path, exc in [
        ("/jammed", Jammed("all 2 workers busy and 4 jobs queued")),
        ("/slow", TooSlow()),
        ("/unmapped", Unmapped("oops")),
        ("/bug", RuntimeError("secret-internal-state")),
    ]:
        app.add_api_route(path, _raise(exc), methods=["GET"])
    return app


@pytest.fixture(scope="module")
def bare(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    assert body["title"]
    assert body["detail"]
    return body


def test_unknown_path_is_404(bare: TestClient) -> None:
    body = _problem(bare.get("/nowhere"), 404)
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"
    assert "/nowhere" in body["detail"]


def test_wrong_method_is_405_with_allow(bare: TestClient) -> None:
    response = bare.put("/analyze", json=SMALL)
    body = _problem(response, 405)
    assert response.headers["allow"] == "POST"
    assert body["title"] == "Method Not Allowed"
    assert "PUT" in body["detail"]


def test_unacceptable_media_type_is_406_with_vary(bare: TestClient) -> None:
    response = bare.post("/analyze", json=SMALL, headers={"accept": "text/html"})
    body = _problem(response, 406)
    assert response.headers["vary"] == "Accept"
    assert body["type"] == "https://initscope.dev/problems/not-acceptable"
    assert "text/html" in body["detail"]


def test_validation_errors_keep_the_field_entries(bare: TestClient) -> None:
    raw = json.dumps(
        {"network": {**SMALL["network"], "width": 0, "init": {"scheme": "normal", "std": -1}}}
    )
    body = _problem(
        bare.post("/analyze", content=raw, headers={"content-type": "application/json"}), 422
    )
    assert body["type"] == "https://initscope.dev/problems/validation"
    assert body["title"] == "Invalid request"
    by_loc = {tuple(e["loc"]): e for e in body["errors"]}
    width = by_loc["body", "network", "width"]
    assert width["type"] == "greater_than_equal"
    assert width["input"] == 0
    assert width["ctx"] == {"ge": 1}
    std = by_loc["body", "network", "init", "std"]  # the union tag "normal" is dropped
    assert std["type"] == "greater_than"
    assert "2 fields are invalid" in body["detail"]
    assert "body.network.width" in body["detail"]


def test_non_finite_input_is_echoed_as_text(bare: TestClient) -> None:
    raw = (
        '{"network": {"input_dim": 4, "depth": 1, "width": 2, "activation": "relu", '
        '"init": {"scheme": "normal", "std": NaN}}}'
    )
    response = bare.post("/analyze", content=raw, headers={"content-type": "application/json"})
    (error,) = _problem(response, 422)["errors"]
    assert error["input"] == "nan"


def test_undecodable_body_is_400_saying_why(bare: TestClient) -> None:
    response = bare.post(
        "/analyze", content=b'{"network": "\xff"}', headers={"content-type": "application/json"}
    )
    body = _problem(response, 400)
    assert "'utf-8' codec can't decode byte 0xff" in body["detail"]


OPERATIONS = ("/analyze", "/compare", "/sweep", "/train", "/search")
NOT_JSON = (
    "application/octet-stream",
    "multipart/form-data; boundary=initscope",
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "application/xml",
    "",
)
NOT_UTF8 = bytes(range(256))[::-1]  # 0xff first: no UTF-8 decoder gets past it


@pytest.mark.parametrize("path", OPERATIONS)
@pytest.mark.parametrize("content_type", NOT_JSON)
def test_a_body_that_is_not_json_is_415_naming_what_is_read(
    bare: TestClient, path: str, content_type: str
) -> None:
    response = bare.post(path, content=NOT_UTF8, headers={"content-type": content_type})
    body = _problem(response, 415)
    assert body["type"] == problems.UNSUPPORTED_MEDIA_TYPE
    assert "application/json" in body["detail"]
    assert response.headers["accept-post"] == "application/json, application/*+json"


def test_a_json_body_declared_as_something_else_is_still_415(bare: TestClient) -> None:
    response = bare.post(
        "/analyze", content=json.dumps(SMALL), headers={"content-type": "text/json"}
    )
    assert "text/json is not accepted here" in _problem(response, 415)["detail"]


def test_a_body_without_content_type_is_415(bare: TestClient) -> None:
    response = bare.post("/compare", content=NOT_UTF8)
    assert "no Content-Type" in _problem(response, 415)["detail"]


def test_no_body_and_no_content_type_is_the_422_naming_the_body(bare: TestClient) -> None:
    (error,) = _problem(bare.post("/analyze"), 422)["errors"]
    assert error["loc"] == ["body"]
    assert error["type"] == "missing"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.initscope+json",
    ],
)
def test_json_media_types_are_read(bare: TestClient, content_type: str) -> None:
    """Parameters and ``+json`` suffixes are JSON: the body reaches validation (here a 422)."""
    response = bare.post(
        "/analyze", content=b'{"network": {}}', headers={"content-type": content_type}
    )
    assert _problem(response, 422)["type"] == problems.VALIDATION


@pytest.mark.parametrize(
    "value",
    [NOT_UTF8, bytearray(b"\xc3("), {"k": b"\xfe", b"\xff": [object()]}, {1, 2}, object()],
)
def test_the_422_echoes_any_input(value: object) -> None:
    """Whatever a validator reports as the input (raw bytes of a body that was not parsed,
    an object FastAPI cannot encode), the 422 is written, never a 500."""
    request = Request({"type": "http", "method": "POST", "path": "/compare", "headers": []})
    error = {"type": "model_attributes_type", "loc": ("body",), "msg": "bad", "input": value}
    response = asyncio.run(problems.invalid_body(request, RequestValidationError([error])))
    assert response.status_code == 422
    (echoed,) = json.loads(bytes(response.body))["errors"]
    assert echoed["input"] is not None


def test_service_limits_are_422_problems(client: TestClient) -> None:
    body = {"network": {**SMALL["network"], "width": 513}}
    problem = _problem(client.post("/analyze", json=body), 422)
    assert problem["type"] == "https://initscope.dev/problems/validation"
    (error,) = problem["errors"]
    assert error["loc"] == ["body", "network", "width"]
    assert "at most" in error["msg"]


def test_domain_error_with_status_and_retry_after(bare: TestClient) -> None:
    response = bare.get("/jammed")
    body = _problem(response, 503)
    assert response.headers["retry-after"] == "7"
    assert body["type"] == "https://initscope.dev/problems/jammed"
    assert body["title"] == "Jammed"
    assert body["detail"] == "all 2 workers busy and 4 jobs queued"


def test_domain_error_without_retry_after(bare: TestClient) -> None:
    response = bare.get("/slow")
    body = _problem(response, 504)
    assert "retry-after" not in response.headers
    assert body["type"] == "https://initscope.dev/problems/too-slow"
    assert body["detail"] == "Too slow"


@pytest.mark.parametrize("path", ["/bug", "/unmapped"])
def test_unexpected_errors_are_opaque_500s(bare: TestClient, path: str) -> None:
    response = bare.get(path)
    body = _problem(response, 500)
    assert body["type"] == "https://initscope.dev/problems/internal"
    assert "secret" not in response.text
    assert "oops" not in response.text
    assert "Traceback" not in response.text


def _assert_too_large(response: Any) -> None:
    body = _problem(response, 413)
    assert body["type"] == "https://initscope.dev/problems/content-too-large"
    assert str(LIMIT) in body["detail"]


def _padded(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    head = b'{"network": null, "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_body_over_the_limit_with_content_length(bare: TestClient) -> None:
    response = bare.post(
        "/analyze", content=_padded(LIMIT + 1), headers={"content-type": "application/json"}
    )
    assert response.request.headers["content-length"] == str(LIMIT + 1)
    _assert_too_large(response)


def test_body_over_the_limit_anywhere_is_413_first(bare: TestClient) -> None:
    _assert_too_large(bare.post("/nowhere", content=_padded(LIMIT * 2)))


def _chunks(body: bytes, size: int = 300) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_body_over_the_limit_chunked(bare: TestClient) -> None:
    response = bare.post(
        "/analyze",
        content=_chunks(_padded(LIMIT + 1)),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    _assert_too_large(response)


def test_body_at_the_limit_chunked_reaches_validation(bare: TestClient) -> None:
    response = bare.post(
        "/analyze", content=_chunks(_padded(LIMIT)), headers={"content-type": "application/json"}
    )
    by_loc = {tuple(e["loc"]): e["type"] for e in _problem(response, 422)["errors"]}
    assert by_loc == {
        ("body", "network"): "model_attributes_type",
        ("body", "pad"): "extra_forbidden",
    }


def test_every_post_operation_declares_its_problems(app: FastAPI) -> None:
    document = app.openapi()
    schema = document["components"]["schemas"]["ProblemDetails"]
    assert set(schema["required"]) == {"type", "title", "status", "detail", "instance"}
    ref = {"$ref": "#/components/schemas/ProblemDetails"}
    for path in OPERATIONS:
        declared = document["paths"][path]["post"]["responses"]
        for code in ("400", "406", "413", "415", "422", "503", "504"):
            assert declared[code]["content"] == {problems.MEDIA_TYPE: {"schema": ref}}, path
        assert "Retry-After" in declared["503"]["headers"]
        assert "Accept-Post" in declared["415"]["headers"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
