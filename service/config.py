"""Settings: one object, read once from the environment (prefix ``INITSCOPE_``)."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PositiveInt = Annotated[int, Field(gt=0)]


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

    @property
    def threads_per_worker(self) -> int:
        """BLAS threads per worker: given, or the usable CPUs shared among the workers."""
        return self.blas_threads or max(1, _usable_cpus() // self.workers)


def get_settings() -> Settings:
    return Settings()
