"""Schemathesis against the app in-process: every operation, every check, zero failures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from initscope.config import Settings
from initscope.http.api import create_app
from schemathesis.python.asgi import shutdown_lifespans

# Small limits: a generated request is refused cheaply or runs in milliseconds.
SETTINGS = Settings(
    workers=2,
    blas_threads=1,
    max_layers=4,
    max_units=32,
    max_samples=64,
    max_bins=20,
    max_inline_rows=16,
    max_inline_values=256,
    compute_budget=2_000_000,
    memory_budget_bytes=20_000_000,
    max_body_bytes=65_536,
)
app = create_app(SETTINGS)
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20241130,
        # Past the service's own deadline (504), so that a slow answer on a busy machine is
        # judged by what the service says rather than by the client giving up first.
        "request-timeout": SETTINGS.request_timeout_s + 10,
        "generation": {"max-examples": 100, "database": "none"},
        "checks": {
            "enabled": True,
            # A schema-valid request may still be over this deployment's limits (413, 422):
            # `refused_only_by_limits` below holds every such 422 to that.
            "positive_data_acceptance": {"expected-statuses": ["2xx", "413", "422"]},
        },
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)

# What may refuse a request the schema admits: a configured limit ("must be at most <limit>"),
# the compute or memory budget, or a cross-field rule (a model validator's value_error).
LIMIT_TYPES = frozenset({"compute_budget", "memory_budget", "value_error"})


def refused_only_by_limits(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code != 422:
        return None
    for error in response.json()["errors"]:
        limit = error["type"] == "less_than_equal" and "must be at most" in error["msg"]
        if not (limit or error["type"] in LIMIT_TYPES):
            raise AssertionError(f"a schema-valid request failed a schema rule: {error}")
    return True


def _obey_cross_field_rules(body: dict[str, Any]) -> None:
    """Rules between fields that JSON Schema cannot state, applied to a schema-valid body so
    that it reaches the simulation instead of a 422 most of the time."""
    histogram = body.get("histogram")
    if isinstance(histogram, dict) and isinstance(histogram.get("range"), list):
        low, high = sorted(histogram["range"])
        histogram["range"] = [low, high] if low < high else None
    if isinstance(body.get("input"), dict):
        body["input"].pop("data", None)  # its rows must match input_dim: left to the properties
    variants = body.get("variants")
    if isinstance(variants, list):
        for i, variant in enumerate(variants):
            variant["name"] = f"v{i}"
    for axis, other in (("x", "y"), ("y", "x")):
        if isinstance(body.get(axis), dict) and "values" not in body[axis]:
            continue  # a /search axis (low, high): left to its own 422s
        if isinstance(body.get(axis), dict) and isinstance(body.get(other), dict):
            param, values = body[axis]["param"], body[axis]["values"]
            if param in ("depth", "width"):
                body[axis]["values"] = [max(1, round(v)) for v in values]
            elif param != "sigma_b2":
                body[axis]["values"] = [v or 1.0 for v in values]
    x, y = body.get("x"), body.get("y")
    if (
        isinstance(x, dict)
        and isinstance(y, dict)
        and "values" in x
        and {x["param"], y["param"]} <= {"sigma_w2", "std"}
    ):
        body["y"] = {"param": "sigma_b2", "values": [0.0, 0.1]}


@schema.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> Any:
    if case.meta and case.meta.generation.mode.is_positive and isinstance(case.body, dict):
        _obey_cross_field_rules(case.body)
    return case


@pytest.fixture(scope="module", autouse=True)
def _lifespan() -> Iterator[None]:
    """Schemathesis runs the app's lifespan (the pool) itself, once, on the event loop its ASGI
    client uses; a second one under TestClient would own a pool on another loop ("Future
    attached to a different loop"). Stopped here rather than at exit."""
    yield
    shutdown_lifespans()


@schema.parametrize()
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(additional_checks=[refused_only_by_limits])
