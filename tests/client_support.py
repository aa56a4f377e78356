"""Ways for the client and the CLI to reach a real app in tests, and what they send it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
from fastapi.testclient import TestClient

PNG = b"\x89PNG\r\n\x1a\n"
SMALL: dict[str, Any] = {  # a request that costs milliseconds
    "network": {
        "input_dim": 20,
        "depth": 3,
        "width": 20,
        "activation": "relu",
        "init": "he_normal",
    },
    "input": {"samples": 200},
    "histogram": {"bins": 10},
}


class AppTransport(httpx.BaseTransport):
    """A blocking transport into an app already running under ``TestClient`` (whose
    lifespan owns the process pool): what ``httpx.ASGITransport`` is for async code."""

    def __init__(self, app: TestClient) -> None:
        self.app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.app.request(
            request.method,
            request.url.raw_path.decode(),
            content=request.read(),
            headers=dict(request.headers),
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def live_server(timeout: float = 60.0) -> Iterator[str]:
    """``initscope serve`` on a free loopback port with one worker; its base URL once /livez
    answers (polled, bounded by ``timeout``); stopped on exit."""
    port = free_port()
    script = Path(sys.executable).with_name("initscope")
    process = subprocess.Popen(
        [str(script), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**os.environ, "INITSCOPE_BLAS_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/livez", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /livez within {timeout} s")
            time.sleep(0.1)  # a real process is starting
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
