"""The analysis at initialisation: one training-mode forward and backward pass of the spec's
network (:mod:`initscope.engine.layers`, built by :func:`initscope.engine.network.build`) on
the request's input, with per-layer statistics and, when asked for, the input-output Jacobian
spectrum.

Conventions (the book's and Keras'): ``a_l = h_{l-1} @ W_l + b_l``, ``h_l = phi_l(a_l)``,
``W_l`` of shape ``(fan_in, fan_out)``, rows are samples. The loss is ``L = sum_i g_i . h_L(x_i)``
with ``g`` the upstream gradient, so the backward pass is

    delta_l = g_l * phi_l'(a_l),   g_{l-1} = delta_l @ W_l^T,   dL/dW_l = h_{l-1}^T delta_l,

where ``g_l = dL/dh_l``. ``output_grad_rms`` is the RMS of the per-sample ``g_l``;
``weight_grad_norm`` is the Frobenius norm of the sample-mean weight gradient
``(1/n) h_{l-1}^T delta_l``.

A layer with batch norm and dropout (:class:`initscope.engine.layers.Block`) computes

    a = h_prev @ W + b,   z = BN(a) or a,   u = phi(z),   v = BN(u) or u,   h = m * v,

batch norm in training mode (the batch's statistics, Ioffe & Szegedy 2015, arXiv:1502.03167)
and ``m`` the inverted-dropout multiplier drawn from the layer's own stream (Srivastava et al.
2014); the backward pass differentiates through the batch statistics. The per-layer
statistics keep their meaning: ``activations`` (and the histogram) describe the layer's output
``h`` (after BN when it comes after phi, after the dropout mask), ``preactivations`` phi's
input ``z`` (after BN when it comes before), and ``phi'`` is taken at ``z``;
``output_grad_rms`` is that of ``dL/dh``.

Layers initialised with LSUV are rescaled as they are reached, on the output of the layers
before them (Mishkin & Matas 2015, :func:`initscope.engine.layers.lsuv`). The Jacobian
spectrum (Pennington et al. 2017) is that of each sample with the batch statistics held fixed
and the sample's own dropout mask (:func:`initscope.engine.layers.jacobians`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from initscope.engine.activations import ActivationFn
from initscope.engine.floating import applies_policy
from initscope.engine.layers import jacobians
from initscope.engine.network import LayerDropout, Network, build, gradient_stream, input_stream
from initscope.engine.statistics import (
    Summary,
    distinct_units,
    effective_rank,
    histogram,
    rms,
    summarise,
    summarise_derivative,
)
from initscope.jobs import AnalysisJob, LayerSpec, NormalInput, OnesGradient
from initscope.results import (
    ActivationStats,
    GradientStats,
    JacobianSpectrum,
    LayerResult,
    Moments,
    Simulation,
    as_float,
)

FloatArray = NDArray[np.floating[Any]]


def make_input(job: AnalysisJob, rng: np.random.Generator) -> FloatArray:
    if job.data is not None:
        return np.asarray(job.data, dtype=job.dtype)
    shape = (job.samples, job.input_dim)
    dist = job.distribution
    if isinstance(dist, NormalInput):
        x = rng.standard_normal(shape, dtype=job.dtype)
        x *= dist.std
        x += dist.mean
        return x
    x = rng.random(shape, dtype=job.dtype)
    x *= dist.high - dist.low
    x += dist.low
    return x


def make_upstream(job: AnalysisJob, rng: np.random.Generator) -> FloatArray:
    shape = (job.samples, job.layers[-1].units)
    if isinstance(job.gradient, OnesGradient):
        return np.ones(shape, dtype=job.dtype)
    return rng.standard_normal(shape, dtype=job.dtype)


def data_range(out: Summary) -> tuple[float, float]:
    """The layer's own [min, max]; [0, 1] when no value is finite.

    A range too narrow to bin (flat, or so narrow that 1 / width overflows) is widened like
    NumPy widens a flat one, by 0.5 each side, or by 1e-6 of the magnitude where 0.5 would
    vanish in rounding; never past the largest float.
    """
    if out.finite == 0:
        return (0.0, 1.0)
    low, high = out.min, out.max
    if low < high and math.isfinite(1.0 / (high - low)):
        return (low, high)
    pad = max(0.5, 1e-6 * max(abs(low), abs(high)))
    wide_low, wide_high = low - pad, high + pad
    return (
        wide_low if math.isfinite(wide_low) else low,
        wide_high if math.isfinite(wide_high) else high,
    )


def layer_statistics(
    job: AnalysisJob,
    index: int,
    spec: LayerSpec,
    fan_in: int,
    a: FloatArray,
    h: FloatArray,
    d: FloatArray,
) -> LayerResult:
    act: ActivationFn = spec.activation
    out = summarise(h)
    pre = summarise(a)
    limit = job.thresholds.saturation_derivative * act.max_derivative
    deriv = summarise_derivative(d, limit)

    value_range = job.histogram_range or output_range(spec, out)

    all_finite = out.non_finite == 0
    distinct: int | None = None  # not assessed on overflowed values
    if all_finite:
        column_means = h.mean(axis=0, dtype=np.float64)
        spread = np.sqrt(max(out.mean_square - float(np.mean(column_means**2)), 0.0))
        distinct = distinct_units(h, deriv.alive, spread, max(-out.min, out.max))
    return LayerResult(
        index=index,
        fan_in=fan_in,
        units=spec.units,
        activation=act.label,
        init=init_label(spec),
        sigma_w2=float(fan_in * spec.init.variance(fan_in, spec.units)),
        sigma_b2=float(spec.bias.variance()),
        activations=ActivationStats(
            mean=as_float(out.mean),
            std=as_float(out.std),
            rms=as_float(out.rms),
            min=as_float(out.min),
            max=as_float(out.max),
            zero_fraction=out.zeros / out.size,
            saturated_fraction=deriv.below / d.size if act.saturating else None,
            non_finite=out.non_finite,
            histogram=histogram(h, job.bins, value_range),
        ),
        preactivations=Moments(as_float(pre.mean), as_float(pre.std)),
        mean_derivative_sq=as_float(deriv.mean_square),
        dead_units=int(np.count_nonzero(~deriv.alive)),
        distinct_units=distinct,
        effective_rank=effective_rank(h) if job.effective_rank and all_finite else None,
        gradients=GradientStats(None, None, None),  # filled in by the backward pass
        batch_norm=spec.batch_norm,
        dropout=spec.dropout,
    )


def output_range(spec: LayerSpec, out: Summary) -> tuple[float, float]:
    """The histogram's default range: a bounded activation's natural range (widened by
    dropout's 1 / (1 - rate)); with batch norm after phi, or an unbounded phi, the data's."""
    act: ActivationFn = spec.activation
    after = spec.batch_norm is not None and spec.batch_norm.placement == "after"
    if not act.bounded or after:
        return data_range(out)
    low, high = act.natural_range
    scale = 1.0 / (1.0 - spec.dropout)
    return (low * scale, high * scale)


def init_label(spec: LayerSpec) -> str:
    """``scheme(param=value, ...)`` with every parameter, so the label alone says what ran."""
    init = spec.init
    params = [
        f"{field.name}={getattr(init, field.name)!r}"
        for field in dataclasses.fields(init)
        if field.name != "scheme"
    ]
    return f"{init.scheme}({', '.join(params)})" if params else init.scheme


_JACOBIAN_BINS = 30


@applies_policy
def jacobian_spectrum(m: FloatArray) -> JacobianSpectrum:
    """The singular-value statistics of the stack of Jacobians ``m`` (k, N_0, N_L).

    Singular values from ``np.linalg.svd(m, compute_uv=False)`` in ``m``'s dtype; moments in
    float64. See :class:`JacobianSpectrum` for what is reported.
    """
    k, n0, n_last = m.shape
    finite = np.isfinite(m).all(axis=(1, 2))
    s = _singular_values(m if finite.all() else m[finite]).astype(np.float64)
    excluded = k - s.shape[0]  # non-finite, or not decomposed
    tolerance = s.max(axis=1, keepdims=True, initial=0.0) * max(n0, n_last)
    tolerance *= float(np.finfo(m.dtype).eps)
    s[s <= tolerance] = 0.0
    zero = int(np.count_nonzero(s == 0.0))
    logs = np.log10(s[s > 0.0])
    squares = np.square(s)
    empty = s.size == 0
    return JacobianSpectrum(
        samples=k,
        singular_values=min(n0, n_last),
        mean_squared_singular_value=None if empty else as_float(squares.mean()),
        variance_squared=None if empty else as_float(squares.var()),
        min=None if empty else as_float(s.min()),
        max=None if empty else as_float(s.max()),
        zero=zero,
        excluded_samples=excluded,
        log10_histogram=histogram(logs, _JACOBIAN_BINS, data_range(summarise(logs))),
    )


def _singular_values(m: FloatArray) -> FloatArray:
    """Singular values of each matrix of the stack ``m``, one row per matrix that LAPACK
    could decompose (the others are left out)."""
    count = min(m.shape[1], m.shape[2])
    if m.shape[0] == 0:
        return np.empty((0, count), dtype=m.dtype)
    try:
        return np.linalg.svd(m, compute_uv=False)
    except np.linalg.LinAlgError:  # one matrix failed: decompose one by one, keep the rest
        rows: list[FloatArray] = []
        for matrix in m:
            try:
                rows.append(np.linalg.svd(matrix, compute_uv=False))
            except np.linalg.LinAlgError:
                continue
        return np.array(rows, dtype=m.dtype).reshape(len(rows), count)


def analysis_network(job: AnalysisJob) -> Network:
    """The network ``job`` describes, as drawn for its seed (LSUV not yet applied), each
    layer's dropout on its own stream."""
    return build(
        job.layers,
        job.input_dim,
        job.seed,
        np.dtype(job.dtype),
        lambda index: LayerDropout(job.seed, index),
    )


@applies_policy
def simulate(job: AnalysisJob) -> Simulation:
    """Run the forward and backward pass of ``job`` and measure every layer."""
    network = analysis_network(job)
    x = make_input(job, input_stream(job.seed))
    h = x
    forward: list[LayerResult] = []
    for index, (block, spec, (fan_in, _)) in enumerate(
        zip(network.blocks, job.layers, job.fans, strict=True), 1
    ):
        report = block.initialise(h)
        h_next = block.forward(h, "train")
        act = block.activation
        assert act.z is not None
        assert act.d is not None
        result = layer_statistics(job, index, spec, fan_in, act.z, h_next, act.d)
        if report is not None:  # the rescaled W's own variance, not the pre-init's
            sigma_w2 = fan_in * float(np.var(block.dense.w.value, dtype=np.float64))
            result = dataclasses.replace(result, sigma_w2=sigma_w2, lsuv=report)
        forward.append(result)
        act.z = None  # phi's input is not needed past the statistics
        h = h_next

    jacobian: JacobianSpectrum | None = None
    if job.jacobian_count > 0:
        jacobian = jacobian_spectrum(jacobians(network, job.jacobian_count))

    g = make_upstream(job, gradient_stream(job.seed))
    grad_rms: list[float] = []
    weight_norms: list[float] = []
    n = job.samples
    for block in reversed(network.blocks):
        grad_rms.append(rms(g))
        g = block.backward(g, parameters=False)  # in place where it can: g is ours
        weight_norms.append(math.sqrt(block.dense.grad_sum_squares) / n)
    input_grad_rms = rms(g)
    grad_rms.reverse()
    weight_norms.reverse()

    last = grad_rms[-1]
    layers = tuple(
        dataclasses.replace(
            result,
            gradients=GradientStats(
                output_grad_rms=as_float(out),
                weight_grad_norm=as_float(norm),
                relative_to_last=as_float(out / last) if last > 0 else None,
            ),
        )
        for result, out, norm in zip(forward, grad_rms, weight_norms, strict=True)
    )
    return Simulation(
        samples=n,
        input_rms=rms(x),
        input_grad_rms=as_float(input_grad_rms),
        layers=layers,
        jacobian=jacobian,
    )
