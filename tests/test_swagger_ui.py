"""/docs and /redoc work offline: a real Chromium drives Swagger UI against a real server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs a system Chromium: `apt-get install -y chromium` (Debian)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``python -m initscope`` on a free loopback port, until it answers /readyz (60 s at most)."""
    port = _free_port()
    env = {**os.environ, "INITSCOPE_WORKERS": "1", "INITSCOPE_BLAS_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "initscope", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            assert process.poll() is None, process.stderr and process.stderr.read().decode()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready in 60 s"
            time.sleep(0.1)  # a real process is starting
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def tab(browser: Browser, server: str) -> Iterator[tuple[Page, list[str]]]:
    """A page that reaches only the server, as with no internet; and what it tried elsewhere."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, base_url=server)
    elsewhere: list[str] = []

    def offline(route: Route) -> None:
        url = route.request.url
        if url.startswith((server, "blob:", "data:")):
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", offline)
    yield page, elsewhere
    page.close()


def _report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


@needs_chromium
def test_swagger_ui_executes_analyze(
    tab: tuple[Page, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    page, elsewhere = tab
    page.goto("/docs")
    operation = page.locator("#operations-analysis-analyze")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    live = operation.locator(".live-responses-table .response").first
    live.wait_for(timeout=120_000)
    assert live.locator(".response-col_status").inner_text().strip() == "200"
    body = live.locator(".response-col_description pre").first.inner_text()
    assert '"verdict": "saturation"' in body  # chapter 6: sigmoid with std 1 saturates
    live.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "swagger-ui.png"
    page.screenshot(path=shot)
    _report(capsys, f"Swagger UI screenshot: {shot}")
    assert elsewhere == []


@needs_chromium
def test_redoc_renders_offline(
    tab: tuple[Page, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    page, elsewhere = tab
    page.goto("/redoc")
    heading = page.get_by_role("heading", name="Analyse a network's initialisation")
    heading.wait_for(timeout=60_000)
    shot = ARTIFACTS / "redoc.png"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=shot)
    _report(capsys, f"ReDoc screenshot: {shot}")
    # The bundle's "API docs by Redocly" footer links its logo from Redocly's CDN; without it
    # the page is the same less a 16 px image.
    assert elsewhere in ([], ["https://cdn.redoc.ly/redoc/logo-mini.svg"])
