"""What the request and response models of every operation share: the model bases, the name
shorthand, the network forms, their size limits and the variant patch.

:mod:`initscope.schemas` (/analyze, /compare, /sweep) and :mod:`initscope.train_schemas`
(/train, /search) build on this; the limits themselves are :mod:`initscope.limits`.

Two things here exist for the generated clients (openapi-python-client, openapi-typescript)
as much as for the server:

- an option may be given by name (``"relu"`` for ``{"name": "relu"}``); the schema says so with
  ``anyOf: [the discriminated union, {enum: the names}]``, listing the names whose parameters
  all have defaults (``"constant"`` needs a ``value``, so it is not one);
- a field whose default is an object and whose type is a union states that default in its
  description instead of a ``default`` keyword, which generators cannot turn into a value of a
  union (openapi-python-client drops the whole operation). The server's default is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal, Self, cast, get_args, get_type_hints

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import CoreSchema, PydanticKnownError, core_schema

from initscope.config import Settings
from initscope.engine.activations import Activation
from initscope.engine.initializers import BiasInit, BiasZeros, WeightInit
from initscope.errors import FieldError
from initscope.jobs import BatchNorm, DropoutRate, InputDistribution, LayerSpec
from initscope.limits import MAX_NAME_LENGTH, MAX_SEED, Loc, at_most

Count = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
VariantName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


def shorthand_names(union: Any, key: str) -> tuple[str, ...]:
    """The ``key`` tags of a discriminated union's members that validate on their own."""
    adapter: TypeAdapter[Any] = TypeAdapter(union)
    members = get_args(get_args(union)[0])  # Annotated[A | B, Field(...)] -> (A, B)
    names = []
    for member in members:
        for name in get_args(get_type_hints(member)[key]):
            try:
                adapter.validate_python({key: name})
            except ValidationError:
                continue  # a required parameter: the name alone is not enough
            names.append(name)
    return tuple(names)


def _shorthand(union: Any, key: str) -> BeforeValidator:
    """Accept ``"name"`` as shorthand for ``{key: "name"}``, and describe it in the schema."""

    def expand(value: Any) -> Any:
        return {key: value} if isinstance(value, str) else value

    text = f'A {key} alone stands for {{"{key}": "<{key}>"}}, every parameter at its default.'
    names = cast(Any, Annotated)[
        cast(Any, Literal)[shorthand_names(union, key)], Field(description=text)
    ]
    return BeforeValidator(expand, json_schema_input_type=union | names)


ActivationIn = Annotated[Activation, _shorthand(Activation, "name")]
WeightInitIn = Annotated[WeightInit, _shorthand(WeightInit, "scheme")]
BiasInitIn = Annotated[BiasInit, _shorthand(BiasInit, "scheme")]
DistributionIn = Annotated[InputDistribution, _shorthand(InputDistribution, "name")]


def _describe_object_defaults(schema: JsonDict) -> None:
    """Move a union field's object default into its description (see the module docstring)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return
    for prop in properties.values():
        if not isinstance(prop, dict) or not isinstance(prop.get("default"), dict):
            continue
        if "oneOf" in prop or "anyOf" in prop:
            default = json.dumps(prop.pop("default"))
            description = prop.get("description")
            text = f"Default: `{default}`."
            prop["description"] = f"{description} {text}" if description else text


def _an_integer(value: Any) -> Any:
    """A JSON number, not ``true`` nor ``"1"``; ``2.0`` stays an integer (as in JSON Schema)."""
    if isinstance(value, bool | str | bytes):
        raise PydanticKnownError("int_type")
    return value


def _numbers_only(node: Any, handler: GetCoreSchemaHandler, seen: set[int]) -> None:
    """Make every ``float`` schema under ``node`` strict (a number: an int or a float, not a
    bool nor a string; checked in pydantic-core, so a megabyte of inline data costs no Python
    call per value) and put :func:`_an_integer` before every ``int`` schema (strict would
    refuse ``2.0``), in place: in the model's own fields, its unions, lists and the option
    dataclasses it holds, followed through definition references. The JSON Schema is
    unchanged (a before-validator shows its inner schema)."""
    if isinstance(node, list):
        for item in node:
            _numbers_only(item, handler, seen)
        return
    if not isinstance(node, dict) or id(node) in seen:
        return
    seen.add(id(node))
    kind = node.get("type")
    if kind == "definition-ref":
        _numbers_only(handler.resolve_ref_schema(cast(CoreSchema, node)), handler, seen)
    elif kind == "float":
        node["strict"] = True
    elif kind == "int":
        inner = dict(node)
        node.clear()
        node.update(core_schema.no_info_before_validator_function(_an_integer, inner))
    elif kind != "function-before" or node["function"]["function"] is not _an_integer:
        for value in node.values():
            _numbers_only(value, handler, seen)


class Strict(BaseModel):
    """A request model: unknown fields are refused, so a typo like ``sigma_W`` is an error, and
    where the schema says number or integer only a JSON number is: pydantic's lax mode would
    read ``true`` as 1 and ``"0.5"`` as 0.5 (schemathesis ST201). Strict mode would also refuse
    ``2.0`` for an integer, which JSON Schema calls an integer, so integers get a
    before-validator instead (:func:`_numbers_only`)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra=_describe_object_defaults
    )

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[BaseModel], handler: GetCoreSchemaHandler, /
    ) -> CoreSchema:
        schema = handler(source)
        _numbers_only(schema, handler, set())
        return schema


class Out(BaseModel):
    """A response model, built from the frozen results' attributes."""

    model_config = ConfigDict(from_attributes=True, frozen=True)


