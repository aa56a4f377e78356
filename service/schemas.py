"""The HTTP contract: request and response models, and the request -> job conversion.

Option types (activations, initialisers, input distributions, thresholds) are the frozen
dataclasses of the domain modules, validated here by pydantic; names may stand for objects
(``"relu"`` for ``{"name": "relu"}``). Limits that depend on settings are checked in
:func:`to_job`, which raises :class:`service.errors.InvalidRequest` naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from service.activations import ACTIVATIONS, Activation
from service.config import Settings
from service.errors import BudgetExceeded, FieldError, InvalidRequest
from service.initializers import BIAS_INITS, WEIGHT_INITS, BiasInit, BiasZeros, WeightInit
from service.jobs import (
    AnalysisJob,
    DType,
    GradientSource,
    InputDistribution,
    LayerSpec,
    NormalInput,
    RandomNormalGradient,
    Thresholds,
)
from service.results import Analysis

Finite = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]


def _named(key: str) -> BeforeValidator:
    """Accept ``"name"`` as shorthand for ``{key: "name"}``."""

    def expand(value: Any) -> Any:
        return {key: value} if isinstance(value, str) else value

    return BeforeValidator(expand)


ActivationIn = Annotated[Activation, _named("name")]
WeightInitIn = Annotated[WeightInit, _named("scheme")]
BiasInitIn = Annotated[BiasInit, _named("scheme")]
DistributionIn = Annotated[InputDistribution, _named("name")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layer(Strict):
    units: Annotated[Count, Field(description="Width of the layer (fan_out).")]
    activation: ActivationIn
    init: WeightInitIn
    bias: BiasInitIn = BiasZeros()


class LayeredNetwork(Strict):
    """A network given layer by layer."""

    input_dim: Count
    layers: Annotated[list[Layer], Field(min_length=1)]

    def expand(self) -> tuple[Layer, ...]:
        return tuple(self.layers)


class UniformNetwork(Strict):
    """Shorthand: ``depth`` identical layers of ``width`` units."""

    input_dim: Count
    depth: Count
    width: Count
    activation: ActivationIn
    init: WeightInitIn
    bias: BiasInitIn = BiasZeros()

    def expand(self) -> tuple[Layer, ...]:
        layer = Layer(units=self.width, activation=self.activation, init=self.init, bias=self.bias)
        return (layer,) * self.depth


def _network_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "layers" if "layers" in value else "shorthand"
    return "layers" if isinstance(value, LayeredNetwork) else "shorthand"


Network = Annotated[
    Annotated[LayeredNetwork, Tag("layers")] | Annotated[UniformNetwork, Tag("shorthand")],
    Discriminator(_network_kind),
]


class InputSpec(Strict):
    """Where the input rows come from: a distribution, or inline ``data``."""

    samples: Count = 1000
    distribution: DistributionIn = NormalInput()
    data: list[list[Finite]] | None = Field(
        default=None,
        description="Inline input rows (samples x input_dim); replaces the distribution.",
    )

    @model_validator(mode="after")
    def _data_shape(self) -> InputSpec:
        if self.data is None:
            return self
        if not self.data:
            raise ValueError("data must hold at least one row")
        width = len(self.data[0])
        for i, row in enumerate(self.data):
            if len(row) != width:
                raise ValueError(
                    f"data rows must have equal length: row 0 has {width}, row {i} has {len(row)}"
                )
        if "samples" in self.model_fields_set and self.samples != len(self.data):
            raise ValueError(f"samples={self.samples} but data has {len(self.data)} rows")
        return self


class HistogramSpec(Strict):
    bins: Count = 30
    range: tuple[Finite, Finite] | None = Field(
        default=None,
        description="Fixed [low, high]. Default: the activation's natural range when bounded "
        "(sigmoid (0, 1), tanh and hard_tanh (-1, 1)), else each layer's own [min, max].",
    )

    @model_validator(mode="after")
    def _ordered(self) -> HistogramSpec:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range must be [low, high] with low < high, got {list(self.range)}")
        return self


class Statistics(Strict):
    effective_rank: bool = Field(
        default=True,
        description="Compute each layer's entropy effective rank (an eigendecomposition per "
        "layer; turn off to save time on wide layers).",
    )


class AnalyzeRequest(Strict):
    network: Network
    input: InputSpec = InputSpec()
    histogram: HistogramSpec = HistogramSpec()
    gradient: GradientSource = RandomNormalGradient()
    thresholds: Thresholds = Thresholds()
    statistics: Statistics = Statistics()
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    dtype: DType = "float32"


def to_job(request: AnalyzeRequest, settings: Settings) -> AnalysisJob:
    """Expand the request, enforce the configured limits, and freeze it into a job."""
    net = request.network
    layers = net.expand()
    data = request.input.data
    samples = len(data) if data is not None else request.input.samples
    errors: list[FieldError] = []

    def limit(loc: tuple[str | int, ...], value: int, maximum: int, what: str) -> None:
        if value > maximum:
            errors.append(
                FieldError(
                    ("body", *loc),
                    f"{what} must be at most {maximum}, got {value}",
                    "less_than_equal",
                    value,
                )
            )

    if isinstance(net, UniformNetwork):
        limit(("network", "depth"), net.depth, settings.max_layers, "depth")
        limit(("network", "width"), net.width, settings.max_units, "width")
    else:
        limit(("network", "layers"), len(layers), settings.max_layers, "the number of layers")
        for i, layer in enumerate(layers):
            limit(("network", "layers", i, "units"), layer.units, settings.max_units, "units")
    limit(("network", "input_dim"), net.input_dim, settings.max_units, "input_dim")
    limit(("histogram", "bins"), request.histogram.bins, settings.max_bins, "bins")
    if data is None:
        limit(("input", "samples"), samples, settings.max_samples, "samples")
    else:
        limit(("input", "data"), len(data), settings.max_inline_rows, "the number of data rows")
        limit(
            ("input", "data"),
            len(data) * len(data[0]),
            settings.max_inline_values,
            "the number of data values",
        )
        if len(data[0]) != net.input_dim:
            errors.append(
                FieldError(
                    ("body", "network", "input_dim"),
                    f"input_dim={net.input_dim} does not match the {len(data[0])} "
                    "columns of input.data",
                    "value_error",
                    net.input_dim,
                )
            )
    if errors:
        raise InvalidRequest(errors)

    job = AnalysisJob(
        input_dim=net.input_dim,
        layers=tuple(LayerSpec(x.units, x.activation, x.init, x.bias) for x in layers),
        samples=samples,
        distribution=request.input.distribution,
        data=tuple(tuple(row) for row in data) if data is not None else None,
        bins=request.histogram.bins,
        histogram_range=request.histogram.range,
        gradient=request.gradient,
        thresholds=request.thresholds,
        seed=request.seed,
        dtype=request.dtype,
        effective_rank=request.statistics.effective_rank,
    )
    budget: list[FieldError] = []
    if job.macs > settings.compute_budget:
        budget.append(
            FieldError(
                ("body", "network"),
                f"the request costs {job.macs:.3g} multiply-adds per pass (samples x sum of "
                f"fan_in*fan_out = {samples} x {job.macs // samples}); the limit is "
                f"{settings.compute_budget:.3g}: use fewer samples or smaller layers",
                "compute_budget",
                job.macs,
            )
        )
    if job.peak_bytes() > settings.memory_budget_bytes:
        budget.append(
            FieldError(
                ("body", "network"),
                f"the request needs about {job.peak_bytes() / 2**20:.0f} MiB of working memory; "
                f"the limit is {settings.memory_budget_bytes / 2**20:.0f} MiB: use fewer samples, "
                "fewer or smaller layers, or float32",
                "memory_budget",
                job.peak_bytes(),
            )
        )
    if budget:
        raise BudgetExceeded(budget)
    return job


# --- responses -------------------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class HistogramOut(Out):
    edges: list[float]
    counts: list[int]
    underflow: int = Field(description="Finite values below edges[0].")
    overflow: int = Field(description="Finite values above edges[-1].")
    non_finite: int = Field(description="NaN and +-inf values, excluded from the bins.")


class ActivationStatsOut(Out):
    mean: float | None
    std: float | None
    rms: float | None
    min: float | None
    max: float | None
    zero_fraction: float
    saturated_fraction: float | None = Field(
        description="Fraction of values with phi'(a) below thresholds.saturation_derivative of "
        "the activation's largest derivative; null for activations without a saturating tail."
    )
    non_finite: int
    histogram: HistogramOut


class MomentsOut(Out):
    mean: float | None
    std: float | None


class GradientsOut(Out):
    output_grad_rms: float | None = Field(description="RMS of dL/dh for this layer's output.")
    weight_grad_norm: float | None = Field(
        description="Frobenius norm of the sample-mean gradient (1/n) h_prev^T delta."
    )
    relative_to_last: float | None = Field(description="output_grad_rms / the last layer's.")


class LayerOut(Out):
    index: int
    fan_in: int
    units: int
    activation: str
    init: str
    sigma_w2: float = Field(description="fan_in * Var(W).")
    sigma_b2: float = Field(description="Var(b).")
    activations: ActivationStatsOut
    preactivations: MomentsOut
    mean_derivative_sq: float | None = Field(description="E[phi'(a)^2], the local gain.")
    dead_units: int = Field(description="Units with phi'(a) = 0 on every sample.")
    distinct_units: int | None = Field(
        description="Distinct functions among the live units; null when values overflowed."
    )
    effective_rank: float | None = Field(
        description="Entropy effective rank of the centred activation matrix (Roy & Vetterli "
        "2007); null when not requested or when values are not finite."
    )
    gradients: GradientsOut


class InputOut(Out):
    samples: int
    input_rms: float
    input_grad_rms: float | None


class GradientDecayOut(Out):
    first_to_last: float | None = Field(
        description="output_grad_rms of layer 1 / that of the last layer."
    )
    per_layer_factor: float | None = Field(description="Geometric mean factor per layer step.")


class FindingOut(Out):
    code: Literal[
        "non_finite",
        "symmetric_units",
        "exploding_gradients",
        "vanishing_gradients",
        "exploding_activations",
        "vanishing_activations",
        "dead_units",
        "saturation",
        "concentrated_activations",
    ]
    layers: list[int]
    message: str


class RecommendationOut(Out):
    init: WeightInit
    reason: str


class DiagnosisOut(Out):
    verdict: str
    findings: list[FindingOut]
    recommendation: RecommendationOut


class MetaOut(Out):
    seed: int
    dtype: str
    flops: int
    elapsed_ms: float
    version: str


class AnalyzeResponse(Out):
    layers: list[LayerOut]
    input: InputOut
    gradient_decay: GradientDecayOut
    diagnosis: DiagnosisOut
    meta: MetaOut

    @classmethod
    def from_result(cls, result: Analysis) -> AnalyzeResponse:
        return cls(
            layers=[LayerOut.model_validate(x) for x in result.simulation.layers],
            input=InputOut.model_validate(result.simulation),
            gradient_decay=GradientDecayOut.model_validate(result.gradient_decay),
            diagnosis=DiagnosisOut.model_validate(result.diagnosis),
            meta=MetaOut.model_validate(result.meta),
        )


# --- catalogue -------------------------------------------------------------------------------


class Parameter(Out):
    name: str
    type: str
    default: Any = None
    required: bool
    constraints: dict[str, Any] = {}
    choices: list[Any] | None = None


class ActivationInfo(Out):
    name: str
    formula: str
    parameters: list[Parameter]
    pytorch_gain: float | None = Field(description="torch.nn.init.calculate_gain, defaults.")
    natural_range: tuple[float | None, float | None]
    saturating: bool


class InitializerInfo(Out):
    scheme: str
    aliases: list[str]
    formula: str
    parameters: list[Parameter]
    theory_applicable: bool
    kind: Literal["weight", "bias"]


__all__ = [
    "ACTIVATIONS",
    "BIAS_INITS",
    "WEIGHT_INITS",
    "ActivationInfo",
    "AnalyzeRequest",
    "AnalyzeResponse",
    "InitializerInfo",
    "Parameter",
    "to_job",
]
