"""The engine's floating-point policy (initscope.engine.floating): every public entry point
that can meet inf or NaN runs under it and counts non-finite values itself, so no outcome
depends on whether this CPU's BLAS kernel raises NumPy's flags.

Each entry point is called with non-finite input under ``np.errstate(all="raise")`` (pytest
also turns warnings into errors): an entry point that does not apply the policy raises
``FloatingPointError`` on the elementwise arithmetic on inf (``inf - inf`` in a mean, an
overflowing ``exp``), on any CPU, whatever the BLAS does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from initscope.config import Settings
from initscope.engine import statistics
from initscope.engine.activations import Linear
from initscope.engine.analysis import analyze
from initscope.engine.floating import applies_policy, has_policy
from initscope.engine.initializers import Lsuv, Orthogonal
from initscope.engine.layers import lsuv
from initscope.engine.simulation import jacobian_spectrum, simulate
from initscope.engine.sweep import run_sweep
from initscope.schemas import SweepRequest
from initscope.train_schemas import TrainRequest
from initscope.training.datasets import Dataset
from initscope.training.loop import dataset, fit, train
from initscope.training.search import run_search

from tests.helpers import make_job

ENTRY_POINTS: list[Callable[..., Any]] = [
    simulate,
    analyze,
    run_sweep,
    lsuv,
    jacobian_spectrum,
    fit,
    train,
    run_search,
    statistics.summarise,
    statistics.histogram,
    statistics.summarise_derivative,
    statistics.sum_squares,
    statistics.rms,
    statistics.effective_rank,
    statistics.distinct_units,
]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_every_public_entry_point_applies_the_policy(entry: Callable[..., Any]) -> None:
    assert has_policy(entry)


def test_the_marker_is_what_the_decorator_sets_and_the_policy_silences_inf_arithmetic() -> None:
    def bare(x: np.ndarray) -> float:
        return float(np.mean(x - x))  # inf - inf: "invalid" on every CPU

    x = np.array([np.inf, 1.0])
    with np.errstate(all="raise"):
        with pytest.raises(FloatingPointError):
            bare(x)
        assert np.isnan(applies_policy(bare)(x))
    assert not has_policy(bare)
    assert has_policy(applies_policy(bare))


def _inf_job() -> Any:
    job = make_job(
        {
            "network": {
                "input_dim": 3,
                "layers": [
                    {"units": 4, "activation": "relu", "init": "he_normal", "batch_norm": {}},
                    {"units": 3, "activation": "tanh", "init": {"scheme": "lsuv"}},
                ],
            },
            "input": {"samples": 5},
            "jacobian": {"samples": 2},
            "seed": 0,
        }
    )
    rows = [[1.0, 2.0, 3.0] for _ in range(5)]
    rows[0][1] = np.inf
    return dataclasses.replace(job, data=tuple(tuple(r) for r in rows))


def test_simulate_and_analyze_count_what_overflowed_under_raise() -> None:
    job = _inf_job()
    with np.errstate(all="raise"):
        sim = simulate(job)
        result = analyze(job)
    assert sim.layers[0].activations.non_finite > 0
    assert sim.jacobian is not None
    assert result.simulation == sim


def test_lsuv_and_the_spectrum_count_what_overflowed_under_raise() -> None:
    h_prev = np.ones((4, 3))
    h_prev[0, 0] = np.inf
    w = Orthogonal().sample(np.random.default_rng(0), 3, 2)
    m = np.ones((3, 2, 2))
    m[1, 0, 0] = np.inf
    with np.errstate(all="raise"):
        _, _, report = lsuv(Lsuv(), Linear(), h_prev, w, np.zeros(2))
        spectrum = jacobian_spectrum(m)
    assert report.final_variance is None
    assert not report.converged
    assert spectrum.excluded_samples == 1


def test_statistics_count_non_finite_values_under_raise() -> None:
    x = np.array([[np.inf, -np.inf], [np.nan, 1.0], [2.0, 3.0]], dtype=np.float32)
    with np.errstate(all="raise"):
        summary = statistics.summarise(x)
        counts = statistics.histogram(x, 4, (0.0, 4.0))
        assert np.isnan(statistics.rms(x))
    assert summary.non_finite == 3
    assert counts.non_finite == 3


def test_training_and_the_sweep_run_under_raise() -> None:
    [(_, job)] = TrainRequest.model_validate(
        {
            "network": {
                "input_dim": 2,
                "depth": 2,
                "width": 8,
                "activation": "relu",
                "init": "he_normal",
            },
            "task": {"name": "spirals", "samples": 40},
            "epochs": 2,
        }
    ).jobs(Settings())
    data = dataset(job)
    x = data.x_train.copy()
    x[0, 0] = np.inf
    broken = dataclasses.replace(data, x_train=x)
    sweep = SweepRequest.model_validate(
        {
            "activation": "relu",
            "depth": 40,
            "width": 10,
            "samples": 16,
            "x": {"param": "sigma_w2", "values": [2.0, 1e6]},
            "y": {"param": "sigma_b2", "values": [0.0, 1.0]},
        }
    ).job(Settings())
    with np.errstate(all="raise"):
        run = fit(job, broken)
        sweep_result = run_sweep(sweep)
    assert run.history[-1].train_loss is None
    assert run.diverged
    assert sweep_result.simulation is not None


def test_fit_reports_inf_input_as_divergence_not_an_error() -> None:
    """The same run outside any errstate: the policy, not the caller, decides."""
    [(_, job)] = TrainRequest.model_validate(
        {
            "network": {
                "input_dim": 2,
                "depth": 1,
                "width": 4,
                "activation": "tanh",
                "init": "xavier_normal",
            },
            "task": {"name": "spirals", "samples": 30},
            "epochs": 1,
        }
    ).jobs(Settings())
    data: Dataset = dataset(job)
    x = data.x_train.copy()
    x[:, 0] = np.inf
    assert fit(job, dataclasses.replace(data, x_train=x)).diverged
