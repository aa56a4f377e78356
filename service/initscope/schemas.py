"""The HTTP contract: request and response models, and the request -> job conversion.

Option types (activations, initialisers, input distributions, thresholds) are the frozen
dataclasses of the domain modules, validated here by pydantic; names may stand for objects
(``"relu"`` for ``{"name": "relu"}``). Limits that depend on settings are checked in
:func:`to_job`, which raises :class:`initscope.errors.InvalidRequest` naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from initscope.config import Settings
from initscope.engine.activations import ACTIVATIONS, Activation
from initscope.engine.initializers import BIAS_INITS, WEIGHT_INITS, BiasInit, WeightInit
from initscope.engine.sweep import Metric, Part, Source, SweepJob, SweepParam, SweepResult
from initscope.errors import FieldError, InvalidRequest
from initscope.jobs import (
    AnalysisJob,
    BatchNorm,
    DropoutRate,
    DType,
    GradientSource,
    NormalInput,
    RandomNormalGradient,
    Thresholds,
)
from initscope.limits import (
    MAX_VARIANTS,
    MIN_VARIANTS,
    Cost,
    Loc,
    at_most,
    check_budget,
    inline_data,
)
from initscope.results import Analysis, Comparison, FindingCode
from initscope.schema_base import (
    ActivationIn,
    AnyNetwork,
    Count,
    DistributionIn,
    Network,
    NetworkPatch,
    Out,
    Seed,
    Strict,
    variant_networks,
)

Finite = Annotated[float, Field(allow_inf_nan=False)]


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
        if self.range is None:
            return self
        low, high = self.range
        if not low < high:
            raise ValueError(f"range must be [low, high] with low < high, got {list(self.range)}")
        if not (math.isfinite(high - low) and math.isfinite(self.bins / (high - low))):
            raise ValueError(
                f"range {list(self.range)} cannot be cut into {self.bins} finite bins: its width "
                "must be a finite float, and not so small that bins / width overflows"
            )
        return self


class Statistics(Strict):
    effective_rank: bool = Field(
        default=False,
        description="Also compute each layer's entropy effective rank (Roy & Vetterli 2007) "
        "of the centred activations: a float64 Gram matrix and its eigenvalues per layer, "
        "O(samples * units^2 + units^3), which at 1024 units costs as much again as the whole "
        "simulation; null unless asked for.",
    )


class JacobianSpec(Strict):
    samples: Annotated[int, Field(ge=1, le=64)] = Field(
        description="Compute the input-output Jacobian's singular values for the first k input "
        "rows (Pennington et al. 2017, dynamical isometry); counts in the compute budget."
    )


class Shared(Strict):
    """Everything but the network: the data, the measurement and the seed."""

    input: InputSpec = InputSpec()
    histogram: HistogramSpec = HistogramSpec()
    gradient: GradientSource = RandomNormalGradient()
    thresholds: Thresholds = Thresholds()
    statistics: Statistics = Statistics()
    jacobian: JacobianSpec | None = None
    recommend: bool = Field(
        default=True,
        description="Recommend a patch, verified: when the network shows a finding, each "
        "candidate patch (the textbook init, the critical point as Gaussian and as orthogonal "
        "weights, and where they apply a zero bias, batch norm, tanh for sigmoid or leaky "
        "ReLU for ReLU, then LSUV) "
        "is simulated on this request's input, seed and upstream gradient, and the best is "
        "returned with the others as alternatives. It runs inside the compute budget: the "
        "request's own passes are counted first, and what remains (shared equally by the "
        "variants of /compare) pays for the candidates in that order, one forward pass each "
        "plus LSUV's rescaling passes (at most 10 per layer); candidates it cannot pay for are "
        "skipped and named in the reason. A request that cannot pay for one candidate pass "
        "is refused unless this is false. false: no recommendation (null), no extra cost.",
    )
    seed: Seed = 0
    dtype: DType = "float32"


class AnalyzeRequest(Shared):
    theory: bool = Field(
        default=True,
        description="Mean-field predictions beside the measurements (false to skip).",
    )

    network: Network

    def job(self, settings: Settings) -> AnalysisJob:
        return dataclasses.replace(to_job(self.network, self, settings), theory=self.theory)


class VariantSpec(NetworkPatch):
    """One network of a comparison: a whole ``network``, or patches over the base network."""

    LAYER_FIELDS = (*NetworkPatch.LAYER_FIELDS, "batch_norm", "dropout")

    batch_norm: BatchNorm | None = Field(
        default=None, description="Batch norm for every layer (null: the base's)."
    )
    dropout: DropoutRate | None = Field(
        default=None, description="Dropout rate for every layer (null: the base's)."
    )


class CompareRequest(Shared):
    base: Network | None = Field(
        default=None, description="The network that variants without a `network` patch."
    )
    variants: Annotated[list[VariantSpec], Field(min_length=MIN_VARIANTS, max_length=MAX_VARIANTS)]

    @model_validator(mode="after")
    def _complete(self) -> CompareRequest:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if self.base is None:
            missing = [v.name for v in self.variants if v.network is None]
            if missing:
                raise ValueError(f"variants {missing} have no network and there is no base")
        return self

    def networks(self) -> list[tuple[str, AnyNetwork, Loc]]:
        """(name, network, where the network came from) for every variant."""
        return variant_networks(self.variants, self.base, ("base",))


def to_job(
    net: AnyNetwork, shared: Shared, settings: Settings, where: Loc = ("network",)
) -> AnalysisJob:
    """Expand one network, enforce the configured limits, and freeze it into a job.

    ``where`` is the network's location in the request body, for the error messages.
    """
    data = shared.input.data
    samples = len(data) if data is not None else shared.input.samples
    errors = net.limits(settings, where)
    errors += at_most(("histogram", "bins"), shared.histogram.bins, settings.max_bins, "bins")
    if data is None:
        errors += at_most(("input", "samples"), samples, settings.max_samples, "samples")
    else:
        errors += inline_data(
            ("input", "data"),
            len(data),
            len(data[0]),
            settings,
            "the number of data rows",
            "the number of data values",
        )
        if len(data[0]) != net.input_dim:
            errors.append(
                FieldError(
                    ("body", *where, "input_dim"),
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
        layers=net.layer_specs(),  # only now: the shorthand's depth may have been 10**10
        samples=samples,
        distribution=shared.input.distribution,
        data=tuple(tuple(row) for row in data) if data is not None else None,
        bins=shared.histogram.bins,
        histogram_range=shared.histogram.range,
        gradient=shared.gradient,
        thresholds=shared.thresholds,
        seed=shared.seed,
        dtype=shared.dtype,
        effective_rank=shared.statistics.effective_rank,
        jacobian_samples=shared.jacobian.samples if shared.jacobian is not None else 0,
        recommend=shared.recommend,
    )
    check_budget(analysis_cost([job]), settings, ("body", *where))
    return with_advice_budget([job], settings)[0]


def with_advice_budget(jobs: Sequence[AnalysisJob], settings: Settings) -> list[AnalysisJob]:
    """The jobs, those that recommend sharing equally what their own passes leave of the
    compute budget for verifying their candidates."""
    asking = sum(job.recommend for job in jobs)
    spare = max(settings.compute_budget - sum(job.cost for job in jobs), 0)
    return [
        dataclasses.replace(job, advice_budget=spare // asking) if job.recommend else job
        for job in jobs
    ]


def analysis_cost(jobs: Sequence[AnalysisJob]) -> Cost:
    """Compute: all jobs together (one pass is samples x sum of fan_in*fan_out multiply-adds);
    memory: the largest job's working set."""
    samples = jobs[0].samples
    forward = sum(job.macs for job in jobs)
    lsuv = sum(job.lsuv_macs for job in jobs)
    jacobian = sum(job.jacobian_macs for job in jobs)
    advice = sum(job.macs for job in jobs if job.recommend)
    extras = (
        (f"; LSUV passes {lsuv:.3g}" if lsuv else "")
        + (f"; Jacobian spectrum {jacobian:.3g}" if jacobian else "")
        + (f"; at least one pass verifying the recommendation {advice:.3g}" if advice else "")
    )
    return Cost(
        macs=sum(job.cost for job in jobs) + advice,
        peak_bytes=max(job.peak_bytes() for job in jobs),
        what="the request",
        breakdown=f"a pass: samples x sum of fan_in*fan_out = {samples} x "
        f"{forward // samples}{extras}",
        remedy="fewer samples or smaller layers"
        + (", or fewer Jacobian samples" if jacobian else "")
        + (', or "recommend": false' if advice else ""),
        memory_remedy="fewer samples, fewer or smaller layers, or float32",
    )


