"""The worker processes that run NumPy work off the event loop; owned by the app's lifespan.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot stop a running job, and one dead
worker marks the whole pool broken, failing every in-flight future. Why not ``pebble``: it can
kill a job on timeout, but its workers share one pipe guarded by cross-process locks (a worker
killed while it holds them, e.g. while sending a result, stalls the others for the 60 s lock
timeout), and in 5.2 a worker that dies while no task runs marks the whole pool broken. Here
each worker has its own pipe and runs one job at a time, so killing one (deadline, cancel) or
losing one (SIGKILL, the OOM killer) touches nothing else: its job fails and a fresh fork takes
its place. A blocking ``send``/``recv`` per job runs in a small thread pool, one thread per
worker; a dead worker shows up as EOF there, and an idle one through its sentinel on the loop.

Workers are forked by a ``forkserver`` that has imported the engine once (no copy of the
server's threads or sockets, and a replacement is ready in milliseconds). Each worker runs
its share of the CPUs (threads follow the work: a lone job gets every CPU, running jobs share
them; spent on blocks of its products of a fixed cut, so the numbers never depend on the
load, :mod:`initscope.engine.cores`), and caps its own
address space at ``Settings.worker_memory_limit``: work that outgrows it ends in
``MemoryError`` inside the worker, reported as ``OutOfMemory``.

Admission is per HTTP request (``admit``), by expected wait rather than by count. Every job
carries its cost in multiply-adds (the budget's count, ``Operation.cost``), and the runner
measures, per task and lane, how many of them a worker gets through per second: an
exponentially weighted mean of the cost and of the seconds of finished jobs (weight
``EWMA_WEIGHT``), ``rate = mean cost / mean seconds`` (a ratio of sums, so a job's fixed
overhead counts and big jobs weigh by their size), seeded with ``PRIOR_RATE`` as if one job of
``PRIOR_SECONDS`` had run. An admitted request adds its estimate ``sum(cost_i / rate(task_i))``
to its lane's backlog; each finished job takes its share off, and running jobs count only what
is left of their estimate. A request is refused (``Overloaded``, 503) only when no worker of
its lane is free and the backlog ahead of it, over the lane's workers, exceeds
``Settings.max_wait_s``; ``Retry-After`` is that expected wait, rounded up (at least 1 s).
``Settings.max_admitted`` is a memory safety net only (requests held at once). A request's
deadline covers its wait and every job it runs; when it passes, the running worker is killed.

Two lanes. A request whose total cost is below ``Settings.cheap_cost`` is cheap (the book's
1000 x 5 x 100 is 5e7 multiply-adds, a 2048 x 10 x 1024 analysis 2.1e10). The pool has
``Settings.cheap_workers`` worker processes beyond ``workers`` that only cheap jobs may take;
cheap jobs take any idle worker, a regular one first, and expensive jobs never take a
cheap-lane worker, so two expensive requests cannot make a cheap one wait behind them. The
price is brief oversubscription: a cheap job beside expensive ones on every core shares a
core for its few tens of milliseconds, and the expensive jobs lose as much. A cheap request's
expected wait is its lane's backlog over the cheap-lane workers plus the regular workers that
no regular job holds or waits for; an expensive request's is the regular backlog over
``workers``. Jobs wait for a worker in arrival order (the waiters wake in the order they
began to wait); a cheap job takes an idle regular worker only while no regular job waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import resource
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal, Protocol, TypeVar

from initscope.config import Settings
from initscope.engine import cores
from initscope.errors import DeadlineExceeded, OutOfMemory, Overloaded, ShuttingDown, WorkerLost

Result = TypeVar("Result")
Claimed = TypeVar("Claimed")
Outcome = Literal["ok", "error", "timeout", "crashed", "cancelled"]
Lane = Literal["cheap", "regular"]
LANES: tuple[Lane, ...] = ("cheap", "regular")
Work = tuple[Callable[..., Any], int]  # a job's function and its cost in multiply-adds

log = logging.getLogger(__name__)

# Imported once by the forkserver, so every worker (and every replacement) starts warm.
PRELOAD = [
    "initscope.runner",
    "initscope.engine.analysis",
    "initscope.figures",
    "initscope.engine.sweep",
]
# Read by OpenBLAS/OpenMP/MKL when they load: one thread (each reserves memory per potential
# thread); a job's share of the CPUs runs its products' blocks (:mod:`initscope.engine.cores`).
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
RESPAWN_DELAY_S = 1.0
# Multiply-adds per second of one worker before any job of a task has finished: one BLAS
# thread of a 2-core EPYC does the 2048 x 10 x 1024 analysis (2.1e10) in about 2 s and the
# book's (5e7) in about 10 ms, HTTP excluded; weighted as one job of PRIOR_SECONDS.
PRIOR_RATE = 5e9
PRIOR_SECONDS = 0.05
EWMA_WEIGHT = 0.2


class RunnerObserver(Protocol):
    def job_finished(self, task: str, seconds: float, outcome: Outcome) -> None: ...
    def rejected(self, reason: str, lane: Lane) -> None: ...
    def pool_restarted(self, reason: str) -> None: ...


class _Unobserved:
    def job_finished(self, task: str, seconds: float, outcome: Outcome) -> None:
        pass

    def rejected(self, reason: str, lane: Lane) -> None:
        pass

    def pool_restarted(self, reason: str) -> None:
        pass


def _serve(conn: Connection, share: cores.SharedInt, cpus: int, memory_limit: int) -> None:
    """A worker's life: receive ``(fn, args)``, answer ``(status, value)``, until EOF."""
    # SIGINT (Ctrl+C) and SIGTERM (systemd signals the whole group) are the server's to handle;
    # it kills its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cores.install(share, cpus)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return
        cores.follow()  # the share the runner wrote before sending the job
        reply: tuple[str, Any]
        try:
            reply = ("ok", fn(*args))
        except MemoryError:
            reply = ("memory", None)
        except Exception as exc:
            reply = ("error", exc)
        try:
            conn.send(reply)  # pickles completely before writing a byte
        except MemoryError:
            conn.send(("memory", None))
        except Exception as exc:
            conn.send(("error", TypeError(f"{fn.__name__}: unpicklable reply: {exc!r}")))


