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


def sum_squares(x: FloatArray) -> float:
    """``sum(x^2)``, each square formed and accumulated in float64 (a float32 square overflows)."""
    flat = x.reshape(-1)
    return float(np.einsum("i,i->", flat, flat, dtype=np.float64))


def rms(x: FloatArray) -> float:
    """Root mean square; NaN for an empty array, inf/NaN propagate."""
    return float(np.sqrt(sum_squares(x) / x.size)) if x.size else float("nan")


@dataclasses.dataclass(frozen=True)
class Summary:
    """One array's finite values: count, moments and extremes (float64 accumulation)."""

    values: FloatArray  # the finite values, flattened (a view when all are finite)
    non_finite: int
    mean: float
    mean_square: float
    std: float
    min: float
    max: float


def summarise(x: FloatArray) -> Summary:
    """Moments of the finite values of ``x`` in two streaming passes.

    ``Var = E[x^2] - E[x]^2`` is exact enough in float64 unless the spread is below ~1e-6 of
    the mean, where the two-pass formula is used instead. The all-finite check is a min/max
    reduction (NaN and inf propagate into it), not a boolean mask.
    """
    flat = x.reshape(-1)
    low, high = flat.min(initial=np.inf), flat.max(initial=-np.inf)
    if not (np.isfinite(low) and np.isfinite(high)):
        flat = flat[np.isfinite(flat)]
        low, high = flat.min(initial=np.inf), flat.max(initial=-np.inf)
    n = flat.size
    if n == 0:
        nan = float("nan")
        return Summary(flat, x.size, nan, nan, nan, nan, nan)
    mean = float(flat.sum(dtype=np.float64)) / n
    mean_square = sum_squares(flat) / n
    variance = mean_square - mean * mean
    if variance < 1e-12 * mean_square:
        variance = float(flat.var(dtype=np.float64))
    return Summary(
        flat,
        x.size - n,
        mean,
        mean_square,
        float(np.sqrt(max(variance, 0.0))),
        float(low),
        float(high),
    )


_BLOCK = 1 << 17  # values per histogram block: the temporaries stay in cache


