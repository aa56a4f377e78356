"""Load benchmark: the HTTP service under concurrent clients on loopback. Run by hand.

    .venv/bin/python benchmarks/load.py [--url http://127.0.0.1:8000] [--requests 300]

Without ``--url`` it starts ``python -m initscope`` on a free port (default settings) and stops
it afterwards. Every phase is bounded by ``--requests`` and ``--seconds``. Phases:

1. the book's request (examples/analyze-sigmoid-std1.json: 5 x 100 sigmoid, 1000 samples,
   each with a seed of its own so that none is a cache hit) from 1, 4, 16 and 64 closed-loop
   clients that retry at once on a 503: answered share, answered throughput, p50/p99
   latency of the answered requests (issue 13's target: at 16 clients >= 95 % answered with
   p99 <= 1 s; at 64 the answered throughput stays at the saturation level);
2. one client of the book's request and one of a 256 x 3 x 64 request while two clients
   keep two expensive requests (2048 x 10 x 1024) in the pool (honouring Retry-After), with
   /livez probed alongside: the cheap requests' median (target <= 200 ms).

The compute limit is the server's regular workers x one worker's throughput, 1 / the engine
time of one book request measured in this process (``analyze`` on one BLAS thread, best of 5);
the ratio of the saturated answered throughput to it (target >= 0.8) says how much the HTTP
layer, pickling and scheduling cost. Timings on a shared machine are noisy: compare ratios
taken in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if importlib.util.find_spec("initscope") is None:  # run as a file without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import httpx2 as httpx
from initscope.config import Settings
from initscope.engine.analysis import analyze
from initscope.schemas import AnalyzeRequest
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
SEEDS = itertools.count(1_000_000, 1_000_000)  # per phase, offset by the request's index
# The service's plumbing is measured, not the advice (bench_advice.py times that): no request
# here asks for a verified recommendation, and the expensive one would not fit beside it.
BOOK = {
    **json.loads((ROOT / "examples" / "analyze-sigmoid-std1.json").read_text()),
    "recommend": False,
}
EXPENSIVE = {
    "recommend": False,
    "network": {
        "input_dim": 1024,
        "depth": 10,
        "width": 1024,
        "activation": "relu",
        "init": "he_normal",
    },
    "input": {"samples": 2048},
}
SMALL = {  # the cheap request beside two expensive ones
    "recommend": False,
    "network": {
        "input_dim": 64,
        "depth": 3,
        "width": 64,
        "activation": "relu",
        "init": "he_normal",
    },
    "input": {"samples": 256},
}


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, status: int, latency: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies.append(latency)

    def line(self, label: str) -> str:
        done = sum(self.statuses.values())
        ok = sorted(self.latencies)

        def pct(q: float) -> float:
            return 1000 * ok[min(len(ok) - 1, int(q * len(ok)))] if ok else float("nan")

        return (
            f"{label:<34} {done:>5} req  answered {len(ok) / max(done, 1):>6.1%}  "
            f"{self.answered_per_s:>7.1f} ok/s  "
            f"p50 {pct(0.5):>7.1f} ms  p99 {pct(0.99):>7.1f} ms  "
            f"{dict(sorted(self.statuses.items()))}"
        )

    @property
    def answered_per_s(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def _clients(
    client: httpx.AsyncClient, path: str, body: Any, n: int, requests: int, seconds: float
) -> Phase:
    phase = Phase()
    budget = iter(range(requests))
    end = time.perf_counter() + seconds

    async def one() -> None:
        while (i := next(budget, None)) is not None and time.perf_counter() < end:
            start = time.perf_counter()
            if body is None:
                response = await client.get(path)
            else:  # a seed of its own: the same request would be answered from the cache
                response = await client.post(path, json={**body, "seed": next(SEEDS) + i})
            phase.add(response.status_code, time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    phase.seconds = time.perf_counter() - start
    return phase


def engine_seconds() -> float:
    job = AnalyzeRequest.model_validate(BOOK).job(Settings())
    with threadpool_limits(limits=1):
        analyze(job)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            analyze(job)
            times.append(time.perf_counter() - start)
    return min(times)


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(server: int | None) -> dict[str, float]:
    """CPU time (user + system) so far of this process (the load generator), of the server's
    own process and of all its descendants (the forkserver and the workers), from /proc."""
    usage = {"client": time.process_time(), "server": 0.0, "workers": 0.0}
    if server is None:
        return usage
    parent: dict[int, int] = {}
    spent: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        spent[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    usage["server"] = spent.get(server, 0.0)
    for pid in spent:
        ancestor = parent.get(pid)
        while ancestor not in (None, 0, 1, server):
            ancestor = parent.get(ancestor)
        if ancestor == server and pid != server:
            usage["workers"] += spent[pid]
    return usage


def cpu_line(before: dict[str, float], after: dict[str, float], answered: int) -> str:
    per = {k: 1000 * (after[k] - before[k]) / max(answered, 1) for k in before}
    return (
        f"{'':<34} CPU per answered request: load generator {per['client']:.1f} ms, "
        f"server process {per['server']:.1f} ms, workers {per['workers']:.1f} ms"
    )


async def _expensive(client: httpx.AsyncClient, stop: asyncio.Event, phase: Phase) -> None:
    """One closed-loop client of the expensive request until ``stop``, honouring Retry-After."""
    seeds = itertools.count(7)
    while not stop.is_set():
        start = time.perf_counter()
        response = await client.post("/analyze", json={**EXPENSIVE, "seed": next(seeds)})
        phase.add(response.status_code, time.perf_counter() - start)
        if response.status_code == 503:
            with contextlib.suppress(TimeoutError):
                retry = float(response.headers.get("retry-after", "1"))
                await asyncio.wait_for(stop.wait(), retry)


async def bench(url: str, requests: int, seconds: float, server: int | None = None) -> None:
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    answered: dict[int, float] = {}
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await _clients(client, "/analyze", BOOK, 2, 10, seconds)  # warm-up
        for n in (1, 4, 16, 64):
            before = cpu_seconds(server)
            phase = await _clients(client, "/analyze", BOOK, n, requests, seconds)
            print(phase.line(f"book request, {n} clients"), flush=True)
            print(cpu_line(before, cpu_seconds(server), len(phase.latencies)), flush=True)
            answered[n] = phase.answered_per_s

        stop = asyncio.Event()
        heavy = Phase()
        expensive = [asyncio.create_task(_expensive(client, stop, heavy)) for _ in range(2)]
        await asyncio.sleep(0.5)  # let them reach the workers
        start = time.perf_counter()
        cheap, small, livez = await asyncio.gather(
            _clients(client, "/analyze", BOOK, 1, requests // 3, seconds),
            _clients(client, "/analyze", SMALL, 1, requests // 3, seconds),
            _clients(client, "/livez", None, 1, requests, seconds),
        )
        stop.set()
        await asyncio.gather(*expensive)
        heavy.seconds = time.perf_counter() - start
        print(cheap.line("book, 1 client, 2 expensive"))
        print(small.line("256 x 3 x 64, 1 client, 2 expensive"))
        print(livez.line("/livez meanwhile"))
        print(heavy.line("the 2 expensive clients"))

    workers = Settings().workers  # the server's default: one regular worker per usable CPU
    engine = engine_seconds()
    limit = workers / engine
    saturated = max(answered.values())
    print(
        f"\nengine time of the book request {1000 * engine:.1f} ms on one thread; compute limit "
        f"{workers} workers x {1 / engine:.1f} req/s = {limit:.1f} req/s; saturated answered "
        f"throughput {saturated:.1f} req/s: ratio {saturated / limit:.2f} (target >= 0.8); "
        f"at 64 clients {answered[64]:.1f} req/s, {answered[64] / saturated:.2f} of saturation"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server; default: start one")
    parser.add_argument("--requests", type=int, default=300, help="per phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    args = parser.parse_args()
    if args.url:
        asyncio.run(bench(args.url, args.requests, args.seconds))
        return
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "initscope", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,  # its JSON access log: one line per request
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        asyncio.run(bench(url, args.requests, args.seconds, server.pid))
    finally:
        server.terminate()
        print(f"server exit code after SIGTERM: {server.wait(timeout=30)}")


if __name__ == "__main__":
    main()
