"""Frozen results: what the worker returns, read by the JSON layer and (later) the renderer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from service.initializers import WeightInit


@dataclass(frozen=True)
class Histogram:
    """Equal-width bins over ``[edges[0], edges[-1]]``; the last bin includes its right edge.

    ``counts.sum() + underflow + overflow + non_finite`` equals the number of values.
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    underflow: int
    overflow: int
    non_finite: int

    @property
    def total(self) -> int:
        return sum(self.counts) + self.underflow + self.overflow + self.non_finite


@dataclass(frozen=True)
class Moments:
    """Mean and std over the finite values; ``None`` when there are none."""

    mean: float | None
    std: float | None


@dataclass(frozen=True)
class ActivationStats:
    mean: float | None
    std: float | None
    rms: float | None
    min: float | None
    max: float | None
    zero_fraction: float
    saturated_fraction: float | None
    non_finite: int
    histogram: Histogram


@dataclass(frozen=True)
class GradientStats:
    output_grad_rms: float | None
    weight_grad_norm: float | None
    relative_to_last: float | None


@dataclass(frozen=True)
class LayerResult:
    index: int
    fan_in: int
    units: int
    activation: str
    init: str
    sigma_w2: float
    sigma_b2: float
    activations: ActivationStats
    preactivations: Moments
    mean_derivative_sq: float | None
    dead_units: int
    distinct_units: int | None
    effective_rank: float | None
    gradients: GradientStats


@dataclass(frozen=True)
class Simulation:
    samples: int
    input_rms: float
    input_grad_rms: float | None
    layers: tuple[LayerResult, ...]


@dataclass(frozen=True)
class GradientDecay:
    first_to_last: float | None
    per_layer_factor: float | None


FindingCode = Literal[
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
"""Every finding, most severe first."""


@dataclass(frozen=True)
class Finding:
    code: FindingCode
    layers: tuple[int, ...]
    message: str


@dataclass(frozen=True)
class Recommendation:
    init: WeightInit
    reason: str


@dataclass(frozen=True)
class Diagnosis:
    verdict: str
    findings: tuple[Finding, ...]
    recommendation: Recommendation


@dataclass(frozen=True)
class Meta:
    seed: int
    dtype: str
    flops: int
    elapsed_ms: float
    version: str


@dataclass(frozen=True)
class Analysis:
    simulation: Simulation
    gradient_decay: GradientDecay
    diagnosis: Diagnosis
    meta: Meta


def as_float(value: Any) -> float | None:
    """A NumPy scalar as a Python float, ``None`` when it is not finite."""
    number = float(value)
    return number if np.isfinite(number) else None


@dataclass(frozen=True)
class Variant:
    name: str
    analysis: Analysis


@dataclass(frozen=True)
class Comparison:
    """Several analyses of networks that saw the same input and upstream gradient."""

    variants: tuple[Variant, ...]