def to_jobs(request: CompareRequest, settings: Settings) -> list[tuple[str, AnalysisJob]]:
    """One job per variant, each within the limits, and all together within the budget."""
    jobs = [
        (name, to_job(net, request, settings, where)) for name, net, where in request.networks()
    ]
    check_budget(analysis_cost([job for _, job in jobs]), settings, ("body", "variants"))
    shared = with_advice_budget([job for _, job in jobs], settings)
    return [(name, job) for (name, _), job in zip(jobs, shared, strict=True)]


# --- responses -------------------------------------------------------------------------------


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
    update_ratio: float | None = Field(
        description="weight_grad_norm / ||W||_F: the relative change of W one gradient step "
        "makes per unit learning rate."
    )


class LsuvOut(Out):
    iterations: int = Field(description="Rescalings W <- W / sqrt(v) applied.")
    scale: float = Field(description="Total factor: final W = scale * orthogonal pre-init.")
    final_variance: float | None = Field(
        description="v with the final W: Var(h_prev W + b), the pre-activation's (the default "
        "target), or Var(phi(h_prev W + b)), the output's (the output target)."
    )
    converged: bool = Field(description="|final_variance - 1| < tol.")


class LayerOut(Out):
    index: int
    fan_in: int
    units: int
    activation: str
    init: str
    sigma_w2: float = Field(description="fan_in * Var(W).")
    sigma_b2: float = Field(description="Var(b).")
    activations: ActivationStatsOut
    preactivations: MomentsOut = Field(
        description="Moments of the activation's input: a = h_prev W + b, or BN(a) when batch "
        "norm comes before the activation. `activations` (and its histogram) describe the "
        "layer's output: after batch norm when it comes after the activation, after dropout."
    )
    mean_derivative_sq: float | None = Field(description="E[phi'(a)^2], the local gain.")
    dead_units: int = Field(description="Units with phi'(a) = 0 on every sample.")
    sample_correlation: float | None = Field(
        description="Mean cosine similarity of two different samples' pre-activation vectors "
        "(the mean-field correlation c^l, Poole et al. 2016); null when not finite."
    )
    distinct_units: int | None = Field(
        description="Distinct functions among the live units; null when values overflowed."
    )
    effective_rank: float | None = Field(
        description="Entropy effective rank of the centred activation matrix (Roy & Vetterli "
        "2007); null when not requested or when values are not finite."
    )
    gradients: GradientsOut
    theory: LayerTheoryOut | None = None
    lsuv: LsuvOut | None = Field(default=None, description="What LSUV did; null for other inits.")
    batch_norm: BatchNorm | None = Field(default=None, description="The layer's batch norm.")
    dropout: float = Field(default=0.0, description="The layer's dropout rate (0: none).")