def _exchange(conn: Connection, fn: Callable[..., Any], args: tuple[object, ...]) -> Any:
    """Runs in the I/O thread pool: one job there and back; EOF or OSError once it dies."""
    try:
        conn.send((fn, args))
        return conn.recv()
    except (EOFError, OSError):
        conn.close()
        raise


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    share: Any  # a shared C int: the worker's BLAS threads (engine.cores), written here
    busy: bool = False
    retired: bool = False  # killed on purpose or found dead: no longer part of the pool
    lane: Lane = "regular"  # a cheap-lane worker takes cheap jobs only
    started: float = 0.0  # when its current job started (the oldest get a remainder CPU)


def _shares_cpus(worker: _Worker) -> bool:
    """Whether the worker's jobs share the CPUs; a cheap-lane worker (short jobs) runs on one
    thread and does not count as a busy core."""
    return worker.lane != "cheap"


@dataclass(eq=False)
class _Request:
    timeout: float
    deadline: float  # on the loop's clock
    lane: Lane = "regular"
    backlog: float = 0.0  # seconds of its estimate still counted in its lane's backlog
    jobs: set[asyncio.Task[Any]] = field(default_factory=set)


@dataclass
class _Throughput:
    """Exponentially weighted means of finished jobs' cost and seconds, for one task."""

    cost: float = PRIOR_RATE * PRIOR_SECONDS
    seconds: float = PRIOR_SECONDS

    @property
    def rate(self) -> float:
        """Multiply-adds per second of one worker."""
        return self.cost / self.seconds

    def add(self, cost: int, seconds: float) -> None:
        self.cost += EWMA_WEIGHT * (cost - self.cost)
        self.seconds += EWMA_WEIGHT * (max(seconds, 1e-6) - self.seconds)