def histogram(
    x: FloatArray, bins: int, value_range: tuple[float, float] | None, non_finite: int
) -> Histogram:
    """Equal-width histogram that counts what falls outside instead of dropping it.

    ``x`` holds finite values only; ``non_finite`` is how many were removed before.
    Without a range, the data's own ``[min, max]`` (widened by 0.5 when flat, as NumPy does).
    Binning is NumPy's: ``floor((x - lo) * bins / (hi - lo))`` in float64, with values within
    rounding of an edge placed by comparison with the edge itself (so a value on an edge lands
    in the bin to its right); the right edge belongs to the last bin. Processed in blocks, so
    no temporary is as large as ``x`` and each stays in cache.
    """
    flat = x.reshape(-1)
    if value_range is None:
        lo, hi = (float(flat.min()), float(flat.max())) if flat.size else (0.0, 1.0)
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = value_range
    edges = np.linspace(lo, hi, bins + 1)
    scale = bins / (hi - lo)
    tally = np.zeros(bins + 2, dtype=np.int64)  # [underflow, bin 0 .. bin bins-1, above]
    overflow = 0
    for start in range(0, flat.size, _BLOCK):
        block = flat[start : start + _BLOCK]
        position = (block - lo) * scale
        index_f = np.floor(position)
        np.minimum(index_f, bins, out=index_f)
        np.maximum(index_f, -1, out=index_f)
        index = index_f.astype(np.intp)
        # Rounding can put a value within an ulp of an edge on the wrong side of it: place
        # those few by the edges themselves, as np.histogram does.
        # (Values equal to lo or hi are exact: x - lo is then 0 or hi - lo.)
        np.subtract(position, np.rint(position), out=position)
        near = np.abs(position, out=position) < 1e-9
        suspect = np.flatnonzero(near & (block != lo) & (block != hi))
        if suspect.size:
            index[suspect] = np.searchsorted(edges, block[suspect], side="right") - 1
        tally += np.bincount(index + 1, minlength=bins + 2)
        overflow += int(np.count_nonzero(block > hi))
    counts = tally[1 : bins + 1]
    counts[-1] += int(tally[bins + 1]) - overflow  # values exactly at hi belong to the last bin
    return Histogram(
        edges=tuple(float(f"{edge:.15g}") for edge in edges),  # 0.3, not 0.30000000000000004
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


def distinct_units(h: FloatArray, live: NDArray[np.bool_], spread: float, largest: float) -> int:
    """Number of distinct functions among the live units.

    Two units compute the same function when their outputs agree on every sample to within
    ``tol = max(sqrt(eps) * spread, 4 * eps * largest)``, with ``spread`` the RMS of the
    column-centred outputs and ``largest`` a bound on max|h|: identical weights give columns
    equal up to a few ulps of rounding in the matrix product, while units that differ at all
    differ on the scale of their own variation. Each column is projected on three fixed random
    directions ``r ~ N(0, I/n)``: a difference of norm ``sqrt(n) * tol`` projects to about
    ``tol``, so duplicates lie within ``6 tol`` plus the projection's own rounding,
    ``16 eps sqrt(n) largest``, of each other in every projection. Sorted by the first
    projection, duplicates are neighbours; each neighbour pair close in all three is checked
    on every sample, and a group of k identical units counts once.
    """
    units = np.flatnonzero(live)
    n, count = h.shape[0], units.size
    if count <= 1:
        return int(count)
    eps = float(np.finfo(h.dtype).eps)
    tol = max(np.sqrt(eps) * spread, 4 * eps * largest)
    directions = np.random.default_rng(0).standard_normal((3, n)) / np.sqrt(n)
    projections = (directions.astype(h.dtype) @ h).astype(np.float64)[:, units]
    order = np.argsort(projections[0], kind="stable")
    gaps = np.abs(np.diff(projections[:, order], axis=1)).max(axis=0)
    close = np.flatnonzero(gaps <= 6 * tol + 16 * eps * np.sqrt(n) * largest)
    if close.size == 0:
        return int(count)
    left, right = units[order[close]], units[order[close + 1]]
    same = np.abs(h[:, left] - h[:, right]).max(axis=0) <= tol
    return int(count - np.count_nonzero(same))


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
    out = summarise(h)
    pre = summarise(a)

    value_range = job.histogram_range
    if value_range is None and act.bounded:
        value_range = act.natural_range
    if value_range is None and out.values.size:
        value_range = (out.min, out.max) if out.min < out.max else (out.min - 0.5, out.max + 0.5)
    hist = histogram(out.values, job.bins, value_range, out.non_finite)

    saturated: float | None = None
    if act.saturating:
        limit = job.thresholds.saturation_derivative * act.max_derivative
        saturated = np.count_nonzero(d < limit) / size
    dead = ~np.any(d != 0, axis=0)
    all_finite = out.non_finite == 0
    distinct: int | None = None  # not assessed on overflowed values
    if all_finite:
        column_means = h.mean(axis=0, dtype=np.float64)
        spread = np.sqrt(max(out.mean_square - float(np.mean(column_means**2)), 0.0))
        distinct = distinct_units(h, ~dead, spread, max(-out.min, out.max))
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
            mean=as_float(out.mean),
            std=as_float(out.std),
            rms=as_float(np.sqrt(out.mean_square)),
            min=as_float(out.min),
            max=as_float(out.max),
            zero_fraction=np.count_nonzero(h == 0) / size,
            saturated_fraction=saturated,
            non_finite=out.non_finite,
            histogram=hist,
        ),
        preactivations=Moments(as_float(pre.mean), as_float(pre.std)),
        mean_derivative_sq=as_float(sum_squares(d) / size),
        dead_units=int(np.count_nonzero(dead)),
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
