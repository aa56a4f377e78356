"""Prometheus metrics at ``GET /metrics``: one registry per app (tests build many apps).

Series, all prefixed ``initscope_``:

- ``http_requests_total`` and ``http_request_duration_seconds`` by method, route template
  (``unmatched`` when no route matched) and status, from an ASGI middleware;
- ``job_duration_seconds`` by task and outcome, ``rejections_total`` by lane and reason and
  ``pool_restarts_total`` by reason, fed by the runner through :class:`Metrics`, which is the
  runner's observer (``RunnerObserver`` in ``initscope.runner``);
- ``runner_in_flight``, ``runner_queued``, per lane (``cheap``, ``regular``)
  ``runner_lane_in_flight``, ``runner_lane_queued`` and ``runner_expected_wait_seconds``, per
  task and lane ``runner_throughput_macs_per_second`` (one worker's measured rate),
  ``cache_requests_total`` by result, ``cache_entries`` and ``cache_bytes``, read from
  ``app.state`` at scrape time;
- ``key_requests_total`` by key and ``key_rejections_total`` by key and reason (``share``: the
  key held its share of the pool), ``unauthorized_total`` by reason (``missing``,
  ``invalid``), fed by :class:`initscope.http.auth.Gate`; a key is its hashed id
  (:func:`initscope.http.auth.key_id`), never the key, and only configured keys are labels.

``/metrics`` is left out of the OpenAPI document: it is for the scraper, in a format that
Prometheus defines and JSON Schema cannot describe, not part of the API clients code against.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds: a probe takes ~1 ms, the book's analysis ~20 ms, the largest admitted one seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OUTCOMES = ("ok", "error", "timeout", "crashed", "cancelled")
REJECTIONS = ("expected_wait", "queue_full", "draining", "pool_unavailable")
LANES = ("cheap", "regular")
RESTARTS = ("timeout", "crashed")


def route_template(scope: Scope) -> str:
    """The matched route's path (``/analyze``), not the raw path; ``unmatched`` for 404s."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"


class _StateCollector(Collector):
    """Gauges and counters owned by other objects on ``app.state``, read when scraped."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        runner = getattr(self._state, "runner", None)
        for name, doc in (
            ("in_flight", "Jobs running in worker processes now."),
            ("queued", "Admitted jobs waiting for a worker."),
        ):
            value = getattr(runner, name, None)
            if isinstance(value, int | float):
                yield GaugeMetricFamily(f"initscope_runner_{name}", doc, value=value)
        if callable(lanes := getattr(runner, "lanes", None)):
            families = [
                GaugeMetricFamily(name, doc, labels=["lane"])
                for name, doc in (
                    ("initscope_runner_lane_in_flight", "Jobs of the lane running now."),
                    ("initscope_runner_lane_queued", "Jobs of the lane waiting for a worker."),
                    (
                        "initscope_runner_expected_wait_seconds",
                        "How long a new request of the lane would wait (admission refuses "
                        "it beyond max_wait_s).",
                    ),
                )
            ]
            for lane, values in lanes().items():
                for family, value in zip(families, values, strict=True):
                    family.add_metric([lane], value)
            yield from families
        if callable(throughputs := getattr(runner, "throughputs", None)):
            rates = GaugeMetricFamily(
                "initscope_runner_throughput_macs_per_second",
                "Multiply-adds per second of one worker, measured from finished jobs (EWMA).",
                labels=["task", "lane"],
            )
            for (task, lane), rate in sorted(throughputs().items()):
                rates.add_metric([task, lane], rate)
            yield rates
        cache = getattr(self._state, "cache", None)
        if cache is not None:
            requests = CounterMetricFamily(
                "initscope_cache_requests",
                "Result-cache lookups: hit, miss (computed), not_modified (304 on a matching "
                "ETag), or coalesced (waited for an identical request in flight).",
                labels=["result"],
            )
            for result, count in (
                ("hit", cache.hits),
                ("miss", cache.misses),
                ("not_modified", cache.not_modified),
                ("coalesced", cache.coalesced),
            ):
                requests.add_metric([result], count)
            yield requests
            yield CounterMetricFamily(
                "initscope_cache_evictions", "Results evicted from the cache.", cache.evictions
            )
            yield GaugeMetricFamily("initscope_cache_entries", "Results cached.", len(cache))
            yield GaugeMetricFamily("initscope_cache_bytes", "Bytes of cached bodies.", cache.size)


class Metrics:
    """The app's instruments, and the runner's observer.

    The observer methods may be called from the pool's management thread; prometheus_client's
    instruments are thread-safe.
    """

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "initscope_http_requests", "HTTP requests.", labels, registry=self.registry
        )
        self.latency = Histogram(
            "initscope_http_request_duration_seconds",
            "Time from the request to the end of the response.",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.jobs = Histogram(
            "initscope_job_duration_seconds",
            "Duration of one job in the process pool (simulation, sweep or rendering), "
            "as reported by the runner.",
            ["task", "outcome"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "initscope_rejections",
            "Requests refused by the runner's admission, by lane and reason.",
            ["lane", "reason"],
            registry=self.registry,
        )
        self.pool_restarts = Counter(
            "initscope_pool_restarts",
            "Process-pool restarts after a worker timed out or died.",
            ["reason"],
            registry=self.registry,
        )
        # --- per API key (initscope.http.auth) ---
        self.key_requests = Counter(
            "initscope_key_requests",
            "Requests admitted per API key (hashed id: SHA-256, first 12 hex digits).",
            ["key"],
            registry=self.registry,
        )
        self.key_rejections = Counter(
            "initscope_key_rejections",
            "Requests refused with 429 per API key (hashed id): the key held its share.",
            ["key", "reason"],
            registry=self.registry,
        )
        self.unauthorized_requests = Counter(
            "initscope_unauthorized",
            "Requests refused with 401: no API key (missing) or a wrong one (invalid).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("missing", "invalid"):
            self.unauthorized_requests.labels(reason)
        # --- end per API key ---
        for lane in LANES:
            for reason in REJECTIONS:
                self.rejections.labels(lane, reason)
        for reason in RESTARTS:
            self.pool_restarts.labels(reason)
        self.registry.register(_StateCollector(state))

    # RunnerObserver
    def job_finished(self, task: str, seconds: float, outcome: str) -> None:
        self.jobs.labels(task, outcome).observe(seconds)

    def rejected(self, reason: str, lane: str) -> None:
        self.rejections.labels(lane, reason).inc()

    def pool_restarted(self, reason: str) -> None:
        self.pool_restarts.labels(reason).inc()

    # KeyObserver (initscope.http.auth)
    def keys_configured(self, keys: list[str]) -> None:
        for key in keys:
            self.key_requests.labels(key)
            self.key_rejections.labels(key, "share")

    def key_request(self, key: str) -> None:
        self.key_requests.labels(key).inc()

    def key_rejected(self, key: str, reason: str) -> None:
        self.key_rejections.labels(key, reason).inc()

    def unauthorized(self, reason: str) -> None:
        self.unauthorized_requests.labels(reason).inc()


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by route template and status (pure ASGI)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            labels = (scope["method"], route_template(scope), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)


async def exposition(request: Request) -> Response:
    """The text format (or OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(request.app.state.metrics.registry), media_type=content_type)


def install(app: FastAPI) -> Metrics:
    """Registry, HTTP middleware and ``GET /metrics``; the runner observer is
    ``app.state.metrics``."""
    metrics = Metrics(app.state)
    app.state.metrics = metrics
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.add_api_route("/metrics", exposition, methods=["GET"], include_in_schema=False)
    return metrics
