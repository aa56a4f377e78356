"""Properties of the request models over generated networks, rather than chosen examples.

Activations, weight and bias initialisers are drawn from the option models themselves: every
tag (aliases included) and any parameter values within the bounds their schema states.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from initscope.config import Settings
from initscope.engine.activations import ACTIVATIONS
from initscope.engine.initializers import (
    BIAS_INITS,
    WEIGHT_INITS,
    TruncatedNormal,
    truncated_normal_moments,
)
from initscope.errors import InvalidRequest
from initscope.http.api import create_app
from initscope.schemas import AnalyzeRequest
from pydantic import TypeAdapter, ValidationError

TINY = Settings(
    workers=2,
    blas_threads=1,
    max_layers=6,
    max_units=24,
    max_samples=48,
    max_bins=16,
    max_inline_rows=8,
    max_inline_values=96,
    compute_budget=500_000,
    memory_budget_bytes=20_000_000,
)
# A very large but finite magnitude, so that unbounded parameters still reach the extremes.
HUGE = 1e6


def _number(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    low = prop.get("minimum", prop.get("exclusiveMinimum", -HUGE))
    high = prop.get("maximum", prop.get("exclusiveMaximum", HUGE))
    if prop["type"] == "integer":
        return st.integers(
            int(low) + ("exclusiveMinimum" in prop), int(high) - ("exclusiveMaximum" in prop)
        )
    return st.floats(
        max(low, -HUGE),
        min(high, HUGE),
        exclude_min="exclusiveMinimum" in prop,
        exclude_max="exclusiveMaximum" in prop,
        allow_nan=False,
    )


def _option(cls: type, tag: str) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object for one option model: a tag value, its required parameters, and any
    subset of the others."""
    schema = TypeAdapter(cls).json_schema()
    props: dict[str, Any] = schema["properties"]
    tags = props[tag].get("enum", [props[tag].get("const")])
    params: dict[str, st.SearchStrategy[Any]] = {}
    for name, prop in props.items():
        if name == tag:
            continue
        if "enum" in prop:
            params[name] = st.sampled_from(prop["enum"])
        elif prop.get("type") in ("number", "integer"):
            params[name] = _number(prop)
        elif prop.get("type") == "boolean":
            params[name] = st.booleans()
    required = {name: params.pop(name) for name in schema.get("required", []) if name in params}
    return st.fixed_dictionaries({tag: st.sampled_from(tags), **required}, optional=params)


def _any(classes: tuple[type, ...], tag: str) -> st.SearchStrategy[Any]:
    objects = st.one_of(*(_option(cls, tag) for cls in classes))
    names = st.sampled_from([name for cls in classes for name in _tags(cls, tag)])
    return st.one_of(names, objects)  # "relu" is shorthand for {"name": "relu"}


def _tags(cls: type, tag: str) -> list[str]:
    prop = TypeAdapter(cls).json_schema()["properties"][tag]
    names: list[str] = prop.get("enum", [prop.get("const")])
    return names


activations = _any(ACTIVATIONS, "name")
weight_inits = _any(WEIGHT_INITS, "scheme")
bias_inits = _any(BIAS_INITS, "scheme")


def _valid(body: dict[str, Any]) -> AnalyzeRequest | None:
    try:
        return AnalyzeRequest.model_validate(body)
    except ValidationError:
        return None  # some options have cross-field rules (e.g. truncated_normal's a < b)


@settings(max_examples=150, deadline=None)
@given(
    input_dim=st.integers(1, 16),
    depth=st.integers(1, 6),
    width=st.integers(1, 16),
    activation=activations,
    init=weight_inits,
    bias=bias_inits,
    seed=st.integers(0, 2**53 - 1),
)
def test_shorthand_and_layer_list_make_the_same_job(
    input_dim: int, depth: int, width: int, activation: Any, init: Any, bias: Any, seed: int
) -> None:
    layer = {"activation": activation, "init": init, "bias": bias}
    shorthand = _valid(
        {"network": {"input_dim": input_dim, "depth": depth, "width": width, **layer}, "seed": seed}
    )
    listed = _valid(
        {
            "network": {"input_dim": input_dim, "layers": [{"units": width, **layer}] * depth},
            "seed": seed,
        }
    )
    assert (shorthand is None) == (listed is None)
    if shorthand is None or listed is None:
        return
    assert shorthand.job(Settings()) == listed.job(Settings())


def _mostly(limit: int) -> st.SearchStrategy[int]:
    """Within TINY's ``limit`` mostly; sometimes absurd (a depth of 10**12 must not expand)."""
    return st.one_of(*[st.integers(1, limit)] * 6, st.integers(1, 10**12))


