"""Admission by expected wait and the cheap lane (``initscope.runner``), the costs the routes
give it (``initscope.operations``), and the lane metrics.

Slow jobs block on a file that the test creates when it is done looking, so "while the pool is
busy" holds for as long as the test needs; the job functions are top-level so that workers can
unpickle them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.engine.sweep import SweepJob, run_sweep_row
from initscope.errors import Overloaded
from initscope.figures import render_analysis
from initscope.http.api import create_app
from initscope.http.metrics import Metrics
from initscope.operations import ANALYZE, RENDER_COST, analysis_cost
from initscope.runner import Lane, Outcome, Runner, Work
from initscope.schemas import AnalyzeRequest, SweepRequest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

HOUR = 3600.0


def pid() -> int:
    return os.getpid()


def blocked(path: str) -> int:
    """Holds its worker until ``path`` exists (the test's event), then answers its pid."""
    end = time.monotonic() + HOUR
    while not Path(path).exists() and time.monotonic() < end:
        time.sleep(0.005)
    return os.getpid()


class Recorder:
    def __init__(self) -> None:
        self.rejections: list[tuple[str, Lane]] = []

    def job_finished(self, task: str, seconds: float, outcome: Outcome) -> None:
        pass

    def rejected(self, reason: str, lane: Lane) -> None:
        self.rejections.append((reason, lane))

    def pool_restarted(self, reason: str) -> None:
        pass


def _settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "workers": 1,
        "cheap_workers": 1,
        "blas_threads": 1,
        "memory_budget_bytes": 100_000_000,
        "max_wait_s": 2.0,
    }
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


async def _until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    """The file that lets blocked jobs go; created at the end whatever happens."""
    path = tmp_path / "release"
    yield path
    path.touch()


def test_refused_only_past_the_expected_wait_with_that_wait_as_retry_after(
    release: Path,
) -> None:
    expensive = 1_000_000_000  # over cheap_cost (2e8)

    async def test(runner: Runner, recorder: Recorder) -> None:
        rate = runner.throughput("blocked")  # the prior: nothing has finished yet
        # nothing ahead: however big, the first request is admitted
        first = asyncio.create_task(runner.run(blocked, str(release), cost=int(5.5 * rate)))
        await _until(lambda: runner.in_flight == 1)
        ahead = runner.expected_wait("regular")
        assert 2.0 < ahead <= 5.5  # its 5.5 s estimate, less what it has run
        with pytest.raises(Overloaded) as refused:
            await runner.run(pid, cost=expensive)
        assert refused.value.retry_after == math.ceil(ahead)
        assert "waiting about" in str(refused.value)
        # the cheap lane has nothing ahead: a cheap request is admitted and answered
        assert runner.expected_wait("cheap") == 0.0
        cheap_pid = await runner.run(pid, cost=1000)
        release.touch()
        regular_pid = await first
        assert cheap_pid != regular_pid
        # once it is done nothing is ahead: the refused request is admitted now
        assert runner.expected_wait("regular") == 0.0
        assert await runner.run(pid, cost=expensive) == regular_pid

    recorder = _with_runner(_settings(), test)
    assert recorder.rejections == [("expected_wait", "regular")]


def test_a_free_worker_means_no_wait_however_much_work_runs(release: Path) -> None:
    async def test(runner: Runner, recorder: Recorder) -> None:
        rate = runner.throughput("blocked")
        first = asyncio.create_task(runner.run(blocked, str(release), cost=int(10 * rate)))
        await _until(lambda: runner.in_flight == 1)
        assert runner.expected_wait("regular") == 0.0  # the second regular worker is free
        second = asyncio.create_task(runner.run(blocked, str(release), cost=int(10 * rate)))
        await _until(lambda: runner.in_flight == 2)
        assert runner.expected_wait("regular") > 2.0  # both busy: 20 s of work over 2
        with pytest.raises(Overloaded):
            await runner.run(pid, cost=1_000_000_000)
        release.touch()
        assert len({await first, await second}) == 2

    recorder = _with_runner(_settings(workers=2), test)
    assert recorder.rejections == [("expected_wait", "regular")]


