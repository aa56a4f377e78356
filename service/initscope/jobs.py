"""Frozen jobs: what crosses from the HTTP edge into the worker pool.

The small option types here are stdlib dataclasses that pydantic validates directly,
so the request schema and the job share one definition and a job never holds pydantic
models or NumPy arrays.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from initscope.engine.activations import Activation
from initscope.engine.initializers import BiasInit, Finite, Lsuv, Positive, WeightInit
from initscope.labels import layer_extras

_FORBID = ConfigDict(extra="forbid")
Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
DType = Literal["float32", "float64"]


@dataclass(frozen=True)
class NormalInput:
    """Input rows with i.i.d. N(mean, std^2) features."""

    __pydantic_config__ = _FORBID
    name: Literal["normal"] = "normal"
    mean: Finite = 0.0
    std: Positive = 1.0


@dataclass(frozen=True)
class UniformInput:
    """Input rows with i.i.d. U(low, high) features."""

    __pydantic_config__ = _FORBID
    name: Literal["uniform"] = "uniform"
    low: Finite = -1.0
    high: Finite = 1.0

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")


InputDistribution = Annotated[NormalInput | UniformInput, Field(discriminator="name")]


@dataclass(frozen=True)
class RandomNormalGradient:
    """dL/dh at the last layer's output drawn i.i.d. N(0, 1): the loss L = sum(g * h_L)."""

    __pydantic_config__ = _FORBID
    source: Literal["random_normal"] = "random_normal"


@dataclass(frozen=True)
class OnesGradient:
    """dL/dh = 1 at the last layer's output: the loss L = sum(h_L)."""

    __pydantic_config__ = _FORBID
    source: Literal["ones"] = "ones"


GradientSource = Annotated[RandomNormalGradient | OnesGradient, Field(discriminator="source")]


