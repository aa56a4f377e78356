"""Threads follow the work: a worker's BLAS threads are its share of the CPUs not busy with
other jobs, set by the runner and applied by the engine at each layer boundary.

The runner owns the arithmetic (:func:`allot`) and writes each worker's share into an integer
in shared memory (:func:`install` receives it in the worker); the engine calls :func:`follow`
where a layer starts, which changes the BLAS pools' size only when the share changed. So a
lone job runs on every CPU, and when a second starts, the first shrinks at its next layer.
Outside a worker (tests, the CLI, the training loop run in-process) :func:`follow` does nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from threadpoolctl import ThreadpoolController


class SharedInt(Protocol):
    value: int


_share: SharedInt | None = None
_controllers: list[Any] = []
_applied = 0


def allot(cpus: int, jobs: int, cap: int) -> list[int]:
    """Each running job's BLAS threads, oldest job first: the ``cpus`` divided among ``jobs``,
    the remainder to the oldest, at least 1 and at most ``cap`` each (more jobs than CPUs:
    one thread each, the pool's own oversubscription, not the threads')."""
    if jobs <= 0:
        return []
    base, extra = divmod(cpus, jobs)
    return [min(cap, max(1, base + (i < extra))) for i in range(jobs)]


def install(share: SharedInt) -> None:
    """Make ``share`` this process's allotment and apply it (a worker, once at start)."""
    global _share, _controllers, _applied
    _share = share
    _controllers = [
        lib for lib in ThreadpoolController().lib_controllers if lib.user_api in ("blas", "openmp")
    ]
    _applied = 0
    follow()


def follow() -> int:
    """Apply this worker's current allotment if it changed; returns it (0 outside a worker)."""
    global _applied
    if _share is None:
        return 0
    wanted = _share.value
    if wanted != _applied:
        for lib in _controllers:
            lib.set_num_threads(wanted)
        _applied = wanted
    return wanted