class LayerTheoryOut(Out):
    q: float = Field(description="Predicted pre-activation variance q^l.")
    second_moment: float = Field(description="Predicted E[h^2].")
    chi_1: float = Field(description="sigma_w^2 E[phi'(a)^2] at this layer's predicted q.")
    gradient_ratio: float = Field(
        description="Predicted RMS(dL/dh_{l-1}) / RMS(dL/dh_l) (layer 1: the input's)."
    )
    q_gap: float | None = Field(description="(measured E[a^2] - q) / q.")
    second_moment_gap: float | None
    chi_1_gap: float | None = Field(description="Against sigma_w^2 * measured E[phi'(a)^2].")
    gradient_ratio_gap: float | None


class TheoryOut(Out):
    applicable: bool
    notes: list[str]
    q_star: float | None = Field(description="Fixed point of the length map.")
    chi_1: float | None = Field(description="chi_1 at q*: < 1 ordered, > 1 chaotic.")
    phase: str | None
    phase_tolerance: float | None = Field(description="|chi_1 - 1| <= this is critical.")
    xi_q: float | None = Field(description="Depth scale of the length; null when unbounded.")
    xi_c: float | None = Field(description="Depth scale of correlations; null when unbounded.")
    trainable_depth: float | None = Field(description="About 6 xi_c (Schoenholz et al. 2017).")
    critical_sigma_w2: float | None = Field(
        description="sigma_w^2 with chi_1(q*) = 1 at this sigma_b^2; null if none in [0.1, 100]."
    )


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
    code: FindingCode
    layers: list[int]
    message: str


