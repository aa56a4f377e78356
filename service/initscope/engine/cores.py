"""Threads follow the work: a job's threads are its share of the CPUs not busy with other
jobs, set by the runner and taken up by the engine at each layer boundary.

The runner owns the arithmetic (:func:`allot`) and writes each worker's share into an integer
in shared memory (:func:`install` receives it in the worker); the engine calls :func:`follow`
where a layer starts. So a lone job runs on every CPU, and when a second starts, the first
shrinks at its next layer.

The share is spent on :func:`matmul`, not on BLAS's own threads. OpenBLAS splits a product
among its threads by output rows and columns, and the edge tiles of another split round
differently (a 100 x 1000 x 100 float32 product differs in the last digits on 1 and 2
threads), so a result would depend on the load when it ran: a repeated request, a cached one
and the parts of a split sweep would disagree. Here BLAS always runs one thread, and a large
product is cut into a number of row blocks fixed by its shape and the pool's CPUs
(:func:`blocks`), never by the share; the share only says how many blocks run at once. Every
block is the same single-threaded call whoever runs it, so the answer is the same under any
load. Outside a worker (tests, the command line) the share is :func:`set_local`'s.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController


class SharedInt(Protocol):
    value: int


_share: SharedInt | None = None
_controllers: list[Any] = []
_applied = 0
_local = 1  # the share outside a worker
_cpus = 1  # the pool's CPUs: how many blocks a large product is cut into
_threads: ThreadPoolExecutor | None = None
# A product smaller than this (multiply-adds) is one block: cutting it costs more than it saves.
BLOCK_MIN_MACS = 2**24
BLOCK_MIN_ROWS = 128


def allot(cpus: int, jobs: int, cap: int) -> list[int]:
    """Each running job's BLAS threads, oldest job first: the ``cpus`` divided among ``jobs``,
    the remainder to the oldest, at least 1 and at most ``cap`` each (more jobs than CPUs:
    one thread each, the pool's own oversubscription, not the threads')."""
    if jobs <= 0:
        return []
    base, extra = divmod(cpus, jobs)
    return [min(cap, max(1, base + (i < extra))) for i in range(jobs)]


def install(share: SharedInt, cpus: int) -> None:
    """Make ``share`` this process's allotment (a worker, once at start): BLAS runs one thread,
    large products are cut into blocks for ``cpus``."""
    global _share, _controllers, _cpus
    _share, _cpus = share, cpus
    _controllers = [
        lib for lib in ThreadpoolController().lib_controllers if lib.user_api in ("blas", "openmp")
    ]
    for lib in _controllers:
        lib.set_num_threads(1)
    follow()


def set_local(threads: int, cpus: int) -> None:
    """The share and the pool's CPUs outside a worker (the command line's in-process path, so
    its numbers are a worker's); the caller keeps BLAS at one thread."""
    global _local, _cpus
    _local, _cpus = threads, cpus


def follow() -> int:
    """The threads the running job may use now: its worker's share, or the local one."""
    global _applied
    _applied = _local if _share is None else max(1, _share.value)
    return _applied


def blocks(rows: int, macs: int) -> int:
    """How many row blocks a product of ``rows`` output rows and ``macs`` multiply-adds is cut
    into: one below :data:`BLOCK_MIN_MACS`, else the pool's CPUs, at least
    :data:`BLOCK_MIN_ROWS` rows each. A function of the shape and the configuration only."""
    if macs < BLOCK_MIN_MACS:
        return 1
    return max(1, min(_cpus, rows // BLOCK_MIN_ROWS))


def matmul(a: NDArray[Any], b: NDArray[Any], out: NDArray[Any] | None = None) -> NDArray[Any]:
    """``a @ b`` for 2-D ``a``, the same bits under any share: cut into :func:`blocks` row
    blocks, each one single-threaded BLAS call, as many at a time as the share allows."""
    rows, inner = a.shape
    n = blocks(rows, rows * inner * b.shape[-1])
    if n == 1:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((rows, b.shape[-1]), dtype=np.result_type(a, b))
    cuts = [rows * i // n for i in range(n + 1)]
    spans = list(itertools.pairwise(cuts))

    def one(span: tuple[int, int]) -> None:
        np.matmul(a[span[0] : span[1]], b, out=out[span[0] : span[1]])

    todo = iter(spans)  # shared: each thread takes the next block (list iteration is atomic)

    def drain() -> None:
        for span in todo:
            one(span)

    global _threads
    helpers = min(_applied, n) - 1
    if helpers > 0 and _threads is None:
        _threads = ThreadPoolExecutor(max(1, _cpus - 1), thread_name_prefix="initscope-block")
    running = [_threads.submit(drain) for _ in range(helpers)] if _threads else []
    drain()
    for future in running:
        future.result()
    return out