_BATCH_NORM = (
    "Batch normalisation (Ioffe & Szegedy 2015): per unit (x - mean) / sqrt(var + eps) * "
    "gamma + beta, before the activation (default) or after it; {} for the defaults, null "
    "(default) for none. /analyze and /compare use the batch's own statistics (training "
    "mode); /train learns gamma and beta and evaluates with running statistics (PyTorch's, "
    "momentum 0.1)."
)
_DROPOUT = (
    "Inverted dropout of the layer's output (Srivastava et al. 2014): each value kept with "
    "probability 1 - rate and scaled by 1 / (1 - rate); the mask is drawn from the layer's own "
    "seeded stream. 0 (default): none."
)


class Layer(Strict):
    units: Annotated[Count, Field(description="Width of the layer (fan_out).")]
    activation: ActivationIn
    init: WeightInitIn
    bias: BiasInitIn = BiasZeros()
    batch_norm: BatchNorm | None = Field(default=None, description=_BATCH_NORM)
    dropout: DropoutRate = Field(default=0.0, description=_DROPOUT)


class LayeredNetwork(Strict):
    """A network given layer by layer."""

    input_dim: Count
    layers: Annotated[list[Layer], Field(min_length=1)]

    def expand(self) -> tuple[Layer, ...]:
        return tuple(self.layers)

    def limits(self, settings: Settings, where: Loc) -> list[FieldError]:
        """The configured size limits, checked before the network is expanded."""
        errors = at_most(
            (*where, "layers"), len(self.layers), settings.max_layers, "the number of layers"
        )
        for i, layer in enumerate(self.layers):
            errors += at_most(
                (*where, "layers", i, "units"), layer.units, settings.max_units, "units"
            )
        return errors + at_most(
            (*where, "input_dim"), self.input_dim, settings.max_units, "input_dim"
        )

    def layer_specs(self) -> tuple[LayerSpec, ...]:
        return _freeze(self.expand())


class UniformNetwork(Strict):
    """Shorthand: ``depth`` identical layers of ``width`` units."""

    input_dim: Count
    depth: Count
    width: Count
    activation: ActivationIn
    init: WeightInitIn
    bias: BiasInitIn = BiasZeros()
    batch_norm: BatchNorm | None = Field(default=None, description=_BATCH_NORM)
    dropout: DropoutRate = Field(default=0.0, description=_DROPOUT)

    def expand(self) -> tuple[Layer, ...]:
        layer = Layer(
            units=self.width,
            activation=self.activation,
            init=self.init,
            bias=self.bias,
            batch_norm=self.batch_norm,
            dropout=self.dropout,
        )
        return (layer,) * self.depth

    def limits(self, settings: Settings, where: Loc) -> list[FieldError]:
        """The configured size limits, checked before the network is expanded (the depth may
        be 10**10)."""
        errors = at_most((*where, "depth"), self.depth, settings.max_layers, "depth")
        errors += at_most((*where, "width"), self.width, settings.max_units, "width")
        return errors + at_most(
            (*where, "input_dim"), self.input_dim, settings.max_units, "input_dim"
        )

    def layer_specs(self) -> tuple[LayerSpec, ...]:
        return _freeze(self.expand())


def _freeze(layers: tuple[Layer, ...]) -> tuple[LayerSpec, ...]:
    return tuple(
        LayerSpec(x.units, x.activation, x.init, x.bias, x.batch_norm, x.dropout) for x in layers
    )


def _network_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "layers" if "layers" in value else "shorthand"
    return "layers" if isinstance(value, LayeredNetwork) else "shorthand"


Network = Annotated[
    Annotated[LayeredNetwork, Tag("layers")] | Annotated[UniformNetwork, Tag("shorthand")],
    Discriminator(_network_kind),
]
AnyNetwork = LayeredNetwork | UniformNetwork


class NetworkPatch(Strict):
    """The variant patch: a variant of a comparison is a whole ``network``, or fields set over
    every layer of the base network (``LAYER_FIELDS``; null keeps the base's)."""

    LAYER_FIELDS: ClassVar[tuple[str, ...]] = ("activation", "init", "bias")

    name: VariantName
    network: Network | None = None
    activation: ActivationIn | None = None
    init: WeightInitIn | None = None
    bias: BiasInitIn | None = None

    @model_validator(mode="after")
    def _network_or_patches(self) -> Self:
        if self.network is not None and self.patches():
            raise ValueError(
                f"give either a whole network or patches ({', '.join(self.LAYER_FIELDS)}), not both"
            )
        return self

    def patches(self) -> dict[str, Any]:
        return {
            key: getattr(self, key) for key in self.LAYER_FIELDS if getattr(self, key) is not None
        }

    def apply(self, base: AnyNetwork) -> AnyNetwork:
        """The base with this variant's patches applied to every layer."""
        patches = self.patches()
        if isinstance(base, UniformNetwork):
            return base.model_copy(update=patches)
        layers = [layer.model_copy(update=patches) for layer in base.layers]
        return base.model_copy(update={"layers": layers})


def variant_networks(
    variants: Sequence[NetworkPatch], base: AnyNetwork | None, base_at: Loc
) -> list[tuple[str, AnyNetwork, Loc]]:
    """(name, network, where in the body the network came from) for every variant: its own
    network, or the base (at ``base_at``) patched. A validator has made sure one exists."""
    out: list[tuple[str, AnyNetwork, Loc]] = []
    for i, variant in enumerate(variants):
        if variant.network is not None:
            out.append((variant.name, variant.network, ("variants", i, "network")))
        else:
            assert base is not None  # checked by the request's validator
            out.append((variant.name, variant.apply(base), base_at))
    return out
