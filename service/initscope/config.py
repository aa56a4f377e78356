"""Settings: one object, read once from the environment (prefix ``INITSCOPE_``)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]

MiB = 2**20
# A worker's address space before any request: Python, NumPy, Matplotlib and the engine, one
# OpenBLAS thread (OPENBLAS_NUM_THREADS=1 at load), plus per thread a job may run (the blocks
# of its products, initscope.engine.cores) and, above one, the statistics thread: each a stack
# and a malloc arena. Measured with /proc/self/status VmPeak on x86-64 Linux (CPython 3.11,
# no SciPy): 170 MiB idle, 414 MiB after the book's analysis on a share of 2 (its block thread
# and statistics thread started); the formula below gives 528 MiB there.
WORKER_FIXED_BYTES = 256 * MiB
WORKER_THREAD_BYTES = 72 * MiB  # an 8 MiB stack and a 64 MiB malloc arena
WORKER_STATISTICS_THREAD_BYTES = 128 * MiB
WORKER_BASELINE_BYTES = 512 * MiB  # the floor of worker_baseline_bytes
# Default room above the request budget: the baseline, a figure, the pickled result.
WORKER_HEADROOM_BYTES = 1024 * MiB


# RFC 6750 section 2.1: what an ``Authorization: Bearer`` credential may hold.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_TOKEN_CHARACTERS = "RFC 6750: A-Z a-z 0-9 - . _ ~ + / and trailing ="


def _split_keys(value: object) -> object:
    """``INITSCOPE_API_KEYS`` is comma-separated; blanks and surrounding whitespace go."""
    if isinstance(value, str):
        return tuple(key.strip() for key in value.split(",") if key.strip())
    return value


ApiKeys = Annotated[tuple[SecretStr, ...], NoDecode, BeforeValidator(_split_keys)]


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
    and memory budgets, checked before any work), the process (``worker_memory_bytes`` caps each
    worker's address space, ``request_timeout_s`` kills work that runs too long), and the server
    (a request that would wait longer than ``max_wait_s`` for the work ahead of it gets 503 at
    once; at most ``max_admitted`` requests are held). The memory budget is an estimate of one
    simulation's arrays; the cap must leave ``worker_baseline_bytes(threads)`` above it for the
    interpreter and its libraries, and ``(workers + cheap_workers) * worker_memory_bytes``
    should fit in the machine's (or container's) memory.

    Admission (``initscope.runner``): ``max_wait_s`` bounds the expected wait of an admitted
    request (the work queued ahead in its lane at the measured throughput); ``cheap_workers``
    processes beyond ``workers`` serve only requests whose cost is below ``cheap_cost``
    multiply-adds; ``max_admitted`` caps the requests held at once, for memory only. The
    pool has ``workers + cheap_workers`` processes.
    """

    # hide_input_in_errors: a refused setting is named, its value (maybe an API key) not echoed.
    model_config = SettingsConfigDict(
        env_prefix="INITSCOPE_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

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

    # --- who may call (initscope.http.auth) ---
    api_keys: ApiKeys = ()
    api_keys_file: Path | None = None
    key_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    # --- end of who may call ---

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

    @model_validator(mode="after")
    def _keys_are_bearer_tokens(self) -> Settings:
        if self.api_keys_file is not None:
            _ = self.bearer_keys  # read now: an unreadable file stops the server from starting
        for i, key in enumerate(self.api_keys):
            if not _B64TOKEN.fullmatch(key.get_secret_value()):
                raise ValueError(
                    f"INITSCOPE_API_KEYS: key {i + 1} holds a character an Authorization: "
                    f"Bearer token cannot carry ({_TOKEN_CHARACTERS})"
                )
        return self

    @property
    def bearer_keys(self) -> tuple[str, ...]:
        """The API keys: ``api_keys`` and the lines of ``api_keys_file``; () turns auth off.

        A file that does not exist adds none (a Kubernetes Secret volume marked optional is an
        empty folder while the Secret is missing); one that exists but cannot be read, or
        holds no key, is an error, so the server does not start.
        """
        keys = [key.get_secret_value() for key in self.api_keys]
        path = self.api_keys_file
        if path is not None and path.exists():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"INITSCOPE_API_KEYS_FILE: cannot read {path}: {exc}") from None
            lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
            for n, key in lines:
                if key and not _B64TOKEN.fullmatch(key):
                    raise ValueError(
                        f"INITSCOPE_API_KEYS_FILE: line {n} of {path} holds a character an "
                        f"Authorization: Bearer token cannot carry ({_TOKEN_CHARACTERS})"
                    )
            if not any(key for _, key in lines):
                raise ValueError(f"INITSCOPE_API_KEYS_FILE: {path} holds no key")
            keys += [key for _, key in lines if key]
        return tuple(dict.fromkeys(keys))

    @property
    def key_limit(self) -> int:
        """Requests one API key may have in flight: its share of three requests per worker (one
        running, two waiting: the depth at which a full pool's wait nears ``max_wait_s`` for
        the requests it was sized for), at least one."""
        return max(1, int(self.key_share * 3 * self.workers))

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


def get_settings() -> Settings:
    return Settings()
