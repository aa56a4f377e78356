"""Forward and backward pass of a dense network at initialisation, with per-layer statistics.

Conventions (the book's and Keras'): ``a_l = h_{l-1} @ W_l + b_l``, ``h_l = phi_l(a_l)``,
``W_l`` of shape ``(fan_in, fan_out)``, rows are samples. The loss is ``L = sum_i g_i . h_L(x_i)``
with ``g`` the upstream gradient, so the backward pass is

    delta_l = g_l * phi_l'(a_l),   g_{l-1} = delta_l @ W_l^T,   dL/dW_l = h_{l-1}^T delta_l,

where ``g_l = dL/dh_l``. ``output_grad_rms`` is the RMS of the per-sample ``g_l``;
``weight_grad_norm`` is the Frobenius norm of the sample-mean weight gradient
``(1/n) h_{l-1}^T delta_l``.

Batch norm and dropout (per layer, :class:`initscope.jobs.LayerSpec`). A layer computes

    a = h_prev @ W + b,   z = BN(a) or a,   u = phi(z),   v = BN(u) or u,   h = m * v,

with batch norm at one of the two places (``placement`` before or after phi) in training mode
(:func:`batch_norm`, Ioffe & Szegedy 2015, arXiv:1502.03167), and ``m`` the inverted-dropout
multiplier (:func:`dropout_mask`, Srivastava et al. 2014, JMLR 15:1929). The backward pass runs
the same steps in reverse: ``g <- g * m``; through BN after, :func:`batch_norm_backward`;
``g <- g * phi'(z)`` (delta); through BN before; then ``dL/dW = h_prev^T delta`` and
``g_prev = delta @ W^T``. The per-layer statistics keep their meaning: ``activations`` (and the
histogram) describe the layer's output ``h`` (after BN when it comes after phi, after the
dropout mask), ``preactivations`` phi's input ``z`` (after BN when it comes before), and
``phi'`` is taken at ``z``; ``output_grad_rms`` is that of ``dL/dh``.

Layers initialised with LSUV are rescaled here, on the request's own input, as they are reached
(:func:`lsuv`, measured on the plain layer ``phi(h_prev @ W + b)`` before any batch norm or
dropout); the input-output Jacobian spectrum, when asked for, is computed from the kept
weights and per-sample gains after the forward pass (:func:`jacobian_spectrum`). With batch
norm it is the Jacobian of each sample with the batch statistics held fixed (each BN a
diagonal gain ``gamma / sqrt(sigma^2 + eps)``), with dropout that of the sample's own mask.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from initscope.engine.activations import ActivationFn
from initscope.engine.initializers import Lsuv
from initscope.engine.statistics import (
    Summary,
    distinct_units,
    effective_rank,
    histogram,
    rms,
    sum_squares,
    summarise,
    summarise_derivative,
)
from initscope.jobs import AnalysisJob, BatchNorm, LayerSpec, NormalInput, OnesGradient
from initscope.results import (
    ActivationStats,
    GradientStats,
    JacobianSpectrum,
    LayerResult,
    LsuvReport,
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


def dropout_stream(seed: int, index: int) -> np.random.Generator:
    """Layer ``index``'s (1-based) dropout stream: the first child of the layer's own seed
    sequence (``spawn_key`` (layer stream, 0)), independent of the draws of W and b, so the
    mask depends only on the seed, the layer's place, its shape and the rate: variants of a
    comparison that differ in anything else see the same masks."""
    key = (_FIRST_LAYER_STREAM + index - 1, 0)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def dropout_mask(
    rate: float, shape: tuple[int, int], dtype: np.dtype[Any], rng: np.random.Generator
) -> FloatArray:
    """Inverted dropout (Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014,
    "Dropout", JMLR 15:1929-1958), as ``torch.nn.functional.dropout`` in training mode.

    Each value is kept independently with probability ``1 - rate`` (u >= rate for
    u ~ U[0, 1) from ``rng``, so a higher rate drops a superset of the units a lower one
    drops) and kept values are scaled by ``1 / (1 - rate)``, so E[m] = 1 and
    E[m * v] = E[v]: the multiplier ``m`` (``shape``, ``dtype``) is 0 or ``1 / (1 - rate)``.
    """
    mask: FloatArray = (rng.random(shape) >= rate).astype(dtype)
    mask *= dtype.type(1.0 / (1.0 - rate))
    return mask


@dataclasses.dataclass(frozen=True)
class Normalised:
    """What the backward pass needs from one batch norm: ``xhat`` (N, units) and the gain
    ``gamma / sqrt(sigma^2 + eps)`` (units,)."""

    xhat: FloatArray
    gain: FloatArray


def batch_norm(x: FloatArray, bn: BatchNorm) -> tuple[FloatArray, Normalised]:
    """Training-mode batch norm of ``x`` (N, units) over its N rows (Ioffe & Szegedy 2015):

        mu = mean_i x_i,   sigma^2 = mean_i (x_i - mu)^2,
        xhat = (x - mu) / sqrt(sigma^2 + eps),   y = gamma xhat + beta,

    per column, in ``x``'s dtype (PyTorch's ``BatchNorm1d`` in training mode). A constant
    column gives xhat = 0 and y = beta.
    """
    dtype = x.dtype.type
    centred = x - x.mean(axis=0)
    inv_sigma = 1.0 / np.sqrt(np.mean(centred * centred, axis=0) + dtype(bn.eps))
    xhat = centred
    xhat *= inv_sigma
    y = xhat * dtype(bn.gamma)
    if bn.beta:
        y += dtype(bn.beta)
    return y, Normalised(xhat, inv_sigma * dtype(bn.gamma))


def batch_norm_backward(dy: FloatArray, norm: Normalised) -> FloatArray:
    """``dL/dx`` from ``dy = dL/dy`` (N, units) through training-mode batch norm, the batch
    statistics differentiated too (Ioffe & Szegedy 2015, section 3):

        dx = (1/N) gamma / sqrt(sigma^2 + eps) (N dy - sum_i dy_i - xhat sum_i dy_i xhat_i),

    per column. The result sums to 0 over the batch and is orthogonal to xhat: batch norm
    passes no gradient along a shift or a rescaling of its input.
    """
    dx: FloatArray = dy - dy.mean(axis=0)
    dx -= norm.xhat * np.mean(dy * norm.xhat, axis=0)
    dx *= norm.gain
    return dx


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


def dense(h: FloatArray, w: FloatArray, b: FloatArray) -> FloatArray:
    """The pre-activation ``a = h @ W + b`` (the bias add skipped when b is all zero)."""
    a = h @ w
    if np.any(b):
        a += b
    return a


def output_variance(h: FloatArray) -> float:
    """Var(h) over all samples and units, as the layer statistics report it (std^2); NaN
    when any value is not finite."""
    out = summarise(h)
    return out.std**2 if out.non_finite == 0 else math.nan


def lsuv(
    init: Lsuv, act: ActivationFn, h_prev: FloatArray, w: FloatArray, b: FloatArray
) -> tuple[FloatArray, FloatArray, LsuvReport]:
    """LSUV (Mishkin & Matas 2015, arXiv:1511.06422) for one layer, rescaling ``w`` in place.

    v = Var(phi(h_prev @ W + b)) (or of the pre-activation, ``target="preactivation"``) over
    all samples and units; while |v - 1| >= tol, at most
    ``max_iterations`` times: W <- W / sqrt(v), and measure v again. Stops early, not
    converged, when v is 0 or not finite (a dead or overflowing layer cannot be rescaled).
    Returns the final pre-activation and output, whose variance is the reported one.
    """
    a = dense(h_prev, w, b)
    h = act.forward(a)
    measured = init.target == "preactivation"
    v = output_variance(a if measured else h)
    scale, iterations = 1.0, 0
    while not abs(v - 1.0) < init.tol:
        if iterations >= init.max_iterations or not (math.isfinite(v) and v > 0.0):
            break
        factor = w.dtype.type(1.0 / math.sqrt(v))  # rounded as W is scaled by it
        w *= factor
        scale *= float(factor)
        iterations += 1
        a = dense(h_prev, w, b)
        h = act.forward(a)
        v = output_variance(a if measured else h)
    report = LsuvReport(
        iterations=iterations,
        scale=scale,
        final_variance=as_float(v),
        converged=abs(v - 1.0) < init.tol,
    )
    return a, h, report


_JACOBIAN_BINS = 30


def jacobians(layers: list[tuple[FloatArray, FloatArray]], k: int) -> FloatArray:
    """Input-output Jacobians J_i = W_1 D_1i W_2 D_2i ... W_L D_Li of the first ``k`` samples.

    ``layers`` holds each layer's (W (N_{l-1}, N_l), phi'(a) (samples, N_l)), D_li =
    diag(phi_l'(a_li)). Batched over samples: M = W_1 * d_1[:k, None, :], then
    M = (M @ W_l) * d_l[:k, None, :]; the result has shape (k, N_0, N_L), with
    ``J_i[p, q] = d h_L[q] / d x_i[p]``, in the weights' dtype.
    """
    w_first, d_first = layers[0]
    m = w_first[None, :, :] * d_first[:k, None, :]
    for w, d in layers[1:]:
        m = m @ w
        m *= d[:k, None, :]
    return m


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


@dataclasses.dataclass(frozen=True)
class Kept:
    """One layer's forward state for the backward pass: its input ``h_prev``, ``W``,
    ``phi'(z)``, the batch norm before / after phi, and the dropout multiplier."""

    h_prev: FloatArray
    w: FloatArray
    d: FloatArray
    before: Normalised | None
    after: Normalised | None
    mask: FloatArray | None

    def gain(self) -> FloatArray:
        """The per-sample diagonal of d h / d a with batch statistics held fixed:
        phi'(z) times each BN's gain, times the dropout multiplier."""
        gain = self.d
        for norm in (self.before, self.after):
            if norm is not None:
                gain = gain * norm.gain
        return gain if self.mask is None else gain * self.mask

    def backward(self, g: FloatArray) -> FloatArray:
        """``delta = dL/da`` from ``g = dL/dh``, which it may overwrite."""
        if self.mask is not None:
            g *= self.mask
        if self.after is not None:
            g = batch_norm_backward(g, self.after)
        g *= self.d
        if self.before is not None:
            g = batch_norm_backward(g, self.before)
        return g


def layer_forward(
    job: AnalysisJob, index: int, spec: LayerSpec, h: FloatArray, w: FloatArray, b: FloatArray
) -> tuple[FloatArray, FloatArray, Kept, LsuvReport | None]:
    """Layer ``index``: phi's input ``z``, the output ``h``, the state for the backward pass,
    and what LSUV did (None for other inits)."""
    report: LsuvReport | None = None
    if isinstance(spec.init, Lsuv):
        a, _, report = lsuv(spec.init, spec.activation, h, w, b)
    else:
        a = dense(h, w, b)
    bn = spec.batch_norm
    before = after = mask = None
    if bn is not None and bn.placement == "before":
        a, before = batch_norm(a, bn)
    out = spec.activation.forward(a)
    d = spec.activation.derivative(a, out)
    if bn is not None and bn.placement == "after":
        out, after = batch_norm(out, bn)
    if spec.dropout > 0:
        rng = dropout_stream(job.seed, index)
        mask = dropout_mask(spec.dropout, out.shape, out.dtype, rng)
        out = out * mask  # not in place: a linear phi returns z itself
    return a, out, Kept(h, w, d, before, after, mask), report


def simulate(job: AnalysisJob) -> Simulation:
    """Run the forward and backward pass of ``job`` and measure every layer."""
    rngs = streams(job.seed, len(job.layers))
    with np.errstate(all="ignore"):  # overflow is measured and reported, never raised
        x = make_input(job, rngs[_INPUT_STREAM])
        h = x
        kept: list[Kept] = []
        forward: list[LayerResult] = []
        for index, (spec, (fan_in, _)) in enumerate(zip(job.layers, job.fans, strict=True), 1):
            w, b = draw_parameters(job, index, rngs[_FIRST_LAYER_STREAM + index - 1])
            z, h_next, state, report = layer_forward(job, index, spec, h, w, b)
            result = layer_statistics(job, index, spec, fan_in, z, h_next, state.d)
            if report is not None:  # the rescaled W's own variance, not the pre-init's
                sigma_w2 = fan_in * float(np.var(w, dtype=np.float64))
                result = dataclasses.replace(result, sigma_w2=sigma_w2, lsuv=report)
            forward.append(result)
            del z
            kept.append(state)
            h = h_next

        jacobian: JacobianSpectrum | None = None
        if job.jacobian_count > 0:
            m = jacobians([(k.w, k.gain()) for k in kept], job.jacobian_count)
            jacobian = jacobian_spectrum(m)
            del m

        g = make_upstream(job, rngs[_GRADIENT_STREAM])
        grad_rms: list[float] = []
        weight_norms: list[float] = []
        n = job.samples
        for state in reversed(kept):
            grad_rms.append(rms(g))
            g = state.backward(g)  # delta_l, in place where it can: g is ours
            weight_norms.append(math.sqrt(sum_squares(state.h_prev.T @ g)) / n)  # no f32 overflow
            g = g @ state.w.T
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
