"""Threads follow the work: the CPUs' division among running jobs, a worker's share
shrinking when a second job starts and growing back when it ends, the products' bits the same
under every share, and the overlapped statistics equal to the sequential ones.

The worker test runs in a subprocess of its own: the forkserver reads its environment once
per process, and other tests start it first.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from initscope.config import Settings, worker_baseline_bytes
from initscope.engine import cores
from initscope.engine.simulation import simulate
from initscope.runner import Runner
from initscope.schemas import AnalyzeRequest
from threadpoolctl import threadpool_info, threadpool_limits

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("cpus", "jobs", "cap", "expected"),
    [
        (2, 1, 2, [2]),  # a lone job takes the machine
        (2, 2, 2, [1, 1]),  # a full pool: one core each
        (8, 3, 8, [3, 3, 2]),  # the remainder goes to the oldest jobs
        (8, 1, 4, [4]),  # never above the cap (INITSCOPE_BLAS_THREADS)
        (2, 3, 2, [1, 1, 1]),  # more jobs than CPUs: one thread each
        (4, 0, 4, []),
    ],
)
def test_the_cpus_are_divided_among_the_running_jobs(
    cpus: int, jobs: int, cap: int, expected: list[int]
) -> None:
    assert cores.allot(cpus, jobs, cap) == expected


def test_settings_default_to_every_cpu_and_budget_memory_for_the_threads() -> None:
    settings = Settings(workers=2, cpus=8)
    assert settings.threads_per_worker == 8
    assert Settings(workers=2, cpus=8, blas_threads=1).threads_per_worker == 1
    # each OpenBLAS thread a worker may start raises its footprint, and the default cap
    assert worker_baseline_bytes(8) > worker_baseline_bytes(2)
    assert settings.worker_memory_limit >= settings.memory_budget_bytes + worker_baseline_bytes(8)
    with pytest.raises(ValueError, match="8 BLAS threads"):
        Settings(cpus=8, worker_memory_bytes=2_100_000_000)


def _blas_threads() -> int:
    """The job's share now; BLAS itself stays at one thread in a worker."""
    assert max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas") == 1
    return cores.follow()


def _wait_for(condition: Any, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError
        time.sleep(0.005)


def first_job(folder: str) -> tuple[int, int, int]:
    """Threads at start, once a second job runs, and once it has ended."""
    alone = _blas_threads()
    Path(folder, "first").touch()
    _wait_for(lambda: Path(folder, "second").exists())
    shared = _blas_threads()
    Path(folder, "seen").touch()
    _wait_for(lambda: _blas_threads() == alone)  # the second job's end gives its CPU back
    return alone, shared, _blas_threads()


def second_job(folder: str) -> int:
    Path(folder, "second").touch()
    _wait_for(lambda: Path(folder, "seen").exists())
    return _blas_threads()


async def _two_jobs(folder: str) -> dict[str, Any]:
    runner = Runner(Settings(workers=2, cpus=2, memory_budget_bytes=100_000_000))
    try:
        first = asyncio.ensure_future(runner.run(first_job, folder))
        async with asyncio.timeout(30):
            while not Path(folder, "first").exists():
                await asyncio.sleep(0.01)
        second = await runner.run(second_job, folder)
        alone, shared, after = await first
        return {"alone": alone, "shared": shared, "second": second, "after": after}
    finally:
        await runner.shutdown()


def main() -> None:
    print(json.dumps(asyncio.run(_two_jobs(sys.argv[1]))))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs for 2 BLAS threads")
def test_a_running_job_shrinks_when_a_second_starts_and_grows_when_it_ends(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", "from tests.test_cores import main; main()", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"alone": 2, "shared": 1, "second": 1, "after": 2}


def _job(body: dict[str, Any]) -> Any:
    base = {"input": {"samples": 300}, "seed": 3, "theory": False, "recommend": False}
    return AnalyzeRequest.model_validate({**base, **body}).job(Settings())


@pytest.mark.parametrize(
    "network",
    [
        {"input_dim": 40, "depth": 4, "width": 64, "activation": "relu", "init": "he_normal"},
        {
            "input_dim": 40,
            "depth": 3,
            "width": 32,
            "activation": "tanh",
            "init": {"scheme": "normal", "std": 1.0},
            "batch_norm": {"placement": "after"},
            "dropout": 0.25,
        },
        {"input_dim": 20, "depth": 3, "width": 48, "activation": "sigmoid", "init": "lsuv"},
        {  # deeper than the backlog: the forward pass waits for the oldest layer's statistics
            "input_dim": 30,
            "depth": 9,
            "width": 40,
            "activation": "elu",
            "init": "xavier_normal",
            "batch_norm": {"placement": "before"},
        },
    ],
)
def test_overlapped_statistics_equal_the_sequential_ones(network: dict[str, Any]) -> None:
    """The second thread draws the upstream gradient and measures the layers while the passes
    run, phi'(z) computed by whichever thread comes first: the result is the inline one."""
    job = _job(
        {"network": network, "statistics": {"effective_rank": True}, "jacobian": {"samples": 4}}
    )
    assert simulate(job, overlap=True) == simulate(job, overlap=False)


@pytest.fixture
def two_cpus() -> Iterator[None]:
    """This process as a worker of a 2-CPU pool would be (one BLAS thread), share 1."""
    with threadpool_limits(limits=1):
        cores.set_local(1, 2)
        cores.follow()
        try:
            yield
        finally:
            cores.set_local(1, 1)
            cores.follow()


@pytest.mark.usefixtures("two_cpus")
def test_a_products_bits_do_not_depend_on_the_share() -> None:
    """OpenBLAS's own threads round a 100 x 1000 x 100 float32 product differently on 1 and 2
    threads (a weight gradient's shape: fan_in x samples x fan_out); cut into fixed blocks, a
    product is the same under either share, and equal to the single-threaded product."""
    rng = np.random.default_rng(0)
    for m, k, n in [(256, 1000, 100), (1000, 100, 200), (4096, 128, 128)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        assert cores.blocks(m, m * k * n) == 2
        alone = np.matmul(a, b)
        for share in (1, 2):
            cores.set_local(share, 2)
            cores.follow()
            assert np.array_equal(cores.matmul(a, b), alone)
            assert np.array_equal(cores.matmul(a.T.copy().T, b), alone)  # a transposed view


@pytest.mark.usefixtures("two_cpus")
def test_an_analysis_is_the_same_under_every_share() -> None:
    network = {"input_dim": 256, "depth": 3, "width": 200, "activation": "tanh"}
    network["init"] = "xavier_normal"
    job = _job({"network": network, "input": {"samples": 2000}})
    answers = []
    for share in (1, 2):
        cores.set_local(share, 2)
        answers.append(simulate(job))
    assert answers[0] == answers[1]
