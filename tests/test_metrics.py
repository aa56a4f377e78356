"""GET /metrics: the Prometheus exposition, parsed back with prometheus_client's parser."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.http.api import create_app
from initscope.http.metrics import Metrics
from prometheus_client.parser import text_string_to_metric_families

from tests.test_cache import SMALL, CountingRunner

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def fresh(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        app.state.runner = CountingRunner()
        yield client


def test_requests_counted_by_route_template_and_status(fresh: TestClient) -> None:
    assert fresh.post("/analyze", json=SMALL).status_code == 200
    assert fresh.post("/analyze", json=SMALL).status_code == 200
    assert fresh.post("/analyze", json={"network": {}}).status_code == 422
    assert fresh.get("/no/such/page").status_code == 404
    assert fresh.get("/analyze").status_code == 405
    samples = scrape(fresh)
    requests = "initscope_http_requests_total"
    assert value(samples, requests, method="POST", route="/analyze", status="200") == 2
    assert value(samples, requests, method="POST", route="/analyze", status="422") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert value(samples, requests, method="GET", route="/analyze", status="405") == 1
    assert not any("/no/such/page" in str(labels) for _, labels in samples)
    count = "initscope_http_request_duration_seconds_count"
    assert value(samples, count, method="POST", route="/analyze", status="200") == 2
    inf = value(
        samples,
        "initscope_http_request_duration_seconds_bucket",
        method="POST",
        route="/analyze",
        status="200",
        le="+Inf",
    )
    assert inf == 2
    assert value(samples, "initscope_cache_requests_total", result="hit") == 1
    assert value(samples, "initscope_cache_entries") == 1
    assert value(samples, "initscope_cache_bytes") > 0


def test_runner_gauges_are_read_when_scraped(app: FastAPI, fresh: TestClient) -> None:
    assert not any(name.startswith("initscope_runner_") for name, _ in scrape(fresh))
    app.state.runner = SimpleNamespace(in_flight=3, queued=5)
    samples = scrape(fresh)
    assert value(samples, "initscope_runner_in_flight") == 3
    assert value(samples, "initscope_runner_queued") == 5
    app.state.runner.queued = 0
    assert value(scrape(fresh), "initscope_runner_queued") == 0


def test_observer_feeds_jobs_rejections_and_restarts(app: FastAPI, fresh: TestClient) -> None:
    observer: Metrics = app.state.metrics
    zero = scrape(fresh)
    for lane in ("cheap", "regular"):
        for reason in ("expected_wait", "queue_full", "draining", "pool_unavailable"):
            assert value(zero, "initscope_rejections_total", lane=lane, reason=reason) == 0
    for reason in ("timeout", "crashed"):
        assert value(zero, "initscope_pool_restarts_total", reason=reason) == 0
    observer.job_finished("analyze", 0.02, "ok")
    observer.job_finished("analyze", 3.0, "ok")
    observer.job_finished("run_sweep", 7.0, "timeout")
    observer.rejected("queue_full", "regular")
    observer.rejected("queue_full", "regular")
    observer.rejected("expected_wait", "cheap")
    observer.pool_restarted("crashed")
    samples = scrape(fresh)
    jobs = "initscope_job_duration_seconds"
    assert value(samples, f"{jobs}_count", task="analyze", outcome="ok") == 2
    assert value(samples, f"{jobs}_sum", task="analyze", outcome="ok") == pytest.approx(3.02)
    assert value(samples, f"{jobs}_bucket", task="analyze", outcome="ok", le="0.025") == 1
    assert value(samples, f"{jobs}_bucket", task="run_sweep", outcome="timeout", le="5.0") == 0
    assert value(samples, f"{jobs}_count", task="run_sweep", outcome="timeout") == 1
    rejections = "initscope_rejections_total"
    assert value(samples, rejections, lane="regular", reason="queue_full") == 2
    assert value(samples, rejections, lane="cheap", reason="expected_wait") == 1
    assert value(samples, rejections, lane="cheap", reason="queue_full") == 0
    assert value(samples, "initscope_pool_restarts_total", reason="crashed") == 1


def test_each_app_has_its_own_registry(settings: Settings, fresh: TestClient) -> None:
    fresh.get("/livez")
    with TestClient(create_app(settings)) as other:
        elsewhere = scrape(other)
    livez = {"method": "GET", "route": "/livez", "status": "200"}
    assert ("initscope_http_requests_total", frozenset(livez.items())) not in elsewhere
    assert value(scrape(fresh), "initscope_http_requests_total", **livez) == 1


def test_openmetrics_on_request(fresh: TestClient) -> None:
    response = fresh.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_metrics_is_not_in_the_openapi_document(app: FastAPI) -> None:
    assert "/metrics" not in app.openapi()["paths"]


def test_the_real_runner_reports_job_durations_to_the_apps_metrics(app: FastAPI) -> None:
    with TestClient(app) as client:
        assert client.post("/analyze", json=SMALL).status_code == 200
        samples = scrape(client)
    count = value(samples, "initscope_job_duration_seconds_count", task="analyze", outcome="ok")
    assert count == 1.0
    assert value(samples, "initscope_runner_in_flight") == 0.0
    for lane in ("cheap", "regular"):  # the request has finished: nothing left in either lane
        assert value(samples, "initscope_runner_lane_in_flight", lane=lane) == 0.0
        assert value(samples, "initscope_runner_lane_queued", lane=lane) == 0.0
        assert value(samples, "initscope_runner_expected_wait_seconds", lane=lane) == 0.0
    # measured from the one finished job: its cost over its seconds, a positive finite rate
    throughput = "initscope_runner_throughput_macs_per_second"
    rate = value(samples, throughput, task="analyze", lane="cheap")  # SMALL is cheap
    assert 0 < rate < float("inf")
