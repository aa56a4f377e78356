"""/sweep and /search fan out: a job per row or trial, spread over the pool, combined into
exactly what the single job of before computed (the sequential reference below is that job's
code, kept as it was)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.engine.sweep import (
    SweepJob,
    SweepResult,
    Value,
    critical_curve,
    predicted,
    run_sweep,
    simulated,
)
from initscope.operations import SEARCH, SWEEP, Operation, run_here
from initscope.schemas import SweepRequest
from initscope.train_schemas import SearchRequest
from initscope.training.loop import dataset, fit
from initscope.training.search import _TAG, SearchJob, SearchResult, Trial, run_search, with_value
from threadpoolctl import threadpool_limits

SWEEP_BODY: dict[str, Any] = {
    "activation": "tanh",
    "depth": 6,
    "width": 32,
    "samples": 64,
    "seed": 3,
    "metric": "chi_1",
    "source": "both",
    "x": {"param": "sigma_w2", "values": [0.5, 1.0, 2.0]},
    "y": {"param": "sigma_b2", "values": [0.0, 0.05, 0.1, 0.3]},
}
SEARCH_BODY: dict[str, Any] = {
    "network": {"input_dim": 2, "depth": 2, "width": 16, "activation": "relu", "init": "he_normal"},
    "task": {"name": "spirals", "samples": 200},
    "optimizer": {"name": "sgd"},
    "epochs": 3,
    "seed": 5,
    "x": {"param": "learning_rate", "low": 1e-3, "high": 1.0},
    "y": {"param": "weight_decay", "low": 1e-6, "high": 1e-1},
    "trials": 6,
}


def sequential_sweep(job: SweepJob) -> SweepResult:
    """The whole grid in one job, as /sweep computed it before it fanned out."""
    sim_rows: list[tuple[Value, ...]] = []
    pred_rows: list[tuple[Value, ...]] = []
    for row in job.cells():
        if job.source != "theory":
            sim_rows.append(tuple(simulated(job, c) for c in row))
        if job.source != "simulation":
            pred_rows.append(tuple(predicted(job, c) for c in row))
    curve, note = critical_curve(job)
    sim = None if job.source == "theory" else tuple(sim_rows)
    pred = None if job.source == "simulation" else tuple(pred_rows)
    return SweepResult(job, sim, pred, curve, note)


def sequential_search(job: SearchJob) -> SearchResult:
    """Every trial in one job, its draws in sequence, as /search computed it before."""
    rng = np.random.default_rng(np.random.SeedSequence((job.base.seed, _TAG)))
    xs, ys = job.x.draw(rng, job.trials), job.y.draw(rng, job.trials)
    data = dataset(job.base)
    trials = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        last = fit(with_value(with_value(job.base, job.x.param, x), job.y.param, y), data)
        end = last.history[-1]
        trials.append(
            Trial(
                x,
                y,
                end.val_accuracy,
                end.val_loss,
                end.train_accuracy,
                end.train_loss,
                last.diverged,
                i,
            )
        )
    median = float(np.median([t.val_accuracy for t in trials]))
    ranked = sorted(
        trials, key=lambda t: (-t.val_accuracy, math.inf if t.val_loss is None else t.val_loss)
    )
    return SearchResult(job.x.param, job.y.param, tuple(ranked), median, 0.0)


@pytest.fixture(scope="module")
def two_workers() -> Settings:
    return Settings(workers=2, blas_threads=1)


@pytest.mark.parametrize("source", ["simulation", "theory", "both"])
def test_sweep_rows_combine_to_the_single_job(two_workers: Settings, source: str) -> None:
    request = SweepRequest.model_validate({**SWEEP_BODY, "source": source})
    jobs = SWEEP.to_jobs(request, two_workers)
    assert len(jobs) == len(SWEEP_BODY["y"]["values"]) > 1
    # backwards: a row does not depend on the rows computed before it
    parts = [(name, SWEEP.compute(job)) for name, job in reversed(jobs)][::-1]
    whole = request.job(two_workers)
    assert SWEEP.combine(parts) == sequential_sweep(whole) == run_sweep(whole)


def test_search_trials_combine_to_the_single_job(two_workers: Settings) -> None:
    job = SearchRequest.model_validate(SEARCH_BODY).job(two_workers)
    jobs = SEARCH.to_jobs(SearchRequest.model_validate(SEARCH_BODY), two_workers)
    assert len(jobs) == SEARCH_BODY["trials"] > 1
    parts = [(name, SEARCH.compute(job)) for name, job in reversed(jobs)][::-1]
    fanned = SEARCH.combine(parts)
    old = sequential_search(job)
    assert fanned.trials == old.trials == run_search(job).trials
    assert (fanned.x_param, fanned.y_param, fanned.median_val_accuracy) == (
        old.x_param,
        old.y_param,
        old.median_val_accuracy,
    )


@pytest.mark.parametrize(
    ("operation", "body"), [(SWEEP, SWEEP_BODY), (SEARCH, SEARCH_BODY)], ids=["sweep", "search"]
)
def test_the_pool_answers_what_run_here_computes(
    default_client: TestClient,
    operation: Operation[Any, Any, Any, Any],
    body: dict[str, Any],
) -> None:
    """default_client: two workers, one BLAS thread each (hence the limit here: same rounding)."""
    jobs = operation.to_jobs(operation.request.model_validate(body), Settings())
    assert len(jobs) > 1
    ticks: list[None] = []
    with threadpool_limits(limits=1):
        result = run_here(operation, jobs, lambda: ticks.append(None))
    here = operation.to_json(result).model_dump(mode="json")
    assert len(ticks) == operation.total(jobs) == len(jobs)  # one per row, one per trial
    response = default_client.post(f"/{operation.name}", json=body)
    assert response.status_code == 200, response.text
    served = response.json()
    for answer in (here, served):
        answer.pop("elapsed_ms", None)  # timings differ
    assert here == served