@dataclass(frozen=True)
class Thresholds:
    """When a measurement becomes a finding. Every value may be overridden per request."""

    __pydantic_config__ = _FORBID
    docs: ClassVar[dict[str, str]] = {
        "vanishing_gradient_ratio": "vanishing_gradients when a layer's output-gradient RMS, "
        "or its update ratio ||dW|| / ||W||, is below this fraction of the last layer's",
        "exploding_gradient_ratio": "exploding_gradients when a layer's output-gradient RMS, "
        "or its update ratio ||dW|| / ||W||, is above this multiple of the last layer's",
        "vanishing_activation_ratio": "vanishing_activations when a layer's activation RMS "
        "is below this fraction of the input's",
        "exploding_activation_ratio": "exploding_activations when a layer's activation RMS "
        "is above this multiple of the input's",
        "saturation_derivative": "a value is saturated when phi'(a) is below this fraction "
        "of the activation's largest derivative (saturating activations only)",
        "saturated_fraction": "saturation when more than this fraction of a layer's values "
        "are saturated",
        "dead_unit_fraction": "dead_units when more than this fraction of a layer's units "
        "pass no gradient for any sample",
        "concentrated_std": "concentrated_activations when a bounded activation's std is "
        "below this fraction of its output range",
        "symmetric_unit_fraction": "symmetric_units when more than this fraction of a "
        "layer's live units duplicate another unit exactly",
    }

    vanishing_gradient_ratio: Fraction = 1e-2
    exploding_gradient_ratio: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 1e2
    vanishing_activation_ratio: Fraction = 1e-2
    exploding_activation_ratio: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 1e2
    saturation_derivative: Fraction = 0.05
    saturated_fraction: Fraction = 0.3
    dead_unit_fraction: Fraction = 0.05
    concentrated_std: Fraction = 0.05
    symmetric_unit_fraction: Fraction = 0.1


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation in training mode (Ioffe & Szegedy 2015, arXiv:1502.03167).

    Over the batch of ``N`` samples, per unit ``j`` of the normalised tensor ``x`` (N, units):

        mu_j = (1/N) sum_i x_ij,   sigma_j^2 = (1/N) sum_i (x_ij - mu_j)^2,
        xhat_ij = (x_ij - mu_j) / sqrt(sigma_j^2 + eps),   y_ij = gamma xhat_ij + beta,

    the biased batch variance and ``eps`` inside the root, as ``torch.nn.BatchNorm1d`` computes
    it in training mode (eps default 1e-5, PyTorch's; at least 1e-30 so that it survives
    float32 and a constant column gives xhat = 0). ``gamma`` and ``beta`` are the learned
    scale and shift at their initialisation, constants shared by all units (1 and 0 as in the
    paper and PyTorch). ``placement``: ``before`` the activation normalises the pre-activation,
    ``h = phi(BN(a))`` (the paper's choice, and the book's); ``after`` normalises the output,
    ``h = BN(phi(a))``. With BN the bias only shifts ``a`` by a constant that ``mu`` removes
    (before) and the weights' scale cancels in ``xhat``: the forward pass does not depend on it.
    """

    __pydantic_config__ = _FORBID
    placement: Literal["before", "after"] = "before"
    gamma: Annotated[float, Field(ge=-1e3, le=1e3, allow_inf_nan=False)] = 1.0
    beta: Annotated[float, Field(ge=-1e3, le=1e3, allow_inf_nan=False)] = 0.0
    eps: Annotated[float, Field(ge=1e-30, le=1, allow_inf_nan=False)] = 1e-5

    @property
    def label(self) -> str:
        """``BN`` (defaults, before), else ``BN after(gamma=2, beta=0.5)`` with what differs."""
        params = [
            f"{name}={getattr(self, name):g}"
            for name, default in (("gamma", 1.0), ("beta", 0.0), ("eps", 1e-5))
            if getattr(self, name) != default
        ]
        where = " after" if self.placement == "after" else ""
        return f"BN{where}" + (f"({', '.join(params)})" if params else "")


DropoutRate = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


@dataclass(frozen=True)
class LayerSpec:
    """One dense layer: ``a = h_prev @ W + b``, then ``phi`` with optional batch norm before
    or after it, then dropout of the output at ``dropout`` (0: none)."""

    units: int
    activation: Activation
    init: WeightInit
    bias: BiasInit
    batch_norm: BatchNorm | None = None
    dropout: float = 0.0

    @property
    def extras(self) -> str:
        """``BN``, ``dropout 0.5``, ``BN, dropout 0.5`` or "": what the layer adds to a dense
        layer, for labels."""
        return layer_extras(self)


@dataclass(frozen=True)
class AnalysisJob:
    """One /analyze request, expanded and validated: everything the worker needs."""

    input_dim: int
    layers: tuple[LayerSpec, ...]
    samples: int
    distribution: NormalInput | UniformInput
    data: tuple[tuple[float, ...], ...] | None
    bins: int
    histogram_range: tuple[float, float] | None
    gradient: RandomNormalGradient | OnesGradient
    thresholds: Thresholds
    seed: int
    dtype: DType
    effective_rank: bool = False
    theory: bool = True
    jacobian_samples: int = 0  # input-output Jacobian spectrum of the first k samples; 0: off
    recommend: bool = False  # simulate candidate patches and recommend the best (advice.py)
    advice_budget: int = 0  # multiply-adds the candidates' simulations may use, in all

    @property
    def fans(self) -> list[tuple[int, int]]:
        widths = [self.input_dim, *(layer.units for layer in self.layers)]
        return list(itertools.pairwise(widths))

    @property
    def macs(self) -> int:
        """Multiply-adds of one forward pass: samples * sum(fan_in * fan_out)."""
        return self.samples * sum(fan_in * fan_out for fan_in, fan_out in self.fans)

    @property
    def jacobian_count(self) -> int:
        """Samples whose Jacobian is computed: the first k, at most all of them."""
        return min(self.jacobian_samples, self.samples)

    @property
    def jacobian_macs(self) -> int:
        """Multiply-adds of the Jacobian spectrum (an upper estimate).

        The running product M_l = M_{l-1} W_l D_l, (k, N_0, N_{l-1}) @ (N_{l-1}, N_l):
        k * sum_l N_0 N_{l-1} N_l; then k SVDs of (N_0, N_L) matrices,
        ~ k * N_0 * N_L * min(N_0, N_L).
        """
        k, n0 = self.jacobian_count, self.input_dim
        if k == 0:
            return 0
        n_last = self.layers[-1].units
        product = k * sum(n0 * fan_in * fan_out for fan_in, fan_out in self.fans)
        return product + k * n0 * n_last * min(n0, n_last)

    @property
    def lsuv_macs(self) -> int:
        """Multiply-adds of LSUV's extra forward passes: up to max_iterations per LSUV layer."""
        return sum(
            spec.init.max_iterations * self.samples * fan_in * fan_out
            for spec, (fan_in, fan_out) in zip(self.layers, self.fans, strict=True)
            if isinstance(spec.init, Lsuv)
        )

    @property
    def cost(self) -> int:
        """Multiply-adds the compute budget counts: the forward pass, plus LSUV's rescaling
        passes and the Jacobian spectrum when asked for."""
        return self.macs + self.lsuv_macs + self.jacobian_macs

    @property
    def flops(self) -> int:
        """Forward plus the two backward products per layer, plus LSUV's passes (at most)
        and the Jacobian spectrum; 2 flops per multiply-add."""
        return 6 * self.macs + 2 * (self.lsuv_macs + self.jacobian_macs)

    def peak_bytes(self) -> int:
        """Upper estimate of the simulation's working memory.

        Per layer the forward keeps h and phi'(a) (samples x units each) for the backward
        pass, and xhat with batch norm and the dropout mask with dropout, plus the weights;
        transient buffers of a few samples x units arrays on top, among them the phi inputs z
        of the layers still waiting for their statistics (at most three).
        The Jacobian spectrum holds two (k, N_0, N_l) products at a time.
        """
        itemsize = 4 if self.dtype == "float32" else 8
        widest = max(self.input_dim, *(layer.units for layer in self.layers))
        kept = sum(
            (2 + (layer.batch_norm is not None) + (layer.dropout > 0)) * self.samples * layer.units
            for layer in self.layers
        )
        weights = sum(fan_in * fan_out for fan_in, fan_out in self.fans)
        transient = 8 * self.samples * widest + 2 * widest * widest
        jacobian = 2 * self.jacobian_count * self.input_dim * widest
        return itemsize * (kept + weights + self.samples * self.input_dim + transient + jacobian)


FigureFormat = Literal["png", "svg"]


@dataclass(frozen=True)
class FigureOptions:
    """How to draw a result: format, and the canvas in pixels (None: sized to the panels)."""

    format: FigureFormat = "png"
    width: int | None = None
    height: int | None = None
    dpi: int = 100