_current: ContextVar[_Request | None] = ContextVar("initscope_request", default=None)


class Runner:
    """Runs picklable top-level functions on frozen jobs in worker processes.

    Build it inside the running event loop (the lifespan). ``in_flight`` counts jobs running
    in workers; ``queued`` counts jobs waiting for a worker (:meth:`lanes` has both per lane).
    """

    def __init__(self, settings: Settings, observer: RunnerObserver | None = None) -> None:
        self.workers = settings.workers
        self.cheap_workers = settings.cheap_workers
        self.blas_threads = settings.threads_per_worker
        self.cpus = settings.pool_cpus
        self._settings = settings
        self._observer: RunnerObserver = observer or _Unobserved()
        self._loop = asyncio.get_running_loop()
        self._context = multiprocessing.get_context("forkserver")
        for name in BLAS_ENV:  # the forkserver inherits this when it starts (once per process)
            os.environ.setdefault(name, "1")
        self._context.set_forkserver_preload(PRELOAD)
        self._io = ThreadPoolExecutor(
            self.workers + self.cheap_workers, thread_name_prefix="initscope-io"
        )
        self._pool: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._missing: list[Lane] = []
        self._changed = asyncio.Event()
        self._admitted = 0
        self._waiting = dict.fromkeys(LANES, 0)  # jobs waiting for a worker
        self._jobs = dict.fromkeys(LANES, 0)  # jobs waiting or running
        self._held = dict.fromkeys(LANES, 0)  # requests admitted
        self._backlog = dict.fromkeys(LANES, 0.0)  # seconds of admitted work not yet done
        self._running: dict[asyncio.Task[Any], tuple[Lane, float, float]] = {}  # estimate, start
        self._throughput: dict[tuple[str, Lane], _Throughput] = {}
        self._draining = False
        self._aborted = False
        self._closed = False
        self._abort_timer: asyncio.TimerHandle | None = None
        self._respawn_timer: asyncio.TimerHandle | None = None
        for _ in range(self.workers):
            self._add_worker("regular")
        for _ in range(self.cheap_workers):
            self._add_worker("cheap")

    @property
    def in_flight(self) -> int:
        return sum(worker.busy for worker in self._pool)

    @property
    def queued(self) -> int:
        return sum(self._waiting.values())

    def lanes(self) -> dict[Lane, tuple[int, int, float]]:
        """Per lane: jobs running, jobs waiting for a worker, and the expected wait (s)."""
        running = dict.fromkeys(LANES, 0)
        for lane, _, _ in self._running.values():
            running[lane] += 1
        return {
            lane: (running[lane], self._waiting[lane], self.expected_wait(lane)) for lane in LANES
        }

    def throughput(self, task: str, lane: Lane = "regular") -> float:
        """Measured multiply-adds per second of one worker for ``task`` (a function's name) in
        ``lane``: per lane, so that the fixed cost of small jobs does not blur big ones'."""
        return self._throughput.get((task, lane), _Throughput()).rate

    def throughputs(self) -> dict[tuple[str, Lane], float]:
        """:meth:`throughput` of every task and lane that has finished a job of known cost."""
        return {key: measured.rate for key, measured in self._throughput.items()}

    def expected_wait(self, lane: Lane) -> float:
        """Seconds a new request of ``lane`` would wait: none while one of the workers it can
        take is free (fewer jobs or requests of its lane than those workers), else the lane's
        backlog (running jobs counted by what is left of their estimate) over them."""
        now = self._loop.time()
        spent = dict.fromkeys(LANES, 0.0)
        for job_lane, estimate, start in self._running.values():
            spent[job_lane] += min(estimate, now - start)
        left = {name: max(self._backlog[name] - spent[name], 0.0) for name in LANES}
        busy = {name: max(self._jobs[name], self._held[name]) for name in LANES}
        if lane == "regular":
            workers, ahead, occupied = self.workers, left["regular"], busy["regular"]
        elif self.cheap_workers == 0:  # no lane of its own: behind everything
            workers = self.workers
            ahead, occupied = left["cheap"] + left["regular"], busy["cheap"] + busy["regular"]
        else:
            workers = self.cheap_workers + max(self.workers - busy["regular"], 0)
            ahead, occupied = left["cheap"], busy["cheap"]
        return 0.0 if occupied < workers else ahead / workers

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def ready(self) -> bool:
        return not (self._draining or self._closed) and not self._missing

    async def run(
        self, fn: Callable[..., Result], *args: object, cost: int | None = None
    ) -> Result:
        """``fn(*args)`` in a worker; ``fn`` is a top-level function, ``args`` frozen data,
        ``cost`` its multiply-adds (None: unknown, counted as nothing and not measured).

        Inside ``admit`` the job runs in that request's lane, within its deadline, and takes
        its estimate off the request's backlog; outside, the call is a request of its own.
        """
        request = _current.get()
        if request is None:
            async with self.admit(None if cost is None else [(fn, cost)]):
                return await self.run(fn, *args, cost=cost)
        job = asyncio.current_task()
        assert job is not None
        request.jobs.add(job)
        lane = request.lane
        estimate = (
            0.0 if cost is None else min(cost / self.throughput(fn.__name__, lane), request.backlog)
        )
        self._jobs[lane] += 1
        try:
            worker = await self._claim(request, lambda: self._idle_worker(lane))
            start = self._loop.time()
            self._running[job] = (lane, estimate, start)
            try:
                result: Result = await self._execute(request, worker, fn, args)
            finally:
                del self._running[job]
            if cost is not None:
                measured = self._throughput.setdefault((fn.__name__, lane), _Throughput())
                measured.add(cost, self._loop.time() - start)
            return result
        finally:
            self._jobs[lane] -= 1
            request.jobs.discard(job)
            taken = min(estimate, request.backlog)
            request.backlog -= taken
            self._backlog[lane] -= taken

    @contextlib.asynccontextmanager
    async def admit(self, work: Sequence[Work] | None = None) -> AsyncIterator[None]:
        """One HTTP request's hold on the pool, for the jobs ``work`` lists (None: unknown,
        the regular lane and no estimate). Refused at once when draining, when its expected
        wait is over ``max_wait_s`` or ``max_admitted`` requests are held; its jobs then wait
        for workers within its deadline. On exit, jobs still running for it (a failed sibling
        in a ``gather``) are cancelled."""
        cheap = work is not None and sum(cost for _, cost in work) < self._settings.cheap_cost
        lane: Lane = "cheap" if cheap else "regular"
        retry_after = self._settings.retry_after_s
        if self._draining or self._closed:
            self._observer.rejected("draining", lane)
            raise ShuttingDown(retry_after)
        if not self._pool:
            self._observer.rejected("pool_unavailable", lane)
            raise Overloaded(retry_after, "no worker process is running")
        if self._admitted >= self._settings.max_admitted:
            self._observer.rejected("queue_full", lane)
            raise Overloaded(retry_after, f"{self._admitted} requests are held, the most allowed")
        wait = self.expected_wait(lane)
        if wait > self._settings.max_wait_s:
            self._observer.rejected("expected_wait", lane)
            raise Overloaded(
                max(1, math.ceil(wait)),
                f"the work queued ahead would keep this request waiting about {wait:.1f} s, "
                f"over the bound of {self._settings.max_wait_s:g} s",
            )
        timeout = self._settings.request_timeout_s
        estimate = sum(cost / self.throughput(fn.__name__, lane) for fn, cost in work or ())
        request = _Request(timeout, self._loop.time() + timeout, lane, estimate)
        self._backlog[lane] += estimate
        self._admitted += 1
        self._held[lane] += 1
        token = _current.set(request)
        try:
            yield
        finally:
            for job in request.jobs:
                job.cancel()
            self._backlog[lane] -= request.backlog
            request.backlog = 0.0
            _current.reset(token)
            self._admitted -= 1
            self._held[lane] -= 1
            if not self._admitted:  # no rounding residue survives an idle moment
                self._backlog = dict.fromkeys(LANES, 0.0)
            self._notify()

    def begin_drain(self) -> None:
        """Stop admitting; work still running ``shutdown_timeout_s`` later is killed and its
        requests answered ``ShuttingDown``. Safe to call from a signal handler."""
        self._draining = True
        self._loop.call_soon_threadsafe(self._arm_abort)

    async def shutdown(self) -> None:
        """Drain, wait (bounded) until no request is admitted, then stop every worker."""
        self.begin_drain()
        self._arm_abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.shutdown_timeout_s + 1):
                while self._admitted:
                    await self._changed.wait()
        self.close()

    def close(self) -> None:
        self._closed = self._aborted = True
        for timer in (self._abort_timer, self._respawn_timer):
            if timer is not None:
                timer.cancel()
        for worker in list(self._pool):
            self._retire(worker)
        self._idle.clear()
        self._io.shutdown(wait=True, cancel_futures=True)
        self._notify()

    # -- waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _idle_worker(self, lane: Lane) -> _Worker | None:
        """The last idle worker a job of ``lane`` may take: a regular one first, but a cheap
        job takes the cheap lane's first while regular jobs wait (so that a stream of cheap
        jobs cannot hold the regular workers from them); a cheap-lane one only for a cheap
        job."""
        lanes: tuple[Lane, ...] = ("regular",)
        if lane == "cheap":
            lanes = ("cheap", "regular") if self._waiting["regular"] else ("regular", "cheap")
        for wanted in lanes:
            for i in range(len(self._idle) - 1, -1, -1):
                if self._idle[i].lane == wanted:
                    worker = self._idle.pop(i)
                    worker.busy = True
                    return worker
        return None

    async def _claim(self, request: _Request, claim: Callable[[], Claimed | None]) -> Claimed:
        """``claim()``'s first non-None value, waiting for changes until the deadline."""
        self._waiting[request.lane] += 1
        try:
            async with asyncio.timeout_at(request.deadline):
                while True:
                    if self._aborted:
                        raise ShuttingDown(self._settings.retry_after_s)
                    if (claimed := claim()) is not None:
                        return claimed
                    await self._changed.wait()
        except TimeoutError:
            raise DeadlineExceeded(request.timeout) from None
        finally:
            self._waiting[request.lane] -= 1

    # -- one job ---------------------------------------------------------------------------

    async def _execute(
        self, request: _Request, worker: _Worker, fn: Callable[..., Any], args: tuple[object, ...]
    ) -> Any:
        start = time.perf_counter()
        outcome: Outcome = "cancelled"
        worker.started = start
        self._share_cpus()
        try:
            exchange = self._loop.run_in_executor(self._io, _exchange, worker.conn, fn, args)
            try:
                async with asyncio.timeout_at(request.deadline):
                    status, value = await exchange
            except TimeoutError:
                outcome = "timeout"
                self._replace(worker, "timeout")
                raise DeadlineExceeded(request.timeout) from None
            except (EOFError, OSError):
                if self._aborted:
                    self._replace(worker, None)
                    raise ShuttingDown(self._settings.retry_after_s) from None
                outcome = "crashed"
                self._replace(worker, "crashed")
                raise WorkerLost(await self._exitcode(worker)) from None
            except BaseException:
                self._replace(worker, None)  # cancelled: the request is gone, stop its work
                raise
            self._release(worker)
            if status == "ok":
                outcome = "ok"
                return value
            outcome = "error"
            if status == "memory":
                raise OutOfMemory(self._settings.worker_memory_limit)
            raise value
        finally:
            self._share_cpus()
            self._observer.job_finished(fn.__name__, time.perf_counter() - start, outcome)

    async def _exitcode(self, worker: _Worker) -> int | None:
        """The dead worker's exit code (negative: the signal), once the forkserver reports it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while worker.process.exitcode is None:
                    await asyncio.sleep(0.01)
        return worker.process.exitcode

    # -- the pool --------------------------------------------------------------------------

    def _add_worker(self, lane: Lane) -> None:
        parent, child = self._context.Pipe()
        share = self._context.RawValue("i", 1 if lane == "cheap" else self.blas_threads)
        process = self._context.Process(
            target=_serve,
            args=(child, share, self.cpus, self._settings.worker_memory_limit),
            name="initscope-worker",
            daemon=True,
        )
        try:
            process.start()
        except OSError:
            log.exception("could not start a worker; retrying in %s s", RESPAWN_DELAY_S)
            parent.close()
            self._missing.append(lane)
            if self._respawn_timer is None:
                self._respawn_timer = self._loop.call_later(RESPAWN_DELAY_S, self._respawn)
            return
        finally:
            child.close()
        worker = _Worker(process, parent, share, lane=lane)
        self._pool.add(worker)
        self._idle.append(worker)
        self._loop.add_reader(process.sentinel, self._exited, worker)
        self._notify()

    # -- threads follow the work -------------------------------------------------------------

    def _share_cpus(self) -> None:
        """Rewrite every worker's BLAS threads as a job starts or ends: the running jobs share
        the CPUs (oldest first for a remainder), an idle worker would start with what a new
        job would get. Workers apply it at their next layer boundary."""
        running = sorted(
            (w for w in self._pool if w.busy and _shares_cpus(w)), key=lambda w: w.started
        )
        for worker, threads in zip(
            running, cores.allot(self.cpus, len(running), self.blas_threads), strict=True
        ):
            worker.share.value = threads
        fresh = cores.allot(self.cpus, len(running) + 1, self.blas_threads)[-1]
        for worker in self._pool:
            if not worker.busy:
                worker.share.value = fresh if _shares_cpus(worker) else 1

    def _respawn(self) -> None:
        self._respawn_timer = None
        missing, self._missing = self._missing, []
        for lane in missing:
            if not self._closed:
                self._add_worker(lane)

    def _release(self, worker: _Worker) -> None:
        worker.busy = False
        if not worker.retired:
            self._idle.append(worker)
            self._notify()

    def _retire(self, worker: _Worker) -> None:
        worker.retired = True
        self._pool.discard(worker)
        if worker.process.exitcode is None:
            worker.process.kill()
        # the I/O thread sees EOF and closes the pipe; an idle worker's pipe is closed here
        if not worker.busy:
            worker.conn.close()

    def _replace(self, worker: _Worker, reason: str | None) -> None:
        """Kill a worker that is busy with a job we give up on (or that died), start another."""
        self._retire(worker)
        worker.busy = False
        if reason is not None:
            self._observer.pool_restarted(reason)
        if not self._aborted:
            self._add_worker(worker.lane)
        self._notify()

    def _exited(self, worker: _Worker) -> None:
        """A worker process ended: an idle one is replaced here, a busy one by its job."""
        self._loop.remove_reader(worker.process.sentinel)
        if worker.retired or worker.busy:
            return
        log.warning(
            "idle worker %s died (exit code %s)", worker.process.pid, worker.process.exitcode
        )
        self._idle.remove(worker)
        self._retire(worker)
        self._observer.pool_restarted("crashed")
        if not self._aborted:
            self._add_worker(worker.lane)

    def _arm_abort(self) -> None:
        if self._abort_timer is None and not self._closed:
            self._abort_timer = self._loop.call_later(
                self._settings.shutdown_timeout_s, self._abort
            )

    def _abort(self) -> None:
        self._aborted = True
        for worker in list(self._pool):
            if worker.busy:
                worker.process.kill()  # its job sees EOF, then ShuttingDown
        self._notify()
