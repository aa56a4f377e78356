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
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.activations import ActivationFn
from service.jobs import AnalysisJob, LayerSpec, NormalInput, OnesGradient
from service.results import (
    ActivationStats,
    GradientStats,
    Histogram,
    LayerResult,
    Moments,
    Simulation,
    as_float,
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


def rms(x: FloatArray) -> float:
    """Root mean square, squared and accumulated in float64 (a float32 square overflows)."""
    return float(np.sqrt(np.square(x, dtype=np.float64).mean())) if x.size else float("nan")


def histogram(
    x: FloatArray, bins: int, value_range: tuple[float, float] | None, non_finite: int
) -> Histogram:
    """Equal-width histogram that counts what falls outside instead of dropping it.

    ``x`` holds finite values only; ``non_finite`` is how many were removed before.
    Without a range, the data's own ``[min, max]`` (widened by 0.5 when flat, as NumPy does).
    Binning is NumPy's: ``floor((x - lo) * bins / (hi - lo))``, the right edge in the last bin.
    """
    if value_range is None:
        if x.size:
            lo, hi = float(x.min()), float(x.max())
        else:
            lo, hi = 0.0, 1.0
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = value_range
    edges = np.linspace(lo, hi, bins + 1)
    flat = x.reshape(-1)
    position = (flat - np.asarray(lo, dtype=flat.dtype)) * np.asarray(
        bins / (hi - lo), dtype=flat.dtype
    )
    np.floor(position, out=position)
    np.clip(position, -1, bins, out=position)
    index = position.astype(np.intp)
    index += 1
    tally = np.bincount(index, minlength=bins + 2)
    overflow = int(np.count_nonzero(flat > hi))
    counts = tally[1 : bins + 1].astype(np.int64)
    counts[-1] += int(tally[bins + 1]) - overflow  # values exactly at hi belong to the last bin
    return Histogram(
        edges=tuple(edges.tolist()),
        counts=tuple(counts.tolist()),
        underflow=int(tally[0]),
        overflow=overflow,
        non_finite=non_finite,
    )


def effective_rank(h: FloatArray) -> float:
    """Entropy effective rank of the column-centred matrix (Roy & Vetterli, EUSIPCO 2007).

    With singular values s_i of ``H - mean_rows(H)`` and ``p_i = s_i / sum_j s_j``,
    ``erank = exp(-sum_i p_i ln p_i)``; 1 for rank one, min(n, m) for a flat spectrum, and 0
    for a matrix that is zero after centring. The s_i come from the eigenvalues of the smaller
    Gram matrix in float64. Singular values below ``s_max * max(n, m) * eps(dtype)`` (NumPy's
    ``matrix_rank`` tolerance for data of that precision) or below ``s_max * sqrt(k * eps64)``
    (the Gram route's own floor: an eigenvalue error of ``eps * lambda_max`` is a singular value
    error of ``sqrt(eps) * s_max``) are rounding noise and dropped.
    """
    centred = np.asarray(h, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    gram = centred.T @ centred if centred.shape[1] <= centred.shape[0] else centred @ centred.T
    eigenvalues = np.linalg.eigvalsh(gram)
    singular = np.sqrt(np.clip(eigenvalues, 0.0, None))
    top = singular.max(initial=0.0)
    if top == 0.0:
        return 0.0
    eps64 = float(np.finfo(np.float64).eps)
    tolerance = top * max(max(h.shape) * float(np.finfo(h.dtype).eps), np.sqrt(len(gram) * eps64))
    kept = singular[singular > tolerance]
    p = kept / kept.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def distinct_units(h: FloatArray, live: NDArray[np.bool_]) -> int:
    """Number of distinct functions among the live units.

    Two units compute the same function when their outputs agree on every sample to within
    ``tol = max(sqrt(eps) * s, 4 * eps * max|h|)``, ``s`` the RMS of the column-centred
    outputs: identical weights give columns equal up to a few ulps of rounding in the matrix
    product, while units that differ at all differ on the scale of their own variation. Candidates
    are found by sorting a random projection of the columns (duplicates project within
    ``sqrt(n) * tol`` of each other), then every member is checked against its group's first.
    """
    columns = h[:, live]
    count = int(columns.shape[1])
    if count <= 1:
        return count
    n = columns.shape[0]
    eps = float(np.finfo(h.dtype).eps)
    spread = float(np.sqrt(np.mean(np.var(columns, axis=0, dtype=np.float64))))
    tol = max(np.sqrt(eps) * spread, 4 * eps * float(np.abs(columns).max()))
    direction = np.random.default_rng(0).standard_normal(n) / np.sqrt(n)
    projection = direction @ columns.astype(np.float64, copy=False)
    order = np.argsort(projection, kind="stable")
    starts = np.flatnonzero(np.diff(projection[order]) > np.sqrt(n) * tol) + 1
    distinct = count
    for group in np.split(order, starts):
        if group.size > 1:
            gap = np.abs(columns[:, group[1:]] - columns[:, group[:1]]).max(axis=0)
            distinct -= int(np.count_nonzero(gap <= tol))
    return distinct


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
    size = h.size
    finite_mask = np.isfinite(h)
    all_finite = bool(finite_mask.all())
    finite_h = h if all_finite else h[finite_mask]
    non_finite = size - finite_h.size

    value_range = job.histogram_range
    if value_range is None and act.bounded:
        value_range = act.natural_range
    hist = histogram(finite_h, job.bins, value_range, non_finite)

    if finite_h.size:
        mean = float(finite_h.mean(dtype=np.float64))
        std = float(finite_h.std(dtype=np.float64))
        root = rms(finite_h)
        low, high = float(finite_h.min()), float(finite_h.max())
    else:
        mean = std = root = low = high = float("nan")

    finite_a = a if np.isfinite(a).all() else a[np.isfinite(a)]
    pre = (
        Moments(as_float(finite_a.mean(dtype=np.float64)), as_float(finite_a.std(dtype=np.float64)))
        if finite_a.size
        else Moments(None, None)
    )

    saturated: float | None = None
    if act.saturating:
        limit = job.thresholds.saturation_derivative * act.max_derivative
        saturated = np.count_nonzero(d < limit) / size
    dead = ~np.any(d != 0, axis=0)
    init = spec.init
    return LayerResult(
        index=index,
        fan_in=fan_in,
        units=spec.units,
        activation=act.label,
        init=init_label(spec),
        sigma_w2=float(fan_in * init.variance(fan_in, spec.units)),
        sigma_b2=float(spec.bias.variance()),
        activations=ActivationStats(
            mean=as_float(mean),
            std=as_float(std),
            rms=as_float(root),
            min=as_float(low),
            max=as_float(high),
            zero_fraction=np.count_nonzero(h == 0) / size,
            saturated_fraction=saturated,
            non_finite=non_finite,
            histogram=hist,
        ),
        preactivations=pre,
        mean_derivative_sq=as_float(rms(d) ** 2),
        dead_units=int(np.count_nonzero(dead)),
        distinct_units=distinct_units(h, ~dead),
        effective_rank=effective_rank(h) if job.effective_rank and all_finite else None,
        gradients=GradientStats(None, None, None),  # filled in by the backward pass
    )


def init_label(spec: LayerSpec) -> str:
    """``scheme(param=value, ...)`` listing the parameters that differ from their defaults."""
    init = spec.init
    params = [
        f"{field.name}={getattr(init, field.name)!r}"
        for field in dataclasses.fields(init)
        if field.name != "scheme" and getattr(init, field.name) != field.default
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
            weight_norms.append(float(np.linalg.norm(h_prev.T @ g)) / n)
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
