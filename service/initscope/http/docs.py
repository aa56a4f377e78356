"""The OpenAPI document as served at /openapi.json and shown by /docs and /redoc."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from initscope.config import Settings
from initscope.http.problems import ProblemDetails


def _require_tags(schemas: dict[str, Any]) -> None:
    """A discriminated union needs its tag: mark it required in every member.

    The init and activation models give their tag a default (``HeNormal()`` is handy in code),
    so pydantic leaves it out of ``required``; a client or a fuzzer reading the schema would
    then think ``{"std": 1}`` a valid init, and the server refuses it.
    """

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if (discriminator := node.get("discriminator")) and "mapping" in discriminator:
                tag = discriminator["propertyName"]
                for ref in set(discriminator["mapping"].values()):
                    member = schemas[ref.rsplit("/", 1)[-1]]
                    if tag not in member.get("required", []):
                        member["required"] = [tag, *member.get("required", [])]
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schemas)


def _state_limits(schemas: dict[str, Any], settings: Settings) -> None:
    """Write this deployment's size limits into the schema, where a client (and a fuzzer)
    sees them; what no keyword can say (the budgets, sweep axes) stays a 422."""
    for model, field, keyword, limit in (
        ("UniformNetwork", "input_dim", "maximum", settings.max_units),
        ("UniformNetwork", "depth", "maximum", settings.max_layers),
        ("UniformNetwork", "width", "maximum", settings.max_units),
        ("LayeredNetwork", "input_dim", "maximum", settings.max_units),
        ("LayeredNetwork", "layers", "maxItems", settings.max_layers),
        ("Layer", "units", "maximum", settings.max_units),
        ("InputSpec", "samples", "maximum", settings.max_samples),
        ("HistogramSpec", "bins", "maximum", settings.max_bins),
        ("SweepRequest", "depth", "maximum", settings.max_layers),
        ("SweepRequest", "width", "maximum", settings.max_units),
        ("SweepRequest", "samples", "maximum", settings.max_samples),
    ):
        schemas[model]["properties"][field][keyword] = limit
    rows = schemas["InputSpec"]["properties"]["data"]["anyOf"][0]
    rows["maxItems"] = settings.max_inline_rows


def _optional_without_keys(paths: dict[str, Any], settings: Settings) -> None:
    """Without API keys the computing operations need none: each lists the anonymous
    requirement ``{}`` beside the bearer scheme (OpenAPI 3.1, Security Requirement Object), so
    the document is true of the deployment that serves it; Swagger UI's Authorize button
    works either way."""
    if settings.bearer_keys:
        return
    for item in paths.values():
        for operation in item.values():
            if isinstance(operation, dict) and operation.get("security"):
                operation["security"] = [*operation["security"], {}]


def install(app: FastAPI, settings: Settings) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            # Said outright: by default no credentials; the computing operations each say what
            # they need (initscope.http.auth).
            document["security"] = []
            _optional_without_keys(document["paths"], settings)
            problem = ProblemDetails.model_json_schema(
                ref_template="#/components/schemas/{model}", mode="serialization"
            )
            components = document.setdefault("components", {})
            schemas = {**components.get("schemas", {}), **problem.pop("$defs", {})}
            schemas["ProblemDetails"] = problem
            _require_tags(schemas)
            _state_limits(schemas, settings)
            components["schemas"] = dict(sorted(schemas.items()))
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