def test_within_the_bound_requests_wait_instead_of_being_refused(release: Path) -> None:
    async def test(runner: Runner, recorder: Recorder) -> None:
        rate = runner.throughput("blocked")
        first = asyncio.create_task(runner.run(blocked, str(release), cost=int(1.5 * rate)))
        await _until(lambda: runner.in_flight == 1)
        second = asyncio.create_task(runner.run(pid, cost=int(rate)))  # waits <= 1.5 s < 2 s
        await _until(lambda: runner.queued == 1)
        assert runner.lanes()["regular"][:2] == (1, 1)
        release.touch()
        assert await second == await first

    recorder = _with_runner(_settings(), test)
    assert recorder.rejections == []


def test_a_cheap_job_runs_while_every_regular_worker_is_busy(release: Path) -> None:
    async def test(runner: Runner, _: Recorder) -> None:
        slow = [
            asyncio.create_task(runner.run(blocked, str(release), cost=1_000_000_000))
            for _ in range(2)
        ]
        await _until(lambda: runner.in_flight == 2)
        assert runner.lanes()["regular"][:2] == (2, 0)
        cheap = await asyncio.wait_for(runner.run(pid, cost=1000), 30)
        assert not any(task.done() for task in slow)  # they are blocked until released
        release.touch()
        assert cheap not in set(await asyncio.gather(*slow))

    _with_runner(_settings(workers=2), test)


def test_expensive_jobs_never_take_the_cheap_worker(release: Path) -> None:
    async def test(runner: Runner, _: Recorder) -> None:
        regular = await runner.run(pid, cost=1_000_000_000)
        # a cheap job prefers a regular worker when one is idle
        assert await runner.run(pid, cost=1000) == regular
        first = asyncio.create_task(runner.run(blocked, str(release), cost=1_000_000_000))
        await _until(lambda: runner.in_flight == 1)
        second = asyncio.create_task(runner.run(pid, cost=1_000_000_000))
        await _until(lambda: runner.queued == 1)
        await asyncio.sleep(0.2)  # the cheap worker is idle all along, and stays so
        assert (runner.in_flight, runner.queued) == (1, 1)
        assert not second.done()
        release.touch()
        assert await first == await second == regular

    _with_runner(_settings(max_wait_s=HOUR), test)


def test_throughput_is_measured_from_finished_jobs() -> None:
    async def test(runner: Runner, recorder: Recorder) -> None:
        prior = runner.throughput("pid")
        assert runner.throughputs() == {}
        for _ in range(3):
            await runner.run(pid, cost=10**12)  # far more than a pid takes at the prior rate
        assert runner.throughput("pid") > prior
        assert set(runner.throughputs()) == {("pid", "regular")}
        await runner.run(pid)  # unknown cost: not measured
        assert set(runner.throughputs()) == {("pid", "regular")}

    _with_runner(_settings(max_wait_s=HOUR), test)