sizes = _mostly(TINY.max_units)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies that mostly validate: the sizes run from tiny to absurd, the options anywhere."""
    input_dim = draw(st.integers(1, 12))
    if draw(st.booleans()):
        network: dict[str, Any] = {
            "input_dim": input_dim,
            "depth": draw(_mostly(TINY.max_layers)),
            "width": draw(sizes),
            "activation": draw(activations),
            "init": draw(weight_inits),
        }
    else:
        layer = st.fixed_dictionaries(
            {"units": sizes, "activation": activations, "init": weight_inits},
            optional={"bias": bias_inits},
        )
        network = {
            "input_dim": input_dim,
            "layers": draw(st.lists(layer, min_size=1, max_size=TINY.max_layers + 1)),
        }
    body: dict[str, Any] = {"network": network, "seed": draw(st.integers(0, 2**53 - 1))}
    if draw(st.booleans()):
        value = st.floats(-1e6, 1e6, allow_nan=False)
        rows = draw(st.integers(1, 9))
        body["input"] = {"data": [[draw(value) for _ in range(input_dim)] for _ in range(rows)]}
    else:
        body["input"] = {"samples": draw(_mostly(TINY.max_samples))}
    body["dtype"] = draw(st.sampled_from(["float32", "float64"]))
    body["theory"] = draw(st.booleans())
    body["histogram"] = {"bins": draw(_mostly(TINY.max_bins))}
    return body


@pytest.fixture(scope="module")
def tiny() -> Iterator[TestClient]:
    with TestClient(create_app(TINY)) as client:
        yield client


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=requests())
def test_a_valid_request_is_answered_or_refused_never_a_500(
    tiny: TestClient, body: dict[str, Any]
) -> None:
    request = _valid(body)
    response = tiny.post("/analyze", json=body)
    event(f"status {response.status_code}")
    if request is None:
        assert response.status_code == 422, response.text
        return
    try:
        request.job(TINY)
    except InvalidRequest:
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        return
    assert response.status_code == 200, response.text
    result = response.json()
    assert len(result["layers"]) == len(request.network.expand())
    for layer in result["layers"]:
        std = layer["activations"]["std"]
        assert std is None or (math.isfinite(std) and std >= 0)


@settings(max_examples=150, deadline=None)
@given(body=requests())
def test_requests_round_trip_through_json(body: dict[str, Any]) -> None:
    request = _valid(body)
    if request is None:
        return
    # Only what was set: a full dump of an inline-data request states the default samples=1000
    # beside the data, which the model then refuses as a contradiction.
    again = AnalyzeRequest.model_validate_json(request.model_dump_json(exclude_unset=True))
    assert again == request


@given(std=st.floats(5e-324, 1e-300), half_width=st.floats(1e-3, 1e6))
def test_a_truncation_many_stds_away_is_no_truncation(std: float, half_width: float) -> None:
    """Found by schemathesis: std = 5e-324 made the bounds infinite and the variance NaN."""
    init = TruncatedNormal(std=std, a=-half_width, b=half_width)
    assert truncated_normal_moments(-half_width / std, half_width / std) == (0.0, 1.0)
    assert init.variance(4, 4) == std**2


JSON_TYPES = ("application/json", "application/json; charset=utf-8", "application/problem+json")
OTHER_TYPES = (
    None,
    "",
    "application/octet-stream",
    "multipart/form-data; boundary=initscope",
    "text/plain",
    "text/plain; charset=latin-1",
    "application/x-www-form-urlencoded",
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(["/analyze", "/compare", "/sweep", "/train", "/search"]),
    content_type=st.sampled_from(JSON_TYPES + OTHER_TYPES),
    content=st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
)
def test_any_bytes_with_any_content_type_get_a_problem_never_a_500(
    tiny: TestClient, path: str, content_type: str | None, content: bytes
) -> None:
    """JSON is read (400 when it is not UTF-8, 422 when it is not a valid request); any other
    declared type, or a body with none, is 415; no body and no type is the 422 naming it."""
    headers = {} if content_type is None else {"content-type": content_type}
    response = tiny.post(path, content=content, headers=headers)
    event(f"{content_type}: {response.status_code}")
    assert response.headers["content-type"] == "application/problem+json", response.text
    if content_type in JSON_TYPES:
        expected = {400, 422}
    elif content_type is None and not content:
        expected = {422}
    else:
        expected = {415}
    assert response.status_code in expected, response.text
    assert response.json()["status"] == response.status_code
