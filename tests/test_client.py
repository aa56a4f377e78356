"""initscope.client against the real app (ASGI and a live uvicorn) and against scripted answers."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from initscope import client as ic
from initscope.config import Settings
from initscope.http.api import create_app
from initscope.schemas import AnalyzeRequest, AnalyzeResponse, CompareResponse, SweepResponse

from tests.client_support import PNG, SMALL, AppTransport, live_server

BAD_INIT: dict[str, Any] = {
    "network": {**SMALL["network"], "init": {"scheme": "kaiming"}},
}
SWEEP: dict[str, Any] = {
    "activation": "tanh",
    "depth": 4,
    "width": 16,
    "samples": 64,
    "x": {"param": "sigma_w2", "values": [0.5, 1.5]},
    "y": {"param": "sigma_b2", "values": [0.0, 0.1]},
    "metric": "chi_1",
    "source": "theory",
}


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    """A response body without its timing."""
    return {**body, "meta": {**body["meta"], "elapsed_ms": 0.0}}


# --- the real app ------------------------------------------------------------------------------


def test_client_against_the_app_matches_the_raw_api(client: TestClient) -> None:
    with client_for(client) as initscope:
        result = initscope.analyze(AnalyzeRequest.model_validate(SMALL))
    raw = client.post("/analyze", json=SMALL).json()
    assert isinstance(result, AnalyzeResponse)
    assert _stable(result.model_dump(mode="json")) == _stable(raw)
    assert result.diagnosis.verdict == "healthy"


def test_figures_come_back_as_bytes(client: TestClient) -> None:
    with client_for(client) as initscope:
        png = initscope.analyze(SMALL, format="png", width=400, height=300)
        svg = initscope.analyze(SMALL, format="svg")
    assert png.startswith(PNG)
    assert int.from_bytes(png[16:20], "big") == 400
    assert svg.lstrip().startswith(b"<?xml")


def test_validation_errors_name_the_field(client: TestClient) -> None:
    with client_for(client) as initscope, pytest.raises(ic.InvalidRequest) as caught:
        initscope.analyze(BAD_INIT)
    error = caught.value
    assert error.status == 422
    assert [e.loc for e in error.errors] == [("body", "network", "init")]
    assert "'kaiming'" in error.errors[0].msg
    assert "body.network.init: Input tag 'kaiming'" in str(error)


def test_limits_are_422_with_the_services_message(client: TestClient) -> None:
    body = {"network": {**SMALL["network"], "depth": 50}}
    with client_for(client) as initscope, pytest.raises(ic.InvalidRequest) as caught:
        initscope.analyze(body)
    (error,) = caught.value.errors
    assert error.where == "body.network.depth"
    assert error.msg == "depth must be at most 20, got 50"


def test_figure_sizes_without_a_figure_format_are_refused_before_sending() -> None:
    with (
        ic.Client(transport=httpx.MockTransport(_never)) as initscope,
        pytest.raises(ValueError, match="width, height and dpi size a figure"),
    ):
        initscope.analyze(SMALL, width=400)  # type: ignore[call-overload]


def test_async_client_over_asgi_transport() -> None:
    app = create_app(Settings(workers=1, blas_threads=1))

    async def scenario() -> tuple[Any, ...]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with ic.AsyncClient("http://initscope", transport=transport) as initscope:
                analysis = await initscope.analyze(SMALL)
                comparison = await initscope.compare(
                    {
                        "base": SMALL["network"],
                        "variants": [{"name": "he"}, {"name": "xavier", "init": "lecun_normal"}],
                        "input": {"samples": 200},
                    }
                )
                sweep = await initscope.sweep(SWEEP)
                heatmap = await initscope.sweep(SWEEP, format="png")
                initializers = await initscope.initializers()
                activations = await initscope.activations()
                health = await initscope.health()
                with pytest.raises(ic.InvalidRequest) as caught:
                    await initscope.compare({"variants": [{"name": "a"}]})
                return (
                    analysis,
                    comparison,
                    sweep,
                    heatmap,
                    initializers,
                    activations,
                    health,
                    caught.value,
                )

    analysis, comparison, sweep, heatmap, initializers, activations, health, error = asyncio.run(
        scenario()
    )
    assert isinstance(analysis, AnalyzeResponse)
    assert len(analysis.layers) == 3
    assert isinstance(comparison, CompareResponse)
    assert [row.name for row in comparison.table] == ["he", "xavier"]
    assert isinstance(sweep, SweepResponse)
    assert sweep.theory is not None
    assert len(sweep.theory) == 2
    assert len(sweep.theory[0]) == 2
    assert heatmap.startswith(PNG)
    assert "he_normal" in {x.scheme for x in initializers}
    assert "leaky_relu" in {x.name for x in activations}
    assert health == ic.Health(True, "ready", {"status": "ready"})
    assert [e.where for e in error.errors] == ["body.variants"]


def test_live_uvicorn_on_loopback() -> None:
    with live_server() as url, ic.Client(url, timeout=60) as initscope:
        assert initscope.health().ready
        result = initscope.analyze(SMALL)
        png = initscope.analyze(SMALL, format="png")
        with pytest.raises(ic.InvalidRequest):
            initscope.analyze(BAD_INIT)
    assert result.diagnosis.verdict == "healthy"
    assert png.startswith(PNG)


def test_nothing_listening_is_a_transport_error() -> None:
    from tests.client_support import free_port

    with (
        ic.Client(f"http://127.0.0.1:{free_port()}", retries=0) as initscope,
        pytest.raises(ic.TransportError) as caught,
    ):
        initscope.health()
    assert not isinstance(caught.value, ic.Timeout)


# --- scripted answers ------------------------------------------------------------------------


def client_for(app: TestClient, **options: Any) -> ic.Client:
    return ic.Client("http://initscope", transport=AppTransport(app), **options)


def _never(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.method} {request.url}")


def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering with ``answers`` in turn, and the requests it received."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return httpx.MockTransport(handler), seen


@pytest.fixture(scope="module")
def analysis_body(client: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = client.post("/analyze", json=SMALL).json()
    return body


def overloaded(retry_after: str | None = "2") -> httpx.Response:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return httpx.Response(
        503,
        headers={"content-type": "application/problem+json", **headers},
        content=json.dumps(
            {
                "type": "https://initscope.dev/problems/overloaded",
                "title": "Service Unavailable",
                "status": 503,
                "detail": "the queue is full",
            }
        ).encode(),
    )


def recorder() -> tuple[Callable[[float], None], list[float]]:
    slept: list[float] = []
    return slept.append, slept


def test_503_with_retry_after_is_retried(analysis_body: dict[str, Any]) -> None:
    transport, seen = scripted(
        overloaded("2"), overloaded("1"), httpx.Response(200, json=analysis_body)
    )
    sleep, slept = recorder()
    with ic.Client(transport=transport, retries=3, jitter=0, sleep=sleep) as initscope:
        result = initscope.analyze(SMALL)
    assert result.diagnosis.verdict == "healthy"
    assert len(seen) == 3
    assert slept == [2.0, 1.0]  # Retry-After wins over the backoff (0.5, 1.0) when larger
    assert all(json.loads(r.content) == SMALL for r in seen)


def test_backoff_grows_when_retry_after_is_small_and_is_capped() -> None:
    transport, seen = scripted(overloaded("0"))
    sleep, slept = recorder()
    with (
        ic.Client(transport=transport, retries=4, jitter=0, max_delay=3.0, sleep=sleep) as c,
        pytest.raises(ic.Unavailable),
    ):
        c.analyze(SMALL)
    assert slept == [0.5, 1.0, 2.0, 3.0]
    assert len(seen) == 5


def test_the_retry_limit_is_respected() -> None:
    transport, seen = scripted(overloaded("1"))
    sleep, slept = recorder()
    with (
        ic.Client(transport=transport, retries=2, jitter=0, sleep=sleep) as initscope,
        pytest.raises(ic.Unavailable) as caught,
    ):
        initscope.analyze(SMALL)
    assert len(seen) == 3
    assert len(slept) == 2
    error = caught.value
    assert (error.status, error.title, error.detail) == (
        503,
        "Service Unavailable",
        "the queue is full",
    )
    assert error.type == "https://initscope.dev/problems/overloaded"
    assert error.retry_after == 1.0


def test_a_long_retry_after_is_capped() -> None:
    transport, _ = scripted(overloaded("3600"), httpx.Response(200, json=[]))
    sleep, slept = recorder()
    with ic.Client(transport=transport, jitter=0, max_delay=30, sleep=sleep) as initscope:
        assert initscope.activations() == []
    assert slept == [30.0]


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    transport, _ = scripted(overloaded(when), httpx.Response(200, json=[]))
    sleep, slept = recorder()
    with ic.Client(transport=transport, jitter=0, sleep=sleep) as initscope:
        initscope.initializers()
    (wait,) = slept
    assert 15 <= wait <= 20


def test_jitter_is_deterministic_with_a_seeded_rng() -> None:
    waits = []
    for _ in range(2):
        transport, _ = scripted(overloaded("1"))
        sleep, slept = recorder()
        with (
            ic.Client(
                transport=transport, retries=3, jitter=0.5, rng=random.Random(7), sleep=sleep
            ) as c,
            pytest.raises(ic.Unavailable),
        ):
            c.activations()
        waits.append(slept)
    assert waits[0] == waits[1]
    assert all(1.0 <= w <= 1.5 for w in waits[0][:1])


def test_503_without_retry_after_is_not_retried() -> None:
    transport, seen = scripted(overloaded(None))
    sleep, slept = recorder()
    with (
        ic.Client(transport=transport, sleep=sleep) as initscope,
        pytest.raises(ic.Unavailable) as caught,
    ):
        initscope.analyze(SMALL)
    assert len(seen) == 1
    assert slept == []
    assert caught.value.retry_after is None


def test_problem_json_fields_and_errors() -> None:
    body = {
        "type": "https://initscope.dev/problems/validation",
        "title": "Your request is not valid",
        "status": 422,
        "detail": "1 field is invalid",
        "instance": "/analyze",
        "errors": [
            {
                "loc": ["body", "network", "depth"],
                "msg": "depth must be at most 64",
                "type": "less_than_equal",
            }
        ],
    }
    answer = httpx.Response(
        422, headers={"content-type": "application/problem+json"}, content=json.dumps(body).encode()
    )
    transport, _ = scripted(answer)
    with ic.Client(transport=transport) as initscope, pytest.raises(ic.InvalidRequest) as caught:
        initscope.analyze(SMALL)
    error = caught.value
    assert (error.type, error.title, error.status, error.detail, error.instance) == (
        body["type"],
        body["title"],
        422,
        body["detail"],
        "/analyze",
    )
    assert error.errors == (
        ic.FieldProblem(
            ("body", "network", "depth"), "depth must be at most 64", "less_than_equal"
        ),
    )


def test_problem_json_errors_with_json_pointers() -> None:
    body = {
        "title": "Unprocessable",
        "status": 422,
        "errors": [{"pointer": "/network/depth", "detail": "too deep"}],
    }
    answer = httpx.Response(
        422, headers={"content-type": "application/problem+json"}, content=json.dumps(body).encode()
    )
    transport, _ = scripted(answer)
    with ic.Client(transport=transport) as initscope, pytest.raises(ic.InvalidRequest) as caught:
        initscope.analyze(SMALL)
    assert [str(e) for e in caught.value.errors] == ["body.network.depth: too deep"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (406, ic.NotAcceptable),
        (504, ic.DeadlineExceeded),
        (500, ic.ProblemError),
        (404, ic.ProblemError),
    ],
)
def test_legacy_bodies_map_to_the_hierarchy(status: int, kind: type[ic.ProblemError]) -> None:
    transport, _ = scripted(httpx.Response(status, json={"detail": "something specific"}))
    with ic.Client(transport=transport) as initscope, pytest.raises(kind) as caught:
        initscope.analyze(SMALL)
    assert type(caught.value) is kind
    assert caught.value.status == status
    assert caught.value.detail == "something specific"


def test_a_non_json_error_body_is_kept_as_detail() -> None:
    transport, _ = scripted(httpx.Response(502, text="Bad Gateway from the proxy"))
    with ic.Client(transport=transport) as initscope, pytest.raises(ic.ProblemError) as caught:
        initscope.activations()
    assert (caught.value.status, caught.value.title) == (502, "Bad Gateway")
    assert caught.value.detail == "Bad Gateway from the proxy"


def test_timeouts_are_explicit() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with (
        ic.Client(transport=httpx.MockTransport(slow), timeout=0.5) as initscope,
        pytest.raises(ic.Timeout, match="no answer in time"),
    ):
        initscope.analyze(SMALL)


def test_the_request_model_and_the_dict_send_the_same_body() -> None:
    transport, seen = scripted(httpx.Response(503))
    with ic.Client(transport=transport) as initscope:
        for request in (SMALL, AnalyzeRequest.model_validate(SMALL)):
            with pytest.raises(ic.Unavailable):
                initscope.analyze(request)
    sent = [AnalyzeRequest.model_validate_json(r.content) for r in seen]
    assert sent[0] == sent[1] == AnalyzeRequest.model_validate(SMALL)
    assert seen[0].headers["accept"] == "application/json"


def test_health_reports_a_starting_service_without_raising() -> None:
    transport, seen = scripted(
        httpx.Response(503, json={"status": "starting"}, headers={"retry-after": "1"})
    )
    with ic.Client(transport=transport, sleep=_no_sleep) as initscope:
        health = initscope.health()
    assert health == ic.Health(False, "starting", {"status": "starting"})
    assert len(seen) == 1


def _no_sleep(seconds: float) -> None:
    raise AssertionError("health() must not retry")
