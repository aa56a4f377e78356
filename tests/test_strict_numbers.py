"""Where a request model declares a number, only a JSON number is one: ``true``/``false`` and
numeric strings are refused with a 422 naming the field (schemathesis ST201 found ``"dropout":
false`` accepted as 0); ``2`` stays a valid float and ``2.0`` a valid integer, as in JSON
Schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.http.api import EXAMPLE_SUMMARIES, create_app
from initscope.http.problems import clean_loc
from initscope.operations import OPERATIONS
from initscope.schema_base import _an_integer
from pydantic import BaseModel, ValidationError

Path = tuple[str | int, ...]


def example(name: str) -> Any:
    folder = resources.files("initscope") / "examples"
    return json.loads((folder / f"{name}.json").read_text())


def numbers(value: Any, path: Path = ()) -> Iterator[Path]:
    """The path of every number in a JSON value (the first two items of each list)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:2]):
            yield from numbers(item, (*path, i))


def replaced(value: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[head] = replaced(value[head], tuple(rest), new)  # type: ignore[index]
    return copy


def get(value: Any, path: Path) -> Any:
    for part in path:
        value = value[part]
    return value


CASES = [
    (name, path)
    for name in sorted(EXAMPLE_SUMMARIES)
    for path in numbers(example(name))
    if path[:2] != ("task", "data")  # inline task data: a matrix, checked by the cases below
]


def names(loc: tuple[str | int, ...], path: Path) -> bool:
    """The error's location is the field's path, give or take a union's tags (``shorthand``,
    ``normal``, ... which ``clean_loc`` drops where it knows them)."""
    parts = iter(clean_loc(loc))
    return loc[-1] == path[-1] and all(part in parts for part in path)


def model(name: str) -> type[BaseModel]:
    return OPERATIONS[name.split("-", 1)[0]].request


@pytest.mark.parametrize("name", sorted(EXAMPLE_SUMMARIES))
def test_the_examples_still_validate(name: str) -> None:
    model(name).model_validate_json(json.dumps(example(name)))


@pytest.mark.parametrize(
    ("name", "path"), CASES, ids=[f"{n}:{'.'.join(map(str, p))}" for n, p in CASES]
)
@pytest.mark.parametrize("wrong", [True, False, "1"], ids=["true", "false", "string"])
def test_a_boolean_or_string_where_the_example_has_a_number_is_refused_there(
    name: str, path: Path, wrong: Any
) -> None:
    body = replaced(example(name), path, wrong)
    with pytest.raises(ValidationError) as raised:
        model(name).model_validate_json(json.dumps(body))
    at_path = [e["type"] for e in raised.value.errors() if names(e["loc"], path)]
    assert at_path, raised.value.errors()
    assert set(at_path) in ({"int_type"}, {"float_type"})


@pytest.mark.parametrize(("name", "path"), CASES[:: max(1, len(CASES) // 12)])
def test_an_integral_number_stays_valid_in_either_spelling(name: str, path: Path) -> None:
    """``1`` for a float and ``1.0`` for an integer are the same JSON number."""
    original = get(example(name), path)
    other = float(original) if isinstance(original, int) else original
    if isinstance(original, float) and original.is_integer():
        other = int(original)
    model(name).model_validate_json(json.dumps(replaced(example(name), path, other)))


def _unchecked_numbers(node: Any, seen: set[int]) -> Iterator[str]:
    """``float`` schemas that are not strict, ``int`` schemas not under ``_an_integer``."""
    if isinstance(node, list):
        for item in node:
            yield from _unchecked_numbers(item, seen)
        return
    if not isinstance(node, dict) or id(node) in seen:
        return
    seen.add(id(node))
    if node.get("type") == "int" or (node.get("type") == "float" and not node.get("strict")):
        yield str(node)
    if node.get("type") == "function-before" and node["function"]["function"] is _an_integer:
        seen.add(id(node["schema"]))  # the checked integer
    for value in node.values():
        yield from _unchecked_numbers(value, seen)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_every_number_of_every_request_model_is_checked(operation: str) -> None:
    """Not only those the examples use: every float and int in the model's core schema, its
    nested models and option dataclasses, sits under the check."""
    schema = OPERATIONS[operation].request.__pydantic_core_schema__
    assert list(_unchecked_numbers(schema, set())) == []


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(Settings(workers=1, blas_threads=1)))  # no lifespan: no pool


NETWORK = {"input_dim": 4, "depth": 2, "width": 4, "activation": "relu", "init": "he_normal"}


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/analyze", {"network": {**NETWORK, "dropout": False}}, ["network", "dropout"]),
        ("/analyze", {"network": NETWORK, "seed": True}, ["seed"]),
        (
            "/analyze",
            {"network": {**NETWORK, "init": {"scheme": "normal", "std": True}}},
            ["network", "init", "std"],
        ),
        (
            "/analyze",
            {"network": NETWORK, "input": {"data": [[1.0, 2.0, True, 4.0]]}},
            ["input", "data", 0, 2],
        ),
        (
            "/analyze",
            {"network": NETWORK, "thresholds": {"dead_unit_fraction": False}},
            ["thresholds", "dead_unit_fraction"],
        ),
        (
            "/analyze",
            {"network": {**NETWORK, "batch_norm": {"eps": True}}},
            ["network", "batch_norm", "eps"],
        ),
        (
            "/compare",
            {"base": NETWORK, "variants": [{"name": "a"}, {"name": "b", "dropout": True}]},
            ["variants", 1, "dropout"],
        ),
        (
            "/sweep",
            {
                "activation": "tanh",
                "x": {"param": "sigma_w2", "values": [1.0, True]},
                "y": {"param": "sigma_b2", "values": [0.0, 0.1]},
            },
            ["x", "values", 1],
        ),
        (
            "/train",
            {"network": {**NETWORK, "input_dim": 2}, "task": {"name": "spirals"}, "epochs": True},
            ["epochs"],
        ),
        (
            "/search",
            {
                "network": {**NETWORK, "input_dim": 2},
                "task": {"name": "spirals"},
                "weight_decay": False,
                "trials": 2,
            },
            ["weight_decay"],
        ),
    ],
)
def test_a_boolean_is_a_422_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], loc: list[str | int]
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert [error["loc"] for error in problem["errors"]] == [["body", *loc]]
    assert ".".join(map(str, ["body", *loc])) in problem["detail"]
