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
# engine take ~360 MiB; each OpenBLAS thread reserves ~40 MiB more (NumPy and SciPy each
# bring one OpenBLAS). Measured with /proc/self/status VmPeak on x86-64 Linux.
WORKER_BASELINE_BYTES = 512 * MiB
# Default room above the request budget: the baseline, a figure, the pickled result.
WORKER_HEADROOM_BYTES = 1024 * MiB


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
    and memory budgets, checked before any work), the process (``worker_memory_bytes`` caps each
    worker's address space, ``request_timeout_s`` kills work that runs too long), and the server
    (a request that would wait longer than ``max_wait_s`` for the work ahead of it gets 503 at
    once; at most ``max_admitted`` requests are held). The memory budget is an estimate of one
    simulation's arrays; the cap must leave ``WORKER_BASELINE_BYTES`` above it for the
    interpreter and its libraries, and ``(workers + cheap_workers) * worker_memory_bytes``
    should fit in the machine's (or container's) memory.

    Admission (``initscope.runner``): ``max_wait_s`` bounds the expected wait of an admitted
    request (the work queued ahead in its lane at the measured throughput); ``cheap_workers``
    processes beyond ``workers`` serve only requests whose cost is below ``cheap_cost``
    multiply-adds; ``max_admitted`` caps the requests held at once, for memory only. The
    pool has ``workers + cheap_workers`` processes.
    """

    model_config = SettingsConfigDict(env_prefix="INITSCOPE_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: PositiveInt = 8000
    workers: PositiveInt = Field(default_factory=_usable_cpus)
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
    # Admission (initscope.runner): a request is refused (503, Retry-After: the wait) when the
    # work queued ahead of it in its lane, at the measured throughput over the lane's workers,
    # would keep it waiting longer than max_wait_s.
    max_wait_s: PositiveFloat = 2.0
    # Worker processes beyond ``workers`` that only cheap work may take: requests whose
    # multiply-adds (the budget's count) are below cheap_cost. 2e8 is 4x the book request
    # (1000 x 5 x 100: 5e7; 256 x 3 x 64: ~3e6) and ~40 ms of one core; a recommending
    # analysis counts its verification passes, so the book with "recommend" is not cheap.
    cheap_workers: NonNegativeInt = 1
    cheap_cost: PositiveInt = 200_000_000
    # Only a memory safety net: requests held at once (running or waiting), both lanes.
    max_admitted: PositiveInt = 256
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
        if self.worker_memory_limit < self.memory_budget_bytes + WORKER_BASELINE_BYTES:
            raise ValueError(
                f"worker_memory_bytes ({self.worker_memory_limit / MiB:.0f} MiB) must exceed "
                f"memory_budget_bytes ({self.memory_budget_bytes / MiB:.0f} MiB) by at least "
                f"{WORKER_BASELINE_BYTES / MiB:.0f} MiB, a worker's own footprint"
            )
        return self

    @property
    def threads_per_worker(self) -> int:
        """BLAS threads per worker: given, or the usable CPUs shared among the workers."""
        return self.blas_threads or max(1, _usable_cpus() // self.workers)

    @property
    def worker_memory_limit(self) -> int:
        """RLIMIT_AS of each worker: given, or the request budget plus the default headroom."""
        return self.worker_memory_bytes or self.memory_budget_bytes + WORKER_HEADROOM_BYTES


def get_settings() -> Settings:
    return Settings()