class VerifiedOut(Out):
    """What the patched network did when simulated on this request's input, seed and upstream
    gradient."""

    verdict: str
    findings: list[FindingCode]
    first_to_last: float | None = Field(description="gradient_decay.first_to_last.")
    last_to_first_rms: float | None = Field(
        description="The last layer's activation RMS over the first layer's."
    )
    update_ratio: tuple[float, float] | None = Field(
        description="[smallest, largest] update_ratio ||dW|| / ||W|| over the layers."
    )


class AdviceOut(Out):
    """A patch in the shape of a /compare variant (null: keep the network's own), applied to
    every layer; sending it as a variant over this network reproduces `verified`."""

    init: WeightInit | None
    bias: BiasInit | None
    activation: Activation | None
    batch_norm: BatchNorm | None
    reason: str
    verified: VerifiedOut


class RecommendationOut(AdviceOut):
    alternatives: list[AdviceOut] = Field(
        description="The other candidates simulated, best first (empty when no finding was "
        "raised: then the recommendation is to keep the network, all patch fields null)."
    )


class DiagnosisOut(Out):
    verdict: str
    findings: list[FindingOut]
    recommendation: RecommendationOut | None = Field(
        description="The verified recommendation; null with recommend: false."
    )


class MetaOut(Out):
    seed: int
    dtype: str
    flops: int
    elapsed_ms: float
    version: str


class JacobianOut(Out):
    samples: int = Field(description="Input rows whose Jacobian J_i = W_1 D_1i ... W_L D_Li ran.")
    singular_values: int = Field(description="Per sample: min(input_dim, last layer's units).")
    mean_squared_singular_value: float | None = Field(description="Mean of s^2 over all.")
    variance_squared: float | None = Field(description="Variance of s^2 over all.")
    min: float | None
    max: float | None
    zero: int = Field(description="Numerically zero s (below the rank tolerance), not binned.")
    excluded_samples: int = Field(description="Samples with non-finite or undecomposable J.")
    log10_histogram: HistogramOut = Field(description="log10(s) of the nonzero s, 30 bins.")


class AnalyzeResponse(Out):
    layers: list[LayerOut]
    input: InputOut
    gradient_decay: GradientDecayOut
    diagnosis: DiagnosisOut
    meta: MetaOut
    jacobian: JacobianOut | None = None
    theory: TheoryOut | None = Field(
        default=None, description="Mean-field theory for this network; null with theory=false."
    )

    @classmethod
    def from_result(cls, result: Analysis) -> AnalyzeResponse:
        theory = result.theory
        predictions = theory.layers if theory is not None and theory.layers else None
        layers = [LayerOut.model_validate(x) for x in result.simulation.layers]
        if predictions is not None:
            layers = [
                layer.model_copy(update={"theory": LayerTheoryOut.model_validate(p)})
                for layer, p in zip(layers, predictions, strict=True)
            ]
        return cls(
            layers=layers,
            theory=None if theory is None else TheoryOut.model_validate(theory),
            input=InputOut.model_validate(result.simulation),
            gradient_decay=GradientDecayOut.model_validate(result.gradient_decay),
            diagnosis=DiagnosisOut.model_validate(result.diagnosis),
            meta=MetaOut.model_validate(result.meta),
            jacobian=None
            if result.simulation.jacobian is None
            else JacobianOut.model_validate(result.simulation.jacobian),
        )


class ComparisonRow(Out):
    name: str
    verdict: str
    first_to_last: float | None = Field(description="gradient_decay.first_to_last.")
    last_layer_std: float | None = Field(description="The last layer's activation std.")
    saturated_fraction: float | None = Field(
        description="The largest per-layer saturated fraction; null without a saturating tail."
    )
    dead_fraction: float = Field(description="Dead units over all units of the network.")

    @classmethod
    def of(cls, name: str, result: Analysis) -> ComparisonRow:
        layers = result.simulation.layers
        saturated = [x.activations.saturated_fraction for x in layers]
        known = [x for x in saturated if x is not None]
        return cls(
            name=name,
            verdict=result.diagnosis.verdict,
            first_to_last=result.gradient_decay.first_to_last,
            last_layer_std=layers[-1].activations.std,
            saturated_fraction=max(known) if known else None,
            dead_fraction=sum(x.dead_units for x in layers) / sum(x.units for x in layers),
        )


