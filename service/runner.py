"""The process pool that runs NumPy work off the event loop; owned by the app's lifespan."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from threadpoolctl import threadpool_limits

from service.config import Settings

Result = TypeVar("Result")


def _init_worker(blas_threads: int) -> None:
    threadpool_limits(limits=blas_threads)


class Runner:
    """Runs picklable top-level functions on frozen jobs in worker processes.

    Workers start with ``forkserver`` (no copy of the server's threads or sockets) and each
    limits its BLAS pool so that ``workers * threads`` does not exceed the usable CPUs.
    """

    def __init__(self, settings: Settings) -> None:
        self.workers = settings.workers
        self.blas_threads = settings.threads_per_worker
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_init_worker,
            initargs=(self.blas_threads,),
        )

    async def run(self, fn: Callable[..., Result], *args: object) -> Result:
        """``fn(*args)`` in a worker; ``fn`` is a top-level function, ``args`` frozen data."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
