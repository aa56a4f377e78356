"""The shared layer texts: the span of a set of layers and what a layer adds to its dense map."""

from __future__ import annotations

from typing import Any

import pytest
from initscope.engine.analysis import analyze
from initscope.engine.simulation import simulate
from initscope.labels import layer_extras, layer_span

from tests.helpers import make_job

PLAIN: dict[str, Any] = {"units": 4, "activation": "tanh", "init": "xavier_normal"}


def job_of(*extras: dict[str, Any]) -> Any:
    body = {
        "network": {"input_dim": 3, "layers": [{**PLAIN, **extra} for extra in extras]},
        "input": {"samples": 16},
        "seed": 0,
    }
    return make_job(body)


@pytest.mark.parametrize(
    ("indices", "text"),
    [
        ((3,), "layer 3"),
        ((1, 2), "layers 1-2"),
        ((1, 2, 3, 4, 5), "layers 1-5"),
        ((1, 4), "layers 1, 4"),
        ((2, 3, 5), "layers 2, 3, 5"),
    ],
)
def test_layer_span(indices: tuple[int, ...], text: str) -> None:
    assert layer_span(indices) == text


def test_layer_extras_of_specs_and_results_alike() -> None:
    job = job_of(
        {},
        {"batch_norm": {}},
        {"dropout": 0.5},
        {"batch_norm": {"placement": "after", "gamma": 2.0}, "dropout": 0.25},
    )
    long = ["", "BN", "dropout 0.5", "BN after(gamma=2), dropout 0.25"]
    short = ["", "BN", "drop 0.5", "BN after(gamma=2), drop 0.25"]
    assert [spec.extras for spec in job.layers] == long
    assert [layer_extras(spec) for spec in job.layers] == long
    layers = simulate(job).layers
    assert [layer_extras(layer) for layer in layers] == long
    assert [layer_extras(layer, short=True) for layer in layers] == short


@pytest.mark.parametrize(
    ("normalised", "where"),
    [((1, 2), "in layers 1-2 gives"), ((2,), "in layer 2 gives"), ((1, 2, 3), "in every layer")],
)
def test_the_batch_norm_note_names_its_layers(normalised: tuple[int, ...], where: str) -> None:
    job = job_of(*({"batch_norm": {}} if i in normalised else {} for i in (1, 2, 3)))
    advice = analyze(job).diagnosis.recommendation
    assert advice is not None
    reason = advice.reason
    assert f"Batch norm before the activation {where}" in reason