class VariantOut(Out):
    name: str
    analysis: AnalyzeResponse


class CompareResponse(Out):
    variants: list[VariantOut]
    table: list[ComparisonRow]

    @classmethod
    def from_result(cls, comparison: Comparison[Analysis]) -> CompareResponse:
        return cls(
            variants=[
                VariantOut(name=v.name, analysis=AnalyzeResponse.from_result(v.result))
                for v in comparison.variants
            ],
            table=[ComparisonRow.of(v.name, v.result) for v in comparison.variants],
        )


# --- parts of a job split by the client -------------------------------------------------------


class PartIn(Strict):
    """Part ``index`` of ``count``: the request computes rows (of a sweep's y values) or trials
    (of a search, in the order of the draws) ``index``, ``index + count``, ``index + 2 count``,
    ...; ``initscope.parts`` merges the ``count`` answers into the unsplit answer."""

    index: Annotated[int, Field(ge=0, le=199)]
    count: Annotated[int, Field(ge=1, le=200)]

    @model_validator(mode="after")
    def _index_below_count(self) -> PartIn:
        if self.index >= self.count:
            raise ValueError(f"part.index must be < part.count, got {self.index} and {self.count}")
        return self


PART_FIELD = Field(
    default=None,
    description="null (the whole job), or {index, count}: this request computes only rows "
    "(/sweep: of y.values) or trials (/search: in the order of the draws) index, index + count, "
    "...; the client sends the count parts to different replicas and merges the answers into "
    "exactly the unsplit one (Client.sweep(..., parts=k), initscope sweep --parts k).",
)


class PartOut(Out):
    index: int
    count: int
    request: str = Field(
        description="SHA-256 of the request without its part: equal in every part of one job."
    )
    holds: list[int] = Field(
        description="The rows (indices into y.values) or trials (in the order of the draws) "
        "this part computed."
    )


def part_of(
    request: Strict, part: PartIn | None, total: int, what: str
) -> tuple[Part | None, list[FieldError]]:
    """The job's :class:`Part` (the request's digest without ``part``), or the 422's error when
    there are more parts than ``what`` (rows, trials) to share."""
    if part is None:
        return None, []
    if part.count > total:
        message = f"part.count must be at most the number of {what} ({total}), got {part.count}"
        return None, [FieldError(("body", "part", "count"), message, "less_than_equal", part.count)]
    digest = hashlib.sha256(request.model_dump_json(exclude={"part"}).encode()).hexdigest()
    return Part(part.index, part.count, digest), []


def part_out(part: Part | None, holds: Sequence[int]) -> PartOut | None:
    if part is None:
        return None
    return PartOut(index=part.index, count=part.count, request=part.request, holds=list(holds))


# --- sweeps ------------------------------------------------------------------------------------


class SweepAxis(Strict):
    param: SweepParam = Field(
        description="sigma_w2 (fan_in * Var(W)), std (the weight std; sigma_w2 = width std^2), "
        "sigma_b2 (Var(b)), depth or width."
    )
    values: Annotated[
        list[Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]],
        Field(min_length=1, max_length=20),
    ]

    @model_validator(mode="after")
    def _valid_values(self) -> SweepAxis:
        if self.param in ("depth", "width"):
            bad = [v for v in self.values if v < 1 or v != int(v)]
            if bad:
                raise ValueError(f"{self.param} values must be whole numbers >= 1, got {bad}")
        elif self.param != "sigma_b2" and 0 in self.values:
            raise ValueError(f"{self.param} values must be > 0")
        return self


