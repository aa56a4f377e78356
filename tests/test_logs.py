"""Request ids and the JSON access log: records captured in-process, and a real uvicorn."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2 as httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.http.api import create_app
from initscope.http.logs import RequestIdFilter, log_config

from tests.test_cache import SMALL, CountingRunner

HEX32 = re.compile(r"[0-9a-f]{32}")
FIELDS = {"method", "path", "route", "status", "duration_ms", "request_id", "client"}


class FailingRunner:
    async def run(self, fn: Callable[..., Any], *args: object, cost: int | None = None) -> Any:
        raise RuntimeError("a bug")


class LoggingRunner(CountingRunner):
    async def run(self, fn: Callable[..., Any], *args: object, cost: int | None = None) -> Any:
        logging.getLogger("initscope.runner").warning("running %s", fn.__name__)
        return await super().run(fn, *args)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def fresh(app: FastAPI, caplog: pytest.LogCaptureFixture) -> Iterator[TestClient]:
    caplog.set_level(logging.INFO, logger="initscope")
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.runner = CountingRunner()
        yield client


def access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "initscope.access"]


def field(record: logging.LogRecord, name: str) -> Any:
    return vars(record)[name]  # an `extra` field of the record


def as_json(record: logging.LogRecord) -> dict[str, Any]:
    """The line the configured handler would write for this record."""
    spec = dict(log_config()["formatters"]["default"])
    formatter = logging.config.DictConfigurator({}).configure_formatter(spec)
    line = formatter.format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_access_line_is_json_with_every_field(
    fresh: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = fresh.post("/analyze?format=json", json=SMALL, headers={"x-request-id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    (record,) = access(caplog)
    line = as_json(record)
    assert set(line) >= FIELDS | {"level", "logger", "message", "timestamp"}
    assert line["method"] == "POST"
    assert line["path"] == "/analyze"
    assert line["route"] == "/analyze"
    assert line["status"] == 200
    assert line["request_id"] == "req-42"
    assert line["client"] == "testclient"
    assert line["level"] == "INFO"
    assert line["logger"] == "initscope.access"
    assert 0 < line["duration_ms"] < 60_000
    assert line["message"].startswith("POST /analyze 200 ")


@pytest.mark.parametrize(
    "sent", ["", "x" * 129, "two words", "a\tb", "<script>", "caf\u00e9", "a,b", '"q"']
)
def test_unsafe_request_id_is_replaced(
    fresh: TestClient, caplog: pytest.LogCaptureFixture, sent: str
) -> None:
    response = fresh.get("/activations", headers=[(b"x-request-id", sent.encode())])
    returned = response.headers["x-request-id"]
    assert HEX32.fullmatch(returned)
    assert field(access(caplog)[0], "request_id") == returned


def test_longest_safe_id_is_kept(fresh: TestClient) -> None:
    sent = "A-z_0.9:" * 16  # 128 characters
    assert fresh.get("/activations", headers={"x-request-id": sent}).headers["x-request-id"] == sent


def test_a_new_id_for_each_request_without_one(
    fresh: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [fresh.get("/activations").headers["x-request-id"] for _ in range(2)]
    assert all(HEX32.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]
    assert [field(r, "request_id") for r in access(caplog)] == ids


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "route"),
    [
        ("POST", "/analyze", {"json": {"network": {}}}, 422, "/analyze"),
        ("GET", "/nowhere", {}, 404, "unmatched"),
        ("DELETE", "/analyze", {}, 405, "/analyze"),
        ("POST", "/analyze", {"json": SMALL, "headers": {"accept": "text/csv"}}, 406, "/analyze"),
    ],
)
def test_errors_carry_the_id_and_are_logged(
    fresh: TestClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    route: str,
) -> None:
    headers = {"x-request-id": "err-1", **kwargs.pop("headers", {})}
    response = fresh.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status
    assert response.headers["x-request-id"] == "err-1"
    (record,) = access(caplog)
    logged = vars(record)
    assert (logged["status"], logged["route"], logged["request_id"]) == (status, route, "err-1")


def test_unhandled_error_is_a_500_with_the_id(
    app: FastAPI, fresh: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    app.state.runner = FailingRunner()
    response = fresh.post("/analyze", json=SMALL, headers={"x-request-id": "boom"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 500
    assert "Traceback" not in response.text
    (record,) = access(caplog)
    assert (field(record, "status"), field(record, "request_id")) == (500, "boom")


def test_probes_and_scrapes_are_not_logged(
    fresh: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    for path in ("/livez", "/readyz", "/metrics"):
        response = fresh.get(path, headers={"x-request-id": "probe"})
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "probe"
    assert access(caplog) == []
    fresh.get("/activations")
    assert [field(r, "path") for r in access(caplog)] == ["/activations"]


def test_records_inside_a_request_carry_its_id(
    app: FastAPI, fresh: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    app.state.runner = LoggingRunner()
    fresh.post("/analyze", json=SMALL, headers={"x-request-id": "inner"})
    (inner,) = (r for r in caplog.records if r.name == "initscope.runner")
    assert field(inner, "request_id") == "inner"
    logging.getLogger("initscope.runner").warning("outside")
    assert not hasattr(caplog.records[-1], "request_id")


SERVE = """
import uvicorn
from initscope.http import logs
from initscope.http.api import create_app
from initscope.config import Settings
uvicorn.run(create_app(Settings(workers=1, blas_threads=1)), host="127.0.0.1", port=0,
            log_config=logs.log_config("info"), access_log=False)
"""


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_uvicorn_with_this_log_config_writes_json_lines_only() -> None:
    """A real server: uvicorn's own lines are JSON too, its access log is off, ours is on."""
    seen: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", SERVE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as server:
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_lines, args=(server.stdout, lines), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60  # the interpreter, FastAPI and NumPy must import
            port = None
            while port is None:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                seen.append(line)
                if match := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line):
                    port = int(match.group(1))
            base = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{base}/livez").status_code == 200
            response = httpx.get(f"{base}/activations", headers={"x-request-id": "real-1"})
            assert response.headers["x-request-id"] == "real-1"
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
            reader.join(timeout=10)
        assert server.stderr is not None
        stderr = server.stderr.read()
    while not lines.empty():
        seen.append(lines.get())
    records = [json.loads(line) for line in seen]  # every line is one JSON object
    assert not any("color_message" in r for r in records)
    loggers = {r["logger"] for r in records}
    assert "uvicorn.error" in loggers
    assert "uvicorn.access" not in loggers
    (line,) = (r for r in records if r["logger"] == "initscope.access")
    assert line["path"] == "/activations"
    assert line["request_id"] == "real-1"
    assert line["client"] == "127.0.0.1"
    assert set(line) >= FIELDS
    assert server.returncode == 0, stderr


def test_plain_text_logs_on_request() -> None:
    spec = dict(log_config("debug", json=False)["formatters"]["default"])
    formatter = logging.config.DictConfigurator({}).configure_formatter(spec)
    record = logging.LogRecord("initscope.access", logging.INFO, __file__, 1, "GET / 200", (), None)
    assert formatter.format(record).endswith(" INFO initscope.access GET / 200")
    assert log_config("debug")["root"]["level"] == "DEBUG"
