"""The runner's promises: deadlines kill, deaths cost one job, bounded admission, draining.

The job functions are top-level here so that workers can unpickle them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.errors import (
    DeadlineExceeded,
    OutOfMemory,
    Overloaded,
    ShuttingDown,
    WorkerLost,
)
from initscope.http.api import create_app
from initscope.runner import Lane, Outcome, Runner
from pydantic import ValidationError


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def fail() -> None:
    raise ValueError("bad job")


def spin(seconds: float) -> int:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return os.getpid()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def allocate(nbytes: int) -> int:
    return int(np.ones(nbytes // 8).sum())


def matmul(n: int) -> float:
    a = np.ones((n, n))
    return float((a @ a)[0, 0])


class Recorder:
    def __init__(self) -> None:
        self.jobs: list[tuple[str, Outcome]] = []
        self.rejections: list[str] = []
        self.restarts: list[str] = []

    def job_finished(self, task: str, seconds: float, outcome: Outcome) -> None:
        assert seconds >= 0
        self.jobs.append((task, outcome))

    def rejected(self, reason: str, lane: Lane) -> None:
        self.rejections.append(reason)

    def pool_restarted(self, reason: str) -> None:
        self.restarts.append(reason)


def _settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"workers": 2, "blas_threads": 1, "memory_budget_bytes": 100_000_000}
    return Settings(**{**base, **overrides})


def _with_runner(
    settings: Settings, test: Callable[[Runner, Recorder], Awaitable[None]]
) -> Recorder:
    recorder = Recorder()

    async def main() -> None:
        runner = Runner(settings, recorder)
        try:
            await test(runner, recorder)
        finally:
            await runner.shutdown()

    asyncio.run(main())
    return recorder


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


def test_jobs_and_their_errors_come_back_and_are_reported() -> None:
    async def test(runner: Runner, _: Recorder) -> None:
        assert await runner.run(add, 2, 3) == 5
        with pytest.raises(ValueError, match="bad job"):
            await runner.run(fail)
        assert runner.ready
        assert (runner.in_flight, runner.queued) == (0, 0)

    recorder = _with_runner(_settings(), test)
    assert recorder.jobs == [("add", "ok"), ("fail", "error")]
    assert recorder.restarts == recorder.rejections == []


def test_deadline_kills_the_running_worker_and_the_next_job_runs() -> None:
    async def test(runner: Runner, _: Recorder) -> None:
        before = set(await asyncio.gather(runner.run(pid), runner.run(spin, 0.2)))
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await runner.run(spin, 60.0)
        assert time.monotonic() - started < 2.0 + 1.0
        after = set(await asyncio.gather(runner.run(spin, 0.2), runner.run(spin, 0.2)))
        assert len(before & after) == 1  # one worker was replaced, the other kept
        assert runner.ready

    recorder = _with_runner(_settings(request_timeout_s=2.0), test)
    assert ("spin", "timeout") in recorder.jobs
    assert recorder.restarts == ["timeout"]


def test_a_dying_worker_costs_only_its_own_job() -> None:
    async def test(runner: Runner, _: Recorder) -> None:
        slow = asyncio.create_task(runner.run(spin, 1.0))
        await _until(lambda: runner.in_flight == 1)
        with pytest.raises(WorkerLost, match="exit code -9"):
            await runner.run(die)
        assert await slow > 0
        assert await runner.run(add, 1, 1) == 2
        assert runner.ready

    recorder = _with_runner(_settings(), test)
    assert recorder.restarts == ["crashed"]
    assert ("die", "crashed") in recorder.jobs
    assert ("spin", "ok") in recorder.jobs


def test_an_idle_worker_killed_from_outside_is_replaced() -> None:
    async def test(runner: Runner, recorder: Recorder) -> None:
        victim = await runner.run(pid)
        os.kill(victim, signal.SIGKILL)
        await _until(lambda: recorder.restarts == ["crashed"])
        pids = set(await asyncio.gather(runner.run(spin, 0.2), runner.run(spin, 0.2)))
        assert victim not in pids
        assert len(pids) == 2
        assert runner.ready

    _with_runner(_settings(), test)


def test_beyond_max_admitted_requests_are_refused_at_once() -> None:
    async def test(runner: Runner, _: Recorder) -> None:
        running = asyncio.create_task(runner.run(spin, 1.0))
        waiting = asyncio.create_task(runner.run(add, 1, 2))
        await _until(lambda: (runner.in_flight, runner.queued) == (1, 1))
        with pytest.raises(Overloaded) as refused:
            await runner.run(add, 3, 4)
        assert refused.value.retry_after == 2
        assert await running > 0
        assert await waiting == 3

    recorder = _with_runner(_settings(workers=1, max_admitted=2, retry_after_s=2), test)
    assert recorder.rejections == ["queue_full"]


def test_a_request_runs_its_jobs_within_one_deadline() -> None:
    async def test(runner: Runner, _: Recorder) -> None:
        async with runner.admit():
            assert await asyncio.gather(*(runner.run(add, i, i) for i in range(5))) == [
                0,
                2,
                4,
                6,
                8,
            ]
        with pytest.raises(DeadlineExceeded):  # 4 x 1.2 s on 2 workers > 2 s
            async with runner.admit():
                await asyncio.gather(*(runner.run(spin, 1.2) for _ in range(4)))
        assert await runner.run(add, 1, 1) == 2

    recorder = _with_runner(_settings(request_timeout_s=2.0), test)
    assert recorder.rejections == []


def test_memory_cap_gives_out_of_memory_and_blas_still_works() -> None:
    async def test(runner: Runner, _: Recorder) -> None:
        assert await runner.run(matmul, 300) == 300.0
        with pytest.raises(OutOfMemory, match="700 MiB"):
            await runner.run(allocate, 2**31)
        assert await runner.run(allocate, 2**24) == 2**21

    recorder = _with_runner(_settings(worker_memory_bytes=700 * 2**20), test)
    assert ("allocate", "error") in recorder.jobs


def test_the_budget_must_fit_under_the_worker_cap() -> None:
    with pytest.raises(ValidationError, match="must exceed memory_budget_bytes"):
        Settings(memory_budget_bytes=1_000_000_000, worker_memory_bytes=1_200_000_000)
    # one BLAS thread: the default headroom (more threads raise it, tests/test_cores.py)
    assert Settings(memory_budget_bytes=10**9, blas_threads=1).worker_memory_limit == 10**9 + 2**30


def test_draining_refuses_new_work_and_cuts_what_runs_too_long() -> None:
    async def test(runner: Runner, _: Recorder) -> None:
        running = asyncio.create_task(runner.run(spin, 60.0))
        await _until(lambda: runner.in_flight == 1)
        runner.begin_drain()
        assert runner.draining
        assert not runner.ready
        with pytest.raises(ShuttingDown):
            await runner.run(add, 1, 1)
        with pytest.raises(ShuttingDown):
            await running

    recorder = _with_runner(_settings(shutdown_timeout_s=0.3), test)
    assert recorder.rejections == ["draining"]
    assert recorder.jobs == [("spin", "cancelled")]


# -- through HTTP ------------------------------------------------------------------------

BOOK = {
    "network": {
        "input_dim": 100,
        "depth": 5,
        "width": 100,
        "activation": "sigmoid",
        "init": {"scheme": "normal", "std": 1.0},
    },
    "input": {"samples": 1000},
}
BIG = {  # admitted by the default budgets; ~4 s of one core, far past the tests' deadlines
    "network": {
        "input_dim": 1024,
        "depth": 10,
        "width": 1024,
        "activation": "relu",
        "init": "he_normal",
    },
    "input": {"samples": 2048},
    "dtype": "float64",
    "statistics": {"effective_rank": True},
    "recommend": False,  # a verified recommendation would not fit in the budget beside it
}


@pytest.fixture
def tight_client() -> Iterator[TestClient]:
    settings = Settings(workers=1, blas_threads=1, request_timeout_s=1.5)
    with TestClient(create_app(settings)) as client:
        yield client


def test_http_overload_deadline_and_livez_while_busy(tight_client: TestClient) -> None:
    runner: Runner = tight_client.app.state.runner  # type: ignore[attr-defined]
    slow: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: slow.update(response=tight_client.post("/analyze", json=BIG))
    )
    thread.start()
    deadline = time.monotonic() + 10
    while runner.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.in_flight == 1

    started = time.monotonic()
    assert tight_client.get("/livez").status_code == 200
    assert time.monotonic() - started < 1.0
    # another big one would wait for the first's ~4 s estimate (the prior rate), past the 2 s
    # bound: refused at once, Retry-After the wait; a cheap one runs in its own lane
    refused = tight_client.post("/analyze", json={**BIG, "seed": 1})
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 3
    assert "waiting about" in refused.json()["detail"]
    # (without "recommend": verifying the candidates would make it cost 8 passes, not cheap)
    plain = {**BOOK, "recommend": False}
    cheap = tight_client.post("/analyze", json=plain, headers={"cache-control": "no-cache"})
    assert cheap.status_code == 200

    thread.join(timeout=10)
    assert slow["response"].status_code == 504
    assert "1.5 s" in slow["response"].json()["detail"]
    assert tight_client.post("/analyze", json=BOOK).status_code == 200
    assert tight_client.get("/readyz").json() == {"status": "ready"}


def test_http_draining(tight_client: TestClient) -> None:
    runner: Runner = tight_client.app.state.runner  # type: ignore[attr-defined]
    runner.begin_drain()
    ready = tight_client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    assert (ready.json()["state"], ready.json()["detail"]) == ("draining", "not ready: draining")
    refused = tight_client.post("/analyze", json=BOOK, headers={"cache-control": "no-cache"})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert tight_client.get("/livez").status_code == 200
