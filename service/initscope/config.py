"""Settings: one object, read once from the environment (prefix ``INITSCOPE_``)."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]

MiB = 2**20
# A worker's address space before any request: Python, NumPy, SciPy, Matplotlib and the
# engine, plus ~40 MiB per OpenBLAS thread it may start (OPENBLAS_NUM_THREADS at load; NumPy
# and SciPy each bring one OpenBLAS), plus, with more than one thread, the statistics thread
# (its stack and its malloc arena). Measured with /proc/self/status VmPeak on x86-64 Linux
# (OpenBLAS 0.3, CPython 3.11): 322 MiB with 1 thread; with 2, 402 MiB idle and 534 MiB
# after the book's analysis (the statistics thread started).
WORKER_FIXED_BYTES = 256 * MiB
WORKER_THREAD_BYTES = 2 * 40 * MiB
WORKER_STATISTICS_THREAD_BYTES = 128 * MiB
WORKER_BASELINE_BYTES = 512 * MiB  # the floor of worker_baseline_bytes
# Default room above the request budget: the baseline, a figure, the pickled result.
WORKER_HEADROOM_BYTES = 1024 * MiB


def worker_baseline_bytes(threads: int) -> int:
    """A worker's own footprint when its BLAS pools may grow to ``threads``."""
    statistics = WORKER_STATISTICS_THREAD_BYTES if threads > 1 else 0
    own = WORKER_FIXED_BYTES + threads * WORKER_THREAD_BYTES + statistics
    return max(WORKER_BASELINE_BYTES, own)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """Service limits and process-pool sizing.

    The compute budget counts multiply-adds of one forward pass,
    ``samples * sum(fan_in * fan_out)``; the backward pass costs twice that again.
    The default admits the benchmark's largest shape (2048 x 10 layers x 1024 units,
    about 2.1e10) and little more: a few seconds on a 2-core machine.

    Resource consumption is bounded at three levels: a request's size (``max_*``, the compute
    and memory budgets, checked before any work), the process (``worker_memory_bytes`` caps
    each worker's address space, ``request_timeout_s`` kills work that runs too long), and the
    server (at most ``max_in_flight`` requests hold the pool and ``max_queue`` wait; the rest
    get 503 at once). The memory budget is an estimate of one simulation's arrays; the cap
    must leave ``worker_baseline_bytes(threads)`` above it for the interpreter and its
    libraries, and ``workers * worker_memory_bytes`` should fit in the machine's (or
    container's) memory.
    """

    model_config = SettingsConfigDict(env_prefix="INITSCOPE_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: PositiveInt = 8000
    workers: PositiveInt = Field(default_factory=_usable_cpus)
    # The CPUs the workers' jobs share (default: this process's usable CPUs) and the most BLAS
    # threads one job may take (default: all of them): threads follow the work.
    cpus: PositiveInt | None = None
    blas_threads: PositiveInt | None = None

    max_layers: PositiveInt = 64
    max_units: PositiveInt = 4096
    max_samples: PositiveInt = 16384
    max_bins: PositiveInt = 1000
    max_inline_rows: PositiveInt = 1024
    max_inline_values: PositiveInt = 262_144
    compute_budget: PositiveInt = 24_000_000_000
    memory_budget_bytes: PositiveInt = 1_500_000_000
    # Request bodies above this get 413; 8 MiB holds max_inline_values floats as JSON.
    max_body_bytes: PositiveInt = 8_388_608

    worker_memory_bytes: PositiveInt | None = None
    max_in_flight: PositiveInt | None = None
    max_queue: NonNegativeInt | None = None
    request_timeout_s: PositiveFloat = 30.0
    shutdown_timeout_s: PositiveFloat = 10.0
    retry_after_s: PositiveInt = 1

    cache_max_entries: NonNegativeInt = 256
    cache_max_bytes: NonNegativeInt = 64 * 2**20
    cache_max_age: NonNegativeInt = 86_400
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_json: bool = True

    @model_validator(mode="after")
    def _budget_fits_under_the_cap(self) -> Settings:
        baseline = worker_baseline_bytes(self.threads_per_worker)
        if self.worker_memory_limit < self.memory_budget_bytes + baseline:
            raise ValueError(
                f"worker_memory_bytes ({self.worker_memory_limit / MiB:.0f} MiB) must exceed "
                f"memory_budget_bytes ({self.memory_budget_bytes / MiB:.0f} MiB) by at least "
                f"{baseline / MiB:.0f} MiB, a worker's own footprint with "
                f"{self.threads_per_worker} BLAS threads"
            )
        return self

    @property
    def pool_cpus(self) -> int:
        """The CPUs the jobs share: given, or the usable CPUs."""
        return self.cpus or _usable_cpus()

    @property
    def threads_per_worker(self) -> int:
        """The most BLAS threads one job takes (a lone job); running jobs share ``pool_cpus``
        (:func:`initscope.engine.cores.allot`)."""
        return min(self.blas_threads or self.pool_cpus, self.pool_cpus)

    @property
    def worker_memory_limit(self) -> int:
        """RLIMIT_AS of each worker: given, or the request budget plus the default headroom
        (more when many BLAS threads raise the baseline)."""
        headroom = max(
            WORKER_HEADROOM_BYTES,
            worker_baseline_bytes(self.threads_per_worker) + WORKER_HEADROOM_BYTES // 2,
        )
        return self.worker_memory_bytes or self.memory_budget_bytes + headroom

    @property
    def in_flight_limit(self) -> int:
        """Requests running at once: given, or one per worker."""
        return self.max_in_flight or self.workers

    @property
    def queue_limit(self) -> int:
        """Admitted requests waiting for a slot: given, or two per worker."""
        return 2 * self.workers if self.max_queue is None else self.max_queue


def get_settings() -> Settings:
    return Settings()
