from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from scripts.export_openapi import TARGET, render


def test_committed_openapi_document_is_current() -> None:
    assert TARGET.read_text() == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_openapi_documents_the_request_forms() -> None:
    schema = json.loads(render())
    assert "/analyze" in schema["paths"]
    components = schema["components"]["schemas"]
    network = components["AnalyzeRequest"]["properties"]["network"]
    refs = {option["$ref"].rsplit("/", 1)[-1] for option in network["oneOf"]}
    assert refs == {"LayeredNetwork", "UniformNetwork"}


def _properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for model, component in schema["components"]["schemas"].items():
        for name, prop in component.get("properties", {}).items():
            yield f"{model}.{name}", prop


def test_no_union_carries_an_object_default() -> None:
    """openapi-python-client cannot make a default value of a union and drops every operation
    that uses one; the description states such a default instead."""
    schema = json.loads(render())
    for where, prop in _properties(schema):
        if "oneOf" in prop or "anyOf" in prop:
            assert not isinstance(prop.get("default"), dict), where
    gradient = schema["components"]["schemas"]["AnalyzeRequest"]["properties"]["gradient"]
    assert 'Default: `{"source": "random_normal"}`.' in gradient["description"]


def test_the_name_shorthand_is_in_the_schema() -> None:
    schema = json.loads(render())
    network = schema["components"]["schemas"]["UniformNetwork"]["properties"]
    names = {
        field: next(option for option in network[field]["anyOf"] if option.get("type") == "string")
        for field in ("activation", "init")
    }
    assert "sigmoid" in names["activation"]["enum"]
    assert {"he_normal", "kaiming_normal"} <= set(names["init"]["enum"])
    assert "constant" not in names["init"]["enum"]  # needs its value
