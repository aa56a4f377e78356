"""Forward and backward pass of a dense network at initialisation, with per-layer statistics.

Conventions (the book's and Keras'): ``a_l = h_{l-1} @ W_l + b_l``, ``h_l = phi_l(a_l)``,
``W_l`` of shape ``(fan_in, fan_out)``, rows are samples. The loss is ``L = sum_i g_i . h_L(x_i)``
with ``g`` the upstream gradient, so the backward pass is

    delta_l = g_l * phi_l'(a_l),   g_{l-1} = delta_l @ W_l^T,   dL/dW_l = h_{l-1}^T delta_l,

where ``g_l = dL/dh_l``. ``output_grad_rms`` is the RMS of the per-sample ``g_l``;
``weight_grad_norm`` is the Frobenius norm of the sample-mean weight gradient
``(1/n) h_{l-1}^T delta_l``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.activations import ActivationFn
from service.jobs import AnalysisJob, LayerSpec, NormalInput, OnesGradient
from service.results import (
    ActivationStats,
    GradientStats,
    LayerResult,
    Moments,
    Simulation,
    as_float,
)
from service.statistics import (
    Summary,
    distinct_units,
    effective_rank,
    histogram,
    rms,
    sum_squares,
    summarise,
    summarise_derivative,
)

FloatArray = NDArray[np.floating[Any]]

# Independent random streams so that, for one seed, the input and the upstream gradient do not
# depend on the network: two networks compared under one seed see the same data.
_INPUT_STREAM, _GRADIENT_STREAM, _FIRST_LAYER_STREAM = 0, 1, 2


def streams(seed: int, layers: int) -> list[np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(_FIRST_LAYER_STREAM + layers)
    return [np.random.default_rng(child) for child in children]


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


def draw_parameters(
    job: AnalysisJob, index: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Layer ``index``'s (1-based) weights ``(fan_in, fan_out)`` and bias ``(fan_out,)``."""
    spec = job.layers[index - 1]
    fan_in, fan_out = job.fans[index - 1]
    dtype = np.dtype(job.dtype)
    return spec.init.sample(rng, fan_in, fan_out, dtype), spec.bias.sample(rng, fan_out, dtype)


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

    value_range = job.histogram_range or (act.natural_range if act.bounded else data_range(out))

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
    )


def init_label(spec: LayerSpec) -> str:
    """``scheme(param=value, ...)`` with every parameter, so the label alone says what ran."""
    init = spec.init
    params = [
        f"{field.name}={getattr(init, field.name)!r}"
        for field in dataclasses.fields(init)
        if field.name != "scheme"
    ]
    return f"{init.scheme}({', '.join(params)})" if params else init.scheme


def simulate(job: AnalysisJob) -> Simulation:
    """Run the forward and backward pass of ``job`` and measure every layer."""
    rngs = streams(job.seed, len(job.layers))
    with np.errstate(all="ignore"):  # overflow is measured and reported, never raised
        x = make_input(job, rngs[_INPUT_STREAM])
        h = x
        kept: list[tuple[FloatArray, FloatArray, FloatArray]] = []  # (h_prev, W, phi'(a))
        forward: list[LayerResult] = []
        for index, (spec, (fan_in, _)) in enumerate(zip(job.layers, job.fans, strict=True), 1):
            w, b = draw_parameters(job, index, rngs[_FIRST_LAYER_STREAM + index - 1])
            a = h @ w
            if np.any(b):
                a += b
            h_next = spec.activation.forward(a)
            d = spec.activation.derivative(a, h_next)
            forward.append(layer_statistics(job, index, spec, fan_in, a, h_next, d))
            del a
            kept.append((h, w, d))
            h = h_next

        g = make_upstream(job, rngs[_GRADIENT_STREAM])
        grad_rms: list[float] = []
        weight_norms: list[float] = []
        n = job.samples
        for h_prev, w, d in reversed(kept):
            grad_rms.append(rms(g))
            g *= d  # delta_l, in place: g is ours
            weight_norms.append(math.sqrt(sum_squares(h_prev.T @ g)) / n)  # no float32 overflow
            g = g @ w.T
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
    )