class SweepRequest(Strict):
    """A grid over two hyperparameters of identical dense layers, one metric per cell."""

    activation: ActivationIn
    depth: Count = 10
    width: Count = 100
    sigma_w2: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] = 1.0
    sigma_b2: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] = 0.0
    samples: Count = 256
    seed: Seed = 0
    x: SweepAxis
    y: SweepAxis
    metric: Metric = Field(
        default="first_to_last",
        description="first_to_last (gradient RMS at layer 1 / last layer), last_std (the last "
        "layer's activation std), chi_1 or xi_c (mean-field quantities at the fixed point), or "
        "verdict (the simulated diagnosis' verdict; theory gives the phase).",
    )
    source: Source = "both"
    part: PartIn | None = PART_FIELD

    @model_validator(mode="after")
    def _distinct_axes(self) -> SweepRequest:
        weight = {"sigma_w2", "std"}
        if self.x.param == self.y.param or {self.x.param, self.y.param} == weight:
            raise ValueError(f"x and y must vary different things, got {self.x.param} twice")
        return self

    def job(self, settings: Settings) -> SweepJob:
        errors: list[FieldError] = []
        for name, axis in (("x", self.x), ("y", self.y)):
            limit = {"depth": settings.max_layers, "width": settings.max_units}.get(axis.param)
            if limit is not None:
                errors += at_most((name, "values"), int(max(axis.values)), limit, axis.param)
        errors += at_most(("depth",), self.depth, settings.max_layers, "depth")
        errors += at_most(("width",), self.width, settings.max_units, "width")
        errors += at_most(("samples",), self.samples, settings.max_samples, "samples")
        part, part_errors = part_of(self, self.part, len(self.y.values), "rows (y.values)")
        errors += part_errors
        if errors:
            raise InvalidRequest(errors)
        job = SweepJob(
            activation=self.activation,
            depth=self.depth,
            width=self.width,
            sigma_w2=self.sigma_w2,
            sigma_b2=self.sigma_b2,
            samples=self.samples,
            seed=self.seed,
            x_param=self.x.param,
            x_values=tuple(self.x.values),
            y_param=self.y.param,
            y_values=tuple(self.y.values),
            metric=self.metric,
            source=self.source,
            part=part,
        )
        cost = Cost(
            macs=job.macs,
            peak_bytes=None,
            what="the sweep",
            verb="simulates",
            breakdown="cells x samples x depth x width^2",
            remedy="fewer cells, samples or smaller networks, or source=theory",
        )
        check_budget(cost, settings, ("body",))
        return job


class SweepAxisOut(Out):
    param: str
    values: list[float]


class CriticalPoint(Out):
    sigma_w2: float
    sigma_b2: float


class SweepResponse(Out):
    """The whole grid; or, for a request with a ``part``, the rows it holds (``part.holds``,
    in order) and the edge of chaos only in the part holding row 0 (``critical_curve`` null and
    ``critical_note`` "" in the others)."""

    activation: str
    metric: str
    source: str
    x: SweepAxisOut
    y: SweepAxisOut
    simulation: list[list[float | str | None]] | None = Field(
        description="The metric per cell, rows over y, columns over x (strings for verdict)."
    )
    theory: list[list[float | str | None]] | None
    critical_curve: list[CriticalPoint] | None = Field(
        description="The edge of chaos chi_1(q*) = 1, when the axes are sigma_w2/std and sigma_b2."
    )
    critical_note: str
    part: PartOut | None = Field(
        default=None, description="The part of a split sweep this answer holds (null: all)."
    )

    @classmethod
    def from_result(cls, result: SweepResult) -> SweepResponse:
        job = result.job
        return cls(
            activation=job.activation.label,
            metric=job.metric,
            source=job.source,
            x=SweepAxisOut(param=job.x_param, values=list(job.x_values)),
            y=SweepAxisOut(param=job.y_param, values=list(job.y_values)),
            simulation=[list(row) for row in result.simulation] if result.simulation else None,
            theory=[list(row) for row in result.theory] if result.theory else None,
            critical_curve=[CriticalPoint(sigma_w2=w, sigma_b2=b) for w, b in result.critical]
            if result.critical
            else None,
            critical_note=result.critical_note,
            part=part_out(job.part, job.rows),
        )


# --- catalogue -------------------------------------------------------------------------------


class Parameter(Out):
    name: str
    type: str
    default: Any = None
    required: bool
    constraints: dict[str, Any] = Field(default={})
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
    "CompareRequest",
    "CompareResponse",
    "BIAS_INITS",
    "WEIGHT_INITS",
    "ActivationInfo",
    "AnalyzeRequest",
    "AnalyzeResponse",
    "InitializerInfo",
    "Parameter",
    "to_job",
]
