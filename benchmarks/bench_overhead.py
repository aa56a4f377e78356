"""Where a book-shape /analyze request's time goes besides the engine. Run by hand:

    .venv/bin/python benchmarks/bench_overhead.py [--example analyze-relu-he] [--repeat 40]

The request is ``examples/{--example}.json`` (default: the book's ReLU with He, 1000 samples x
5 layers x 100 units, healthy, so no recommendation is simulated and the overhead is the
largest share it can be). Three parts, medians of ``--repeat``, stages interleaved:

1. In this process, stage by stage, what one request costs: the JSON body parsed and validated
   (``json.loads`` + the request model, as FastAPI does), its ETag, ``to_jobs``, the job
   pickled and unpickled (what crosses the pipe), the engine itself on one BLAS thread (as a
   worker runs it), the result pickled and unpickled, the response model built from it
   (``to_json``) and its JSON bytes.
2. Through the ASGI app in this process (no socket): the whole HTTP layer with a runner that
   returns the precomputed result at once (``app``), the same app without our middleware
   (the difference is the middleware: request id and access log, metrics, the body limit;
   FastAPI's own exception handling stays), and the pool hop: ``runner.run(analyze, job)``
   in a real one-worker pool minus the ``meta.elapsed_ms`` the worker measured (pipe, pickling,
   the I/O thread, the loop's wake-up).
3. End to end over loopback against ``python -m initscope --workers 2`` (uvicorn, its JSON
   access log): one uncached request (``Cache-Control: no-cache``), and four identical
   requests sent at once against one (a seed of their own per round, so none is cached).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import pickle
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

if importlib.util.find_spec("initscope") is None:  # run as a file without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import httpx2 as httpx
from fastapi import FastAPI
from initscope.config import Settings
from initscope.engine.analysis import analyze
from initscope.http import cache
from initscope.http.api import create_app
from initscope.jobs import FigureOptions
from initscope.operations import ANALYZE
from initscope.results import Analysis
from initscope.runner import Runner
from initscope.schemas import AnalyzeRequest
from starlette.types import ASGIApp, Message
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
SEEDS = itertools.count(1_000_000)
WORKERS = ("--workers", "2")


def medians(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time (ms) per case: one warm-up each, then rounds in a rotating order."""
    for fn in cases.values():
        fn()
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeat):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            cases[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


async def amedians(
    cases: dict[str, Callable[[], Awaitable[object]]], repeat: int
) -> dict[str, float]:
    for fn in cases.values():
        await fn()
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeat):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            await cases[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def stages(raw: bytes, settings: Settings, repeat: int) -> tuple[dict[str, float], Analysis]:
    request = AnalyzeRequest.model_validate_json(raw)
    (_, job), *_ = ANALYZE.to_jobs(request, settings)
    with threadpool_limits(limits=1):
        result = analyze(job)
    model = ANALYZE.to_json(result)
    wanted = ("json", FigureOptions("png", None, None, 100))

    def engine() -> Analysis:
        with threadpool_limits(limits=1):
            return analyze(job)

    times = medians(
        {
            "parse + validate": lambda: AnalyzeRequest.model_validate(json.loads(raw)),
            "etag": lambda: cache.etag("/analyze", request, *wanted),  # type: ignore[arg-type]
            "to_jobs": lambda: ANALYZE.to_jobs(request, settings),
            "pickle job": lambda: pickle.loads(pickle.dumps(job, pickle.HIGHEST_PROTOCOL)),
            "engine": engine,
            "pickle result": lambda: pickle.loads(pickle.dumps(result, pickle.HIGHEST_PROTOCOL)),
            "to_json (model)": lambda: ANALYZE.to_json(result),
            "JSON bytes": lambda: model.model_dump_json(),
        },
        repeat,
    )
    sizes = (len(pickle.dumps(job)), len(pickle.dumps(result)), len(model.model_dump_json()))
    print(f"job {sizes[0]} B and result {sizes[1]} B pickled, response {sizes[2]} B")
    return times, result


class InstantRunner:
    """Answers every job with a precomputed result: the HTTP layer without the pool."""

    draining, ready = False, True

    def __init__(self, result: object) -> None:
        self.result = result

    @contextlib.asynccontextmanager
    async def admit(self, work: object = None) -> AsyncIterator[None]:
        yield

    async def run(self, fn: Callable[..., Any], *args: object, cost: object = None) -> Any:
        return self.result


async def post(app: ASGIApp, raw: bytes) -> int:
    """One ``POST /analyze`` through ``app`` (no socket): its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/analyze",
        "raw_path": b"/analyze",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            (b"cache-control", b"no-cache"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }
    sent = False
    status = 0

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # never disconnects
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)  # type: ignore[arg-type]
    return status


async def in_app(raw: bytes, settings: Settings, result: Analysis, repeat: int) -> dict[str, float]:
    app: FastAPI = create_app(settings)
    app.state.runner = InstantRunner(result)
    bare: FastAPI = create_app(settings)
    bare.user_middleware = []  # FastAPI's own stack only: routing and the exception handlers
    bare.state.runner = app.state.runner
    request = AnalyzeRequest.model_validate_json(raw)
    (_, job), *_ = ANALYZE.to_jobs(request, settings)
    runner = Runner(Settings(workers=1, blas_threads=1))
    hops: list[float] = []

    async def pool() -> None:
        start = time.perf_counter()
        done: Analysis = await runner.run(analyze, job)
        hops.append((time.perf_counter() - start) * 1e3 - done.meta.elapsed_ms)

    async def through(target: ASGIApp) -> None:
        assert await post(target, raw) == 200

    try:
        times = await amedians(
            {
                "app (all of HTTP)": lambda: through(app),
                "app, no middleware": lambda: through(bare),
                "pool": pool,
            },
            repeat,
        )
    finally:
        await runner.shutdown()
    del times["pool"]
    times["pool hop"] = statistics.median(hops)
    return times


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def over_loopback(url: str, body: dict[str, Any], repeat: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(seed: int, headers: dict[str, str] | None = None) -> None:
            response = await client.post("/analyze", json={**body, "seed": seed}, headers=headers)
            assert response.status_code == 200, response.text

        async def single() -> None:
            await one(next(SEEDS))

        async def fixed() -> None:
            await one(body.get("seed", 0), {"cache-control": "no-cache"})

        async def four() -> None:
            seed = next(SEEDS)
            await asyncio.gather(*(one(seed) for _ in range(4)))

        return await amedians(
            {"one, no-cache": fixed, "one (new seed)": single, "four identical": four}, repeat
        )


def loopback(body: dict[str, Any], repeat: int) -> dict[str, float]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "initscope", "--host", "127.0.0.1", "--port", str(port), *WORKERS],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            time.sleep(0.2)
        return asyncio.run(over_loopback(url, body, repeat))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--example", default="analyze-relu-he", help="a file of examples/")
    parser.add_argument("--repeat", type=int, default=40, help="rounds per part")
    parser.add_argument("--no-loopback", action="store_true", help="skip part 3")
    args = parser.parse_args()
    raw = (ROOT / "examples" / f"{args.example}.json").read_bytes()
    settings = Settings(workers=1, blas_threads=1)

    times, result = stages(raw, settings, args.repeat)
    print(f"\n{args.example}: medians of {args.repeat} (ms)")
    engine = times["engine"]
    for name, value in times.items():
        print(f"  {name:<24}{value:>9.3f}  {value / engine:>7.2%} of the engine")
    outside = sum(value for name, value in times.items() if name != "engine")
    print(f"  {'sum besides the engine':<24}{outside:>9.3f}  {outside / engine:>7.2%}")

    app_times = asyncio.run(in_app(raw, settings, result, args.repeat))
    print("\nthrough the ASGI app, no socket (ms)")
    for name, value in app_times.items():
        print(f"  {name:<24}{value:>9.3f}  {value / engine:>7.2%} of the engine")
    middleware = app_times["app (all of HTTP)"] - app_times["app, no middleware"]
    print(f"  {'= middleware':<24}{middleware:>9.3f}  {middleware / engine:>7.2%}")

    if not args.no_loopback:
        wire = loopback(json.loads(raw), args.repeat)
        print("\nover loopback, python -m initscope --workers 2 (ms)")
        for name, value in wire.items():
            print(f"  {name:<24}{value:>9.3f}  {value / engine:>7.2f}x the engine")
        ratio = wire["four identical"] / wire["one (new seed)"]
        print(f"  four identical in flight / one: {ratio:.2f}")


if __name__ == "__main__":
    main()
