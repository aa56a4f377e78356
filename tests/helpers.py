"""Building jobs from plain request dicts, as a client would write them."""

from __future__ import annotations

from typing import Any

from initscope.config import Settings
from initscope.jobs import AnalysisJob
from initscope.schemas import AnalyzeRequest

BOOK_INITS: dict[str, dict[str, Any]] = {
    "std=1": {"scheme": "normal", "std": 1.0},
    "std=0.01": {"scheme": "normal", "std": 0.01},
    "xavier": {"scheme": "lecun_normal"},  # the book's "Xavier": 1/sqrt(n)
    "he": {"scheme": "he_normal"},  # sqrt(2/n)
}


def make_job(body: dict[str, Any], settings: Settings | None = None) -> AnalysisJob:
    return AnalyzeRequest.model_validate(body).job(settings or Settings())


def book_job(activation: str, init: str, **extra: Any) -> AnalysisJob:
    """Chapter 6's setup: x ~ N(0, 1) 1000 x 100, five layers of 100, no bias."""
    body: dict[str, Any] = {
        "network": {
            "input_dim": 100,
            "depth": 5,
            "width": 100,
            "activation": activation,
            "init": BOOK_INITS[init],
        },
        "input": {"samples": 1000},
        "seed": 0,
        **extra,
    }
    return make_job(body)