def _scrape(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_lane_metrics_show_both_lanes_the_wait_and_the_rejections(release: Path) -> None:
    state = type("State", (), {})()
    metrics = Metrics(state)

    async def main() -> None:
        runner = Runner(_settings(), metrics)
        state.runner = runner
        try:
            rate = runner.throughput("blocked")
            first = asyncio.create_task(runner.run(blocked, str(release), cost=int(5 * rate)))
            await _until(lambda: runner.in_flight == 1)
            with pytest.raises(Overloaded):
                await runner.run(pid, cost=1_000_000_000)
            samples = _scrape(metrics)
            release.touch()
            await first
            after = _scrape(metrics)
        finally:
            await runner.shutdown()

        def value(s: dict[Any, float], name: str, **labels: str) -> float:
            return s[(name, frozenset(labels.items()))]

        assert value(samples, "initscope_runner_lane_in_flight", lane="regular") == 1
        assert value(samples, "initscope_runner_lane_in_flight", lane="cheap") == 0
        assert value(samples, "initscope_runner_lane_queued", lane="regular") == 0
        assert value(samples, "initscope_runner_expected_wait_seconds", lane="regular") > 2
        assert value(samples, "initscope_runner_expected_wait_seconds", lane="cheap") == 0
        rejections = "initscope_rejections_total"
        assert value(samples, rejections, lane="regular", reason="expected_wait") == 1
        assert value(samples, rejections, lane="cheap", reason="expected_wait") == 0
        throughput = "initscope_runner_throughput_macs_per_second"
        assert value(after, throughput, task="blocked", lane="regular") > 0
        assert value(after, "initscope_runner_expected_wait_seconds", lane="regular") == 0

    asyncio.run(main())


# -- what the routes give admission -------------------------------------------------------

BOOK = {
    "network": {
        "input_dim": 100,
        "depth": 5,
        "width": 100,
        "activation": "sigmoid",
        "init": {"scheme": "normal", "std": 1.0},
    },
    "input": {"samples": 1000},
    "recommend": False,
}
SMALL = {  # the issue's 256 x 3 x 64
    "network": {
        "input_dim": 64,
        "depth": 3,
        "width": 64,
        "activation": "relu",
        "init": "he_normal",
    },
    "input": {"samples": 256},
    "recommend": False,
}
LARGE = {
    "network": {
        "input_dim": 1024,
        "depth": 10,
        "width": 1024,
        "activation": "relu",
        "init": "he_normal",
    },
    "input": {"samples": 2048},
    "recommend": False,
}


def _cost(body: dict[str, Any]) -> int:
    settings = Settings()
    ((_, job),) = ANALYZE.to_jobs(AnalyzeRequest.model_validate(body), settings)
    return ANALYZE.cost(job)


def test_the_default_cheap_cost_separates_the_issues_shapes() -> None:
    cheap = Settings().cheap_cost
    assert _cost(BOOK) == 1000 * 5 * 100 * 100 < cheap
    assert _cost(SMALL) == 256 * 3 * 64 * 64 < cheap
    assert _cost(LARGE) == 2048 * 10 * 1024 * 1024 > cheap
    # a recommending analysis counts its candidates' passes: the book with them is not cheap
    recommending = {**BOOK, "recommend": True}
    ((_, job),) = ANALYZE.to_jobs(AnalyzeRequest.model_validate(recommending), Settings())
    assert job.cost < cheap < analysis_cost(job) <= job.cost + job.advice_budget


class AdmissionRecorder:
    """Runs jobs in this process and records what each request asked admission for."""

    draining, ready = False, True

    def __init__(self) -> None:
        self.admitted: list[list[Work] | None] = []
        self.runs: list[tuple[str, int | None]] = []

    @contextlib.asynccontextmanager
    async def admit(self, work: list[Work] | None = None) -> AsyncIterator[None]:
        self.admitted.append(work)
        yield

    async def run(self, fn: Callable[..., Any], *args: object, cost: int | None = None) -> Any:
        self.runs.append((fn.__name__, cost))
        return fn(*args)


@pytest.fixture
def recording(settings: Settings) -> Iterator[tuple[TestClient, AdmissionRecorder]]:
    app: FastAPI = create_app(settings)
    with TestClient(app) as client:
        recorder = AdmissionRecorder()
        app.state.runner = recorder
        yield client, recorder


def test_routes_admit_with_each_jobs_cost(
    recording: tuple[TestClient, AdmissionRecorder], settings: Settings
) -> None:
    client, recorder = recording
    small = {**SMALL, "seed": 7}
    assert client.post("/analyze", json=small).status_code == 200
    ((_, job),) = ANALYZE.to_jobs(AnalyzeRequest.model_validate(small), settings)
    assert recorder.admitted == [[(ANALYZE.compute, job.cost)]]
    assert recorder.runs == [("analyze", job.cost)]

    png = client.post("/analyze?format=png", json={**small, "seed": 8})
    assert png.status_code == 200
    assert recorder.admitted[-1] == [(ANALYZE.compute, job.cost), (render_analysis, RENDER_COST)]
    assert recorder.runs[-1] == ("render_analysis", RENDER_COST)

    sweep = {
        "activation": "tanh",
        "depth": 3,
        "width": 16,
        "samples": 32,
        "x": {"param": "sigma_w2", "values": [0.5, 1.0, 2.0]},
        "y": {"param": "sigma_b2", "values": [0.0, 0.1]},
        "source": "simulation",
    }
    assert client.post("/sweep", json=sweep).status_code == 200
    per_row = 3 * 32 * 3 * 16 * 16
    assert recorder.admitted[-1] == [(run_sweep_row, per_row), (run_sweep_row, per_row)]
    assert sum(cost for _, cost in recorder.admitted[-1]) == sweep_job(sweep, settings).macs


def sweep_job(body: dict[str, Any], settings: Settings) -> SweepJob:
    return SweepRequest.model_validate(body).job(settings)
