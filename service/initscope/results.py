"""Frozen results of an analysis: what the pool's worker returns for ``/analyze`` (an
:class:`Analysis`) and, one per variant, for ``/compare`` (combined into a :class:`Comparison`;
see ``initscope.operations``). The response models (``initscope.schemas``) and the figures
(``initscope.figures``) read them. A sweep's, a training run's and a search's results
are defined beside their computations (``initscope.engine.sweep``, ``initscope.training``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import numpy as np

from initscope.engine.activations import Activation
from initscope.engine.initializers import BiasInit, WeightInit
from initscope.jobs import BatchNorm

R = TypeVar("R")  # what a variant of a comparison holds


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
    """``update_ratio`` = ``weight_grad_norm / ||W||_F``: the relative change of W that one
    gradient step makes per unit learning rate, what training feels (a layer whose ratio is
    100x smaller than another's barely moves at a learning rate the other tolerates)."""

    output_grad_rms: float | None
    weight_grad_norm: float | None
    relative_to_last: float | None
    update_ratio: float | None = None


@dataclass(frozen=True)
class LsuvReport:
    """What LSUV (Mishkin & Matas 2016) did to one layer's orthogonal pre-init W0.

    ``iterations``: rescalings W <- W / sqrt(v) applied (0 when the pre-init already had
    |v - 1| < tol); ``scale``: the total factor, final W = scale * W0; ``final_variance``:
    v with the final W, over all samples and units, of the init's target: the pre-activation
    a = h_prev W + b (the default) or the output phi(a) (``None`` when not finite);
    ``converged``: |v - 1| < tol. A layer whose v is 0 or not finite cannot be rescaled: LSUV
    stops there with ``converged`` False.
    """

    iterations: int
    scale: float
    final_variance: float | None
    converged: bool


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
    sample_correlation: float | None = None
    lsuv: LsuvReport | None = None
    batch_norm: BatchNorm | None = None
    dropout: float = 0.0


@dataclass(frozen=True)
class JacobianSpectrum:
    """Singular values of the input-output Jacobian for the first ``samples`` inputs.

    Dynamical isometry (Pennington, Schoenholz & Ganguli 2017, arXiv:1711.04735). With
    ``a_l = h_{l-1} @ W_l + b_l`` and rows as samples, sample i's Jacobian
    ``J_i[p, q] = d h_L[q] / d x[p]`` is the ``(N_0, N_L)`` matrix

        J_i = W_1 D_1i W_2 D_2i ... W_L D_Li,   D_li = diag(phi_l'(a_li)),

    and each J_i has ``singular_values = min(N_0, N_L)`` singular values s. Over all of them
    (every sample and every singular value), ``mean_squared_singular_value`` = mean(s^2) and
    ``variance_squared`` = Var(s^2) (population variance); ``min`` and ``max`` are of s.

    Mean field: backpropagating through layer l multiplies a vector's expected squared norm
    by ``chi_1(q^l) = sigma_{w,l}^2 E_z[phi_l'(sqrt(q^l) z)^2]`` (q^l: layer l's
    pre-activation variance for that input), so ``tr(J_i J_i^T) ~ N_L prod_l chi_1(q^l)`` and
    ``mean_squared_singular_value ~ (N_L / min(N_0, N_L)) prod_l chi_1(q^l)``: chi_1^L at a
    fixed point when N_L <= N_0 (equal widths, say). That first moment is the same for
    Gaussian and orthogonal weights; the spread is not: Gaussian weights give a Var(s^2) that
    grows with depth even at chi_1 = 1, orthogonal weights with tanh near q* = 0 keep s near
    1, and ReLU spreads with depth either way.

    ``zero`` counts the numerically zero singular values: at or below the rank tolerance
    ``max(s_i) * max(N_0, N_L) * eps(dtype)`` of their own J_i (``np.linalg.matrix_rank``'s),
    below what the product's rounding resolves. They come from a rank-deficient J (ReLU's
    zero derivatives) or from the exponentially small tail of a deep product of Gaussian
    matrices. They are taken as exactly 0 in the moments and ``min``, and are not binned:
    ``log10_histogram`` is the histogram of
    log10(s) of the others, 30 bins over their own range. ``log10_histogram.total + zero =
    (samples - excluded_samples) * singular_values``. ``excluded_samples``: Jacobians with
    non-finite entries (overflow), or that LAPACK could not decompose; left out entirely.
    Statistics are ``None`` when no sample remains (or when they are not finite).
    """

    samples: int
    singular_values: int
    mean_squared_singular_value: float | None
    variance_squared: float | None
    min: float | None
    max: float | None
    zero: int
    excluded_samples: int
    log10_histogram: Histogram


@dataclass(frozen=True)
class Simulation:
    samples: int
    input_rms: float
    input_grad_rms: float | None
    layers: tuple[LayerResult, ...]
    jacobian: JacobianSpectrum | None = None


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
class Outcome:
    """What a network did when simulated, in the numbers a recommendation is judged by: its
    verdict and finding codes, ``first_to_last`` = RMS(dL/dh_1) / RMS(dL/dh_L),
    ``last_to_first_rms`` = RMS(h_L) / RMS(h_1) and ``update_ratio`` = the (smallest,
    largest) ``||dW|| / ||W||`` over the layers (None where not finite)."""

    verdict: str
    findings: tuple[FindingCode, ...]
    first_to_last: float | None
    last_to_first_rms: float | None
    update_ratio: tuple[float, float] | None


@dataclass(frozen=True)
class Patch:
    """A change to every layer of a network, in the shape of a /compare variant's patch
    (:class:`initscope.schema_base.NetworkPatch`): None keeps the network's own."""

    init: WeightInit | None = None
    bias: BiasInit | None = None
    activation: Activation | None = None
    batch_norm: BatchNorm | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the patch sets, by name (a subclass's own fields are not patches)."""
        names = (field.name for field in dataclasses.fields(Patch))
        return {name: value for name in names if (value := getattr(self, name)) is not None}


@dataclass(frozen=True, kw_only=True)
class Advice(Patch):
    """A patch, why, and what it did when simulated on the request's own input, seed and
    upstream gradient (``verified``)."""

    reason: str
    verified: Outcome


@dataclass(frozen=True, kw_only=True)
class Recommendation(Advice):
    """The best-ranked advice, with the runners-up (best first)."""

    alternatives: tuple[Advice, ...] = ()


@dataclass(frozen=True)
class Diagnosis:
    """``recommendation`` is None when the request asked for none (``recommend: false``)."""

    verdict: str
    findings: tuple[Finding, ...]
    recommendation: Recommendation | None


@dataclass(frozen=True)
class LayerPrediction:
    """Mean-field predictions for one layer, and the relative gaps (measured - predicted) /
    predicted of the matching measurements (None where a side is missing or zero)."""

    q: float
    second_moment: float
    chi_1: float
    gradient_ratio: float
    q_gap: float | None
    second_moment_gap: float | None
    chi_1_gap: float | None
    gradient_ratio_gap: float | None


@dataclass(frozen=True)
class NetworkTheory:
    """Mean-field theory beside the simulation; numbers only where it applies."""

    applicable: bool
    notes: tuple[str, ...]
    q_star: float | None = None
    chi_1: float | None = None
    phase: str | None = None
    phase_tolerance: float | None = None
    xi_q: float | None = None
    xi_c: float | None = None
    trainable_depth: float | None = None
    critical_sigma_w2: float | None = None
    layers: tuple[LayerPrediction, ...] | None = None


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
    theory: NetworkTheory | None = None


def as_float(value: Any) -> float | None:
    """A NumPy scalar as a Python float, ``None`` when it is not finite."""
    number = float(value)
    return number if np.isfinite(number) else None


@dataclass(frozen=True)
class Variant(Generic[R]):
    """One named variant of a comparison: its :class:`Analysis` (/compare) or its training
    run (/train)."""

    name: str
    result: R


@dataclass(frozen=True)
class Comparison(Generic[R]):
    """Several variants that saw the same data: the same input and upstream gradient
    (analyses), or the same batches in the same order (training runs)."""

    variants: tuple[Variant[R], ...]
