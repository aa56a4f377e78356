"""The contract as a new user meets it: a Python client generated from the committed
openapi/openapi.json by openapi-python-client (pinned in the dev extra) has every operation,
its models round-trip every packaged example and a real response of each operation, and it
calls all nine operations on a real server. The examples also validate against the document's
JSON Schema (draft 2020-12, what OpenAPI 3.1 uses). The client is generated into a temporary
folder, never committed; Redocly lints the same document (``make openapi-lint``)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.http.api import EXAMPLE_SUMMARIES
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.client_support import PNG, live_server

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi" / "openapi.json"
EXAMPLES = ROOT / "service" / "initscope" / "examples"
PACKAGE = "initscope_generated"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
KINDS = ("analyze", "compare", "sweep", "train", "search")

# What each POST sends: small, in the name shorthand a user would write.
NETWORK = {"input_dim": 2, "depth": 2, "width": 16, "activation": "relu", "init": "he_normal"}
TRAINING = {"network": NETWORK, "task": {"name": "spirals", "samples": 120}, "epochs": 2}
BODIES: dict[str, dict[str, Any]] = {
    # The README's first request: five sigmoid layers, weights with std 1.
    "analyze": {
        "network": {
            "input_dim": 100,
            "depth": 5,
            "width": 100,
            "activation": "sigmoid",
            "init": {"scheme": "normal", "std": 1.0},
        },
        "input": {"samples": 1000},
        "histogram": {"bins": 10},
        "seed": 0,
    },
    "compare": {
        "base": NETWORK,
        "variants": [{"name": "he"}, {"name": "xavier", "init": "xavier_normal"}],
        "input": {"samples": 200},
    },
    "sweep": {
        "activation": "tanh",
        "depth": 3,
        "width": 16,
        "samples": 64,
        "x": {"param": "sigma_w2", "values": [0.5, 1.0, 2.0]},
        "y": {"param": "sigma_b2", "values": [0.0, 0.1]},
    },
    "train": TRAINING,
    "search": {**TRAINING, "trials": 2},
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return loaded


def _example(name: str) -> Any:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def _snake(operation_id: str) -> str:
    return operation_id.replace("-", "_").lower()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, imported from a temporary folder."""
    folder = tmp_path_factory.mktemp("generated")
    config = folder / "config.json"
    config.write_text(json.dumps({"post_hooks": [], "package_name_override": PACKAGE}))
    run = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(DOCUMENT),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # The generator reports what it had to leave out (a dropped schema or operation) as a
    # warning and still exits 0.
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _operations(document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{operationId: (method, path)} of the document."""
    return {
        op["operationId"]: (method, path)
        for path, item in document["paths"].items()
        for method, op in item.items()
    }


def _operation(generated: ModuleType, document: dict[str, Any], path: str) -> Any:
    ((operation_id, tag),) = [
        (op["operationId"], op["tags"][0])
        for p, item in document["paths"].items()
        if p == path
        for op in item.values()
    ]
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{_snake(operation_id)}")


def test_every_operation_is_generated(generated: ModuleType, document: dict[str, Any]) -> None:
    operations = _operations(document)
    assert len(operations) == 9
    for path in {path for _, path in operations.values()}:
        module = _operation(generated, document, path)
        assert callable(module.sync_detailed), path


def _request_model(generated: ModuleType, kind: str) -> Any:
    return getattr(generated.models, f"{kind.capitalize()}Request")


def _validator(document: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:initscope:openapi", Resource.from_contents(document, DRAFT202012)
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:initscope:openapi#/components/schemas/{component}"}, registry=registry
    )


@pytest.mark.parametrize("name", sorted(EXAMPLE_SUMMARIES))
def test_each_example_is_valid_and_round_trips(
    name: str, generated: ModuleType, document: dict[str, Any]
) -> None:
    kind = name.split("-", 1)[0]
    value = _example(name)
    _validator(document, f"{kind.capitalize()}Request").validate(value)
    assert _request_model(generated, kind).from_dict(value).to_dict() == value


def test_the_schema_lists_only_the_names_that_stand_alone(document: dict[str, Any]) -> None:
    """``"he_normal"`` is an init; ``"constant"`` is not one without its ``value``."""
    network = {"input_dim": 4, "depth": 2, "width": 4, "activation": "relu"}
    validator = _validator(document, "UniformNetwork")
    assert validator.is_valid({**network, "init": "he_normal", "bias": "zeros"})
    assert validator.is_valid({**network, "init": {"scheme": "constant", "value": 0.5}})
    assert not validator.is_valid({**network, "init": "constant"})
    assert not validator.is_valid({**network, "init": "he_normal", "bias": "normal"})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with live_server() as url:
        yield url


@pytest.mark.parametrize("kind", KINDS)
def test_the_generated_client_posts_and_its_models_round_trip_the_answer(
    kind: str, generated: ModuleType, document: dict[str, Any], server: str
) -> None:
    operation = _operation(generated, document, f"/{kind}")
    body = _request_model(generated, kind).from_dict(BODIES[kind])
    assert body.to_dict() == BODIES[kind]
    with generated.Client(base_url=server, timeout=120.0) as client:
        response = operation.sync_detailed(client=client, body=body)
    assert response.status_code == 200, response.content
    answer = json.loads(response.content)
    model = getattr(generated.models, f"{kind.capitalize()}Response")
    assert isinstance(response.parsed, model)
    assert response.parsed.to_dict() == answer
    assert model.from_dict(answer).to_dict() == answer
    _validator(document, f"{kind.capitalize()}Response").validate(answer)


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/activations", "ActivationInfo"),
        ("/initializers", "InitializerInfo"),
        ("/livez", None),
        ("/readyz", None),
    ],
)
def test_the_generated_client_gets(
    path: str, model: str | None, generated: ModuleType, document: dict[str, Any], server: str
) -> None:
    operation = _operation(generated, document, path)
    with generated.Client(base_url=server, timeout=30.0) as client:
        response = operation.sync_detailed(client=client)
    assert response.status_code == 200, response.content
    answer = json.loads(response.content)
    if model is None:
        assert answer["status"] in {"alive", "ready"}
        return
    items = response.parsed
    assert [type(item).__name__ for item in items] == [model] * len(answer)
    assert [item.to_dict() for item in items] == answer


def test_a_figure_through_the_generated_clients_httpx_client(
    generated: ModuleType, server: str
) -> None:
    """The generated functions parse every 200 as JSON (openapi-python-client reads the first
    media type of a response); a figure is one request away on the same client."""
    body = generated.models.AnalyzeRequest.from_dict(BODIES["analyze"])
    with generated.Client(base_url=server, timeout=60.0) as client:
        answer = client.get_httpx_client().post(
            "/analyze", json=body.to_dict(), headers={"Accept": "image/png"}
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.content.startswith(PNG)


def test_gets_declare_the_413_they_can_answer(client: TestClient, settings: Settings) -> None:
    """Every operation, GETs included, refuses a body over the limit: the 4xx that the
    document declares for the GETs (Redocly's operation-4xx-response)."""
    answer = client.request("GET", "/activations", content=b"x" * (settings.max_body_bytes + 1))
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
