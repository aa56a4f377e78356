"""One definition per operation: the HTTP route and the in-process path (the CLI's) are the
same request model, jobs, computation and response model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.operations import COMPARE, OPERATIONS, run_here
from threadpoolctl import threadpool_limits

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_every_operation_is_a_route_with_its_models(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    for name, operation in OPERATIONS.items():
        post = paths[f"/{name}"]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        answer = post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert body.endswith(f"/{operation.request.__name__}")
        assert answer.endswith(f"/{operation.response.__name__}")
        assert post["summary"] == operation.summary
        assert post["operationId"] == name  # generated clients call client.analyze(...)


@pytest.mark.parametrize("example", ["analyze-relu-he", "compare-relu"])
def test_in_process_is_what_the_service_answers(default_client: TestClient, example: str) -> None:
    operation = OPERATIONS[example.split("-", 1)[0]]
    body = json.loads((EXAMPLES / f"{example}.json").read_text())
    jobs = operation.to_jobs(operation.request.model_validate(body), Settings())
    with threadpool_limits(limits=1):  # the workers' BLAS threads (default_client): same rounding
        here = operation.to_json(run_here(operation, jobs)).model_dump(mode="json")
    served = default_client.post(f"/{operation.name}", json=body).json()
    for answer in (here, served):  # timings differ
        for item in [answer, *answer.get("variants", [])]:
            item.get("analysis", item).pop("meta", None)
    assert here == served


def test_progress_ticks_once_per_variant() -> None:
    body = json.loads((EXAMPLES / "compare-relu.json").read_text())
    jobs = COMPARE.to_jobs(COMPARE.request.model_validate(body), Settings())
    ticks: list[None] = []
    run_here(COMPARE, jobs, lambda: ticks.append(None))
    assert len(ticks) == COMPARE.total(jobs) == len(body["variants"])
