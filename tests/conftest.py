from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.http.api import create_app


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Small limits so that limit checks are cheap to exercise; two workers, one thread each."""
    return Settings(
        workers=2,
        blas_threads=1,
        max_layers=20,
        max_units=512,
        max_samples=4096,
        max_bins=200,
        max_inline_rows=64,
        max_inline_values=4096,
        compute_budget=200_000_000,
        memory_budget_bytes=200_000_000,
    )


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def default_client() -> Iterator[TestClient]:
    """The service with its default limits, for the request files in examples/."""
    with TestClient(create_app(Settings(workers=2, blas_threads=1))) as test_client:
        yield test_client
