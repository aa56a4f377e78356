"""SIGTERM to a real ``python -m initscope`` or ``initscope serve`` while a request runs: it is
answered, the process exits 0, and the whole shutdown is bounded by ``shutdown_timeout_s``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.test_runner import BIG, BOOK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _poll(check: Any, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return False


# The two commands are one server (initscope.http.server.serve).
COMMANDS = {
    "python -m initscope": [sys.executable, "-m", "initscope"],
    "initscope serve": [str(Path(sys.executable).with_name("initscope")), "serve"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_sigterm_drains_and_exits_zero(command: str) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "INITSCOPE_WORKERS": "1",
        "INITSCOPE_BLAS_THREADS": "1",
        "INITSCOPE_MAX_ADMITTED": "1",
        "INITSCOPE_SHUTDOWN_TIMEOUT_S": "1",
    }
    server = subprocess.Popen(
        [*COMMANDS[command], "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,  # the JSON log; a few lines, well within a pipe's buffer
        stderr=subprocess.PIPE,
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:

            def ready() -> bool:
                try:
                    return client.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            assert _poll(ready, 60), "the server did not become ready"
            slow: dict[str, httpx.Response] = {}
            thread = threading.Thread(
                target=lambda: slow.update(response=client.post("/analyze", json=BIG))
            )
            thread.start()
            # the big request is the one request held (max_admitted 1): another is refused
            # (no-cache: a cached answer would need no admission)
            assert _poll(
                lambda: "initscope_runner_in_flight 1.0" in client.get("/metrics").text, 30
            )
            fresh = {"cache-control": "no-cache"}
            assert client.post("/analyze", json=BOOK, headers=fresh).status_code == 503

            sent = time.monotonic()
            server.send_signal(signal.SIGTERM)
            exit_code = server.wait(timeout=30)
            elapsed = time.monotonic() - sent
            thread.join(timeout=5)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stderr is not None
        assert server.stdout is not None
        stderr = server.stderr.read().decode()
        stdout = server.stdout.read().decode()
        server.stderr.close()
        server.stdout.close()

    assert exit_code == 0, stderr
    assert elapsed < 1 + 5  # shutdown_timeout_s and a generous margin for a busy machine
    response = slow["response"]
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert "shutting down" in response.json()["detail"]
    # the same logging either way: one JSON object a line, the access line for each request
    records = [json.loads(line) for line in stdout.splitlines()]
    assert {"initscope.access", "uvicorn.error"} <= {r["logger"] for r in records}
