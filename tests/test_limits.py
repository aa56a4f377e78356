"""One budget check for every operation (initscope.limits): what each says when a request is
over the compute or the memory budget, and where."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from initscope.config import Settings
from initscope.errors import BudgetExceeded, FieldError, InvalidRequest
from initscope.schemas import AnalyzeRequest, CompareRequest, SweepRequest, to_jobs
from initscope.train_schemas import SearchRequest, TrainRequest

NETWORK = {"input_dim": 8, "depth": 3, "width": 32, "activation": "tanh", "init": "xavier_normal"}
TINY = Settings(compute_budget=1000, memory_budget_bytes=1000)
TRAINING = {"network": {**NETWORK, "input_dim": 2}, "task": {"name": "spirals", "samples": 120}}


def _refusal(build: Any, settings: Settings = TINY) -> list[FieldError]:
    with pytest.raises(BudgetExceeded) as caught:
        build(settings)
    return caught.value.errors


def test_an_analysis_over_both_budgets() -> None:
    request = AnalyzeRequest.model_validate({"network": NETWORK, "input": {"samples": 100}})
    job = request.job(Settings())
    compute, memory = _refusal(request.job)
    assert compute == FieldError(
        ("body", "network"),
        f"the request costs {job.cost + job.macs:.3g} multiply-adds (a pass: samples x sum of "
        f"fan_in*fan_out = 100 x {job.macs // 100}; at least one pass verifying the "
        f"recommendation {job.macs:.3g}); the limit is 1e+03: use fewer samples or smaller "
        'layers, or "recommend": false',
        "compute_budget",
        job.cost + job.macs,
    )
    assert memory == FieldError(
        ("body", "network"),
        f"the request needs about {job.peak_bytes() / 2**20:.0f} MiB of working memory; the "
        "limit is 0 MiB: use fewer samples, fewer or smaller layers, or float32",
        "memory_budget",
        job.peak_bytes(),
    )


def test_a_comparison_within_the_budget_one_by_one_but_not_together() -> None:
    request = CompareRequest.model_validate(
        {
            "base": NETWORK,
            "variants": [{"name": "a"}, {"name": "b", "init": "he_normal"}],
            "input": {"samples": 100},
            "jacobian": {"samples": 2},
            "recommend": False,
        }
    )
    jobs = [job for _, job in to_jobs(request, Settings())]
    one = max(job.cost for job in jobs)
    settings = Settings(compute_budget=one)
    (compute,) = _refusal(lambda s: to_jobs(request, s), settings)
    assert compute.loc == ("body", "variants")
    assert compute.msg.startswith(f"the request costs {sum(j.cost for j in jobs):.3g} ")
    jacobian = sum(job.jacobian_macs for job in jobs)
    assert f"; Jacobian spectrum {jacobian:.3g}); " in compute.msg
    assert compute.msg.endswith(", or fewer Jacobian samples")


@pytest.mark.parametrize("kind", ["train", "search"])
def test_training_over_both_budgets(kind: str) -> None:
    build: Callable[[Settings], object]
    if kind == "train":
        train = TrainRequest.model_validate(TRAINING)
        (_, job), *_ = train.jobs(Settings())
        build, macs = train.jobs, job.cost
    else:
        search = SearchRequest.model_validate({**TRAINING, "trials": 3})
        job = search.job(Settings()).base
        build, macs = search.job, 3 * job.fit_cost
    compute, memory = _refusal(build)
    assert compute == FieldError(
        ("body",),
        f"the training costs {macs:.3g} multiply-adds (3 x rows trained x weights, plus the "
        "evaluations); the limit is 1e+03: use fewer epochs, steps, samples, trials or smaller "
        "layers",
        "compute_budget",
        macs,
    )
    assert memory.loc == ("body",)
    assert memory.msg.endswith("MiB: use fewer samples or smaller layers")


def test_a_sweep_over_the_compute_budget() -> None:
    request = SweepRequest.model_validate(
        {
            "activation": "tanh",
            "depth": 3,
            "width": 16,
            "samples": 64,
            "x": {"param": "sigma_w2", "values": [1.0, 2.0]},
            "y": {"param": "sigma_b2", "values": [0.0]},
        }
    )
    macs = request.job(Settings()).macs
    (compute,) = _refusal(request.job)  # no memory estimate to hold it to
    assert compute == FieldError(
        ("body",),
        f"the sweep simulates {macs:.3g} multiply-adds (cells x samples x depth x width^2); the "
        "limit is 1e+03: use fewer cells, samples or smaller networks, or source=theory",
        "compute_budget",
        macs,
    )


def test_a_sweep_over_the_size_limits_says_by_how_much() -> None:
    request = SweepRequest.model_validate(
        {
            "activation": "tanh",
            "depth": 30,
            "x": {"param": "width", "values": [8, 600]},
            "y": {"param": "sigma_b2", "values": [0.0]},
        }
    )
    with pytest.raises(InvalidRequest) as caught:
        request.job(Settings(max_layers=20, max_units=512))
    assert caught.value.errors == [
        FieldError(
            ("body", "x", "values"), "width must be at most 512, got 600", "less_than_equal", 600
        ),
        FieldError(("body", "depth"), "depth must be at most 20, got 30", "less_than_equal", 30),
    ]
