"""Random search: better than the median, deterministic, ranked, drawn, within the budget."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from initscope import cli
from initscope.cli import Streams
from initscope.config import Settings
from initscope.train_schemas import SearchRequest
from initscope.training.search import run_search
from rich.console import Console

BODY: dict[str, Any] = {
    "network": {"input_dim": 2, "depth": 2, "width": 32, "activation": "relu", "init": "he_normal"},
    "task": {"name": "spirals", "samples": 300},
    "optimizer": {"name": "sgd"},
    "epochs": 6,
    "x": {"param": "learning_rate", "low": 1e-4, "high": 1.0},
    "y": {"param": "weight_decay", "low": 1e-6, "high": 1e-1},
    "trials": 10,
}


def test_the_best_trial_beats_the_median_and_trials_are_ranked() -> None:
    result = run_search(SearchRequest.model_validate(BODY).job(Settings()))
    accuracies = [t.val_accuracy for t in result.trials]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[0] > result.median_val_accuracy
    for trial in result.trials:  # drawn inside the log-uniform ranges
        assert 1e-4 <= trial.x <= 1.0
        assert 1e-6 <= trial.y <= 1e-1
    spread = math.log10(max(t.x for t in result.trials) / min(t.x for t in result.trials))
    assert spread > 1  # log-uniform: several decades, not a cluster near the top


def test_search_is_deterministic_for_a_seed() -> None:
    job = SearchRequest.model_validate({**BODY, "trials": 3, "epochs": 2}).job(Settings())
    assert run_search(job).trials == run_search(job).trials
    other = SearchRequest.model_validate({**BODY, "trials": 3, "epochs": 2, "seed": 5})
    assert run_search(other.job(Settings())).trials != run_search(job).trials


def test_search_route_json_and_scatter(client: TestClient) -> None:
    body = {**BODY, "trials": 4, "epochs": 2}
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.text
    trials = response.json()["trials"]
    assert [t["rank"] for t in trials] == [1, 2, 3, 4]
    figure = client.post("/search", json=body, headers={"Accept": "image/svg+xml"})
    assert figure.status_code == 200
    assert figure.headers["content-type"].startswith("image/svg+xml")


@pytest.mark.parametrize(
    ("patch", "loc_or_type"),
    [
        ({"trials": 200, "epochs": 1000}, "compute_budget"),
        ({"x": {"param": "weight_decay", "low": 0.0, "high": 0.1}}, "value_error"),
        ({"x": {"param": "momentum", "low": 0.5, "high": 0.9}}, "value_error"),
    ],
)
def test_search_refusals(client: TestClient, patch: dict[str, Any], loc_or_type: str) -> None:
    response = client.post("/search", json={**BODY, **patch})
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == loc_or_type


def test_command_line_train_and_search_compute_in_process(tmp_path: Path) -> None:
    for kind, body in (
        ("search", {**BODY, "trials": 3, "epochs": 2}),
        ("train", {k: v for k, v in BODY.items() if k not in ("x", "y", "trials")}),
    ):
        spec = tmp_path / f"{kind}.json"
        spec.write_text(json.dumps(body))
        out, err = io.StringIO(), io.StringIO()
        streams = Streams(Console(file=out), Console(file=err), io.BytesIO())
        assert cli.run([kind, str(spec), "--json"], streams) == 0
        answer = json.loads(out.getvalue())
        if kind == "search":
            assert [t["rank"] for t in answer["trials"]] == [1, 2, 3]
        else:
            assert len(answer["runs"][0]["history"]) == 7
