"""What GET /activations and GET /initializers list, read off the option dataclasses."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter

from initscope.engine.activations import ACTIVATIONS
from initscope.engine.initializers import BIAS_INITS, WEIGHT_INITS
from initscope.results import as_float
from initscope.schemas import ActivationInfo, InitializerInfo, Parameter

_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _parameters(cls: type, tag: str) -> tuple[list[str], list[Parameter]]:
    """The tag's accepted values, and every other field as a parameter."""
    schema: dict[str, Any] = TypeAdapter(cls).json_schema()
    props: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", ()))
    tag_schema = props[tag]
    names = list(tag_schema.get("enum", [tag_schema.get("const")]))
    params = [
        Parameter(
            name=name,
            type=prop.get("type", "string"),
            default=prop.get("default"),
            required=name in required,
            constraints={k: prop[k] for k in _BOUNDS if k in prop},
            choices=prop.get("enum"),
        )
        for name, prop in props.items()
        if name != tag
    ]
    return names, params


@cache
def activations() -> tuple[ActivationInfo, ...]:
    out = []
    for cls in ACTIVATIONS:
        names, params = _parameters(cls, "name")
        default = cls()
        low, high = default.natural_range
        out.append(
            ActivationInfo(
                name=names[0],
                formula=cls.formula,
                parameters=params,
                pytorch_gain=default.pytorch_gain,
                natural_range=(as_float(low), as_float(high)),
                saturating=cls.saturating,
            )
        )
    return tuple(out)


@cache
def initializers() -> tuple[InitializerInfo, ...]:
    out = []
    for kind, classes in (("weight", WEIGHT_INITS), ("bias", BIAS_INITS)):
        for cls in classes:
            names, params = _parameters(cls, "scheme")
            applicable = cls.iid_gaussian if hasattr(cls, "iid_gaussian") else kind == "bias"
            out.append(
                InitializerInfo(
                    scheme=names[0],
                    aliases=names[1:],
                    formula=cls.formula,
                    parameters=params,
                    theory_applicable=bool(applicable),
                    kind=kind,
                )
            )
    return tuple(out)
