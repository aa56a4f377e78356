"""The request files of initscope/examples/: listed in the OpenAPI schema, valid, and saying
what their names claim. (test_figures_api.py and test_compare.py also run every file through
the API as JSON and PNG.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from initscope.config import Settings
from initscope.engine.analysis import analyze
from initscope.http.api import EXAMPLE_SUMMARIES, create_app
from initscope.schemas import AnalyzeRequest, CompareRequest, SweepRequest, to_jobs
from initscope.train_schemas import SearchRequest, TrainRequest

EXAMPLES = Path(__file__).resolve().parent.parent / "service" / "initscope" / "examples"
MODELS: dict[
    str, type[AnalyzeRequest | CompareRequest | SweepRequest | TrainRequest | SearchRequest]
] = {
    "analyze": AnalyzeRequest,
    "compare": CompareRequest,
    "sweep": SweepRequest,
    "train": TrainRequest,
    "search": SearchRequest,
}


def _load(name: str) -> Any:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def test_every_file_has_a_summary_and_every_summary_a_file() -> None:
    assert sorted(p.stem for p in EXAMPLES.glob("*.json")) == sorted(EXAMPLE_SUMMARIES)


def test_the_top_level_examples_folder_is_the_package_data() -> None:
    top = Path(__file__).resolve().parent.parent / "examples"
    assert top.resolve() == EXAMPLES.resolve()


@pytest.mark.parametrize("name", sorted(EXAMPLE_SUMMARIES))
def test_each_file_is_a_valid_request_within_the_default_limits(name: str) -> None:
    kind = name.split("-", 1)[0]
    request = MODELS[kind].model_validate(_load(name))
    if isinstance(request, CompareRequest):
        assert to_jobs(request, Settings())
    elif isinstance(request, TrainRequest):
        assert request.jobs(Settings())
    else:
        assert request.job(Settings()) is not None


def test_swagger_try_it_out_starts_from_the_files() -> None:
    schema = create_app(Settings()).openapi()
    for kind in MODELS:
        body = schema["paths"][f"/{kind}"]["post"]["requestBody"]["content"]["application/json"]
        examples = body["examples"]
        assert list(examples) == [n for n in EXAMPLE_SUMMARIES if n.startswith(f"{kind}-")]
        for name, example in examples.items():
            assert example["value"] == _load(name)
            assert example["summary"] == EXAMPLE_SUMMARIES[name]
    first = next(
        iter(
            schema["paths"]["/analyze"]["post"]["requestBody"]["content"]["application/json"][
                "examples"
            ]
        )
    )
    assert first == "analyze-sigmoid-std1"  # the book's first experiment


def _analysis(name: str) -> Any:
    return analyze(AnalyzeRequest.model_validate(_load(name)).job(Settings()))


def test_relu_with_he_is_the_books_healthy_case() -> None:
    result = _analysis("analyze-relu-he")
    assert result.diagnosis.verdict == "healthy"
    stds = [layer.activations.std for layer in result.simulation.layers]
    assert max(stds) / min(stds) < 1.2  # the same distribution in every layer


def test_leaky_relu_with_the_matching_slope_sits_on_the_edge_of_chaos() -> None:
    request = _load("analyze-leaky-relu-he")
    slope = request["network"]["activation"]["negative_slope"]
    assert request["network"]["init"]["negative_slope"] == slope
    result = _analysis("analyze-leaky-relu-he")
    assert result.diagnosis.verdict == "healthy"
    assert result.theory is not None
    assert result.theory.chi_1 == pytest.approx(1.0, abs=1e-9)  # 2/(1+a^2) * (1+a^2)/2


def test_he_with_relus_gain_overshoots_a_leaky_relu() -> None:
    request = CompareRequest.model_validate(_load("compare-leaky-relu"))
    chi = {}
    for name, job in to_jobs(request, Settings()):
        result = analyze(job)
        assert result.theory is not None
        chi[name] = result.theory.chi_1
    matched, relu_gain, xavier = chi.values()
    assert matched == pytest.approx(1.0, abs=1e-9)
    assert relu_gain == pytest.approx(1.04, abs=1e-9)  # 1 + a^2 with a = 0.2
    assert xavier == pytest.approx(0.52, abs=1e-9)  # (1 + a^2) / 2
