"""The layer engine: every layer type defined once, for analysis, training, LSUV and the
Jacobian spectrum alike.

Tensors carry the samples on their first axis: ``(N, d)`` vectors (implemented), ``(N, T, d)``
sequences and ``(N, C, H, W)`` images (planned). Dense layers act on the last axis; batch norm
reduces over every axis but the feature axis.

A layer (:class:`Layer`) holds its parameters (:class:`Parameter`, drawn from its own seeded
stream when the network is built, :mod:`initscope.engine.network`) and pairs, in one class,

- ``forward(x, mode)``: the output, keeping in ``"train"`` mode what the backward pass needs;
- ``backward(g, parameters)``: ``dL/dx`` from ``g = dL/dy`` (``g`` is the caller's to lose: it
  may be overwritten), filling the parameters' ``grad`` (``parameters=False``: none, only
  what the statistics report: a dense layer's ``||dL/dW||^2``);
- ``jacobian(product)``: its per-sample Jacobian applied to the running product of
  :class:`JacobianProduct` (a matrix, or a diagonal gain);
- ``parameters()``.

as jax ``example_libraries/stax.py`` pairs ``init_fun`` with ``apply_fun``. Modes:
``"train"`` (batch statistics, running statistics updated, dropout drawn, state kept: the
analysis at initialisation and a training step), ``"eval"`` (running statistics, no dropout,
nothing kept) and ``"probe"`` (batch statistics, no dropout, nothing kept or updated: the pass
that feeds LSUV while a training network is built).

:class:`Sequential` is a layer made of layers; :class:`Block` is one layer of the request's
spec (``a = h W + b``, optional batch norm before or after phi, phi, optional dropout), a
``Sequential`` with names for its parts and LSUV as its data-dependent initialisation.

The statistics are reported by the layer they describe: the dense layer its weight-gradient
norm (:meth:`Dense.weight_grad_norm`), the activation the moments of phi's input, E[phi'^2],
saturation and dead units (:meth:`Activation.statistics`), and the block, one layer of the
analysis' answer, its output's moments, histogram, distinct units and effective rank together
with its parts' (:meth:`Block.statistics`, asked for by :class:`Asked`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from initscope.engine import cores
from initscope.engine.activations import ActivationFn
from initscope.engine.floating import applies_policy
from initscope.engine.initializers import BiasInit, Lsuv, WeightInit
from initscope.engine.statistics import (
    Summary,
    data_range,
    distinct_units,
    effective_rank,
    histogram,
    sample_correlation,
    sum_squares,
    summarise,
    summarise_derivative,
)
from initscope.jobs import BatchNorm as BatchNormSpec
from initscope.jobs import LayerSpec
from initscope.results import (
    ActivationStats,
    GradientStats,
    LayerResult,
    LsuvReport,
    Moments,
    as_float,
)

FloatArray = NDArray[np.floating[Any]]
Mode = Literal["train", "eval", "probe"]


@dataclass(eq=False)
class Parameter:
    value: FloatArray
    decay: bool  # weight decay applies (weights; not biases, not batch norm's gamma and beta)
    grad: FloatArray | None = None  # dL/dvalue after a backward pass that asked for it

    def buffer(self) -> FloatArray | None:
        """The gradient's array to write into (a training step reuses it), or None."""
        grad = self.grad
        return grad if grad is not None and grad.shape == self.value.shape else None


class JacobianProduct:
    """The running product ``M = J_1 J_2 ... J_l`` of per-sample Jacobians (row convention,
    ``M_i[p, q] = d y[q] / d x_i[p]``) of the first ``k`` samples, shape ``(k, N_0, N_l)``.

    Layers push a matrix (:meth:`matmul`, a dense layer's W) or a diagonal gain
    (:meth:`scale`, ``(N, d)`` per sample or ``(d,)`` per unit); the gains between two matrices
    are multiplied together first, in layer order, and applied once:
    ``M <- (M @ W) * (g_1 g_2 ...)[:, None, :]``, the first matrix as ``W[None] * g``.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self._m: FloatArray | None = None
        self._w: FloatArray | None = None
        self._gain: FloatArray | None = None

    def matmul(self, w: FloatArray) -> None:
        self._flush()
        self._w = w

    def scale(self, gain: FloatArray, per_sample: bool) -> None:
        g = gain[: self.k] if per_sample else gain
        self._gain = g if self._gain is None else self._gain * g

    def result(self) -> FloatArray:
        self._flush()
        assert self._m is not None, "no layer pushed a factor"
        return self._m

    def _flush(self) -> None:
        w, gain, m = self._w, self._gain, self._m
        if w is None and gain is None:
            return
        if w is None:  # a gain before any matrix: start from the identity
            assert gain is not None
            w = np.eye(gain.shape[-1], dtype=gain.dtype)
        if m is None:
            m = w[None, :, :] * gain[..., None, :] if gain is not None else w[None, :, :]
            if m.shape[0] != self.k:
                m = np.repeat(m, self.k, axis=0)
        else:
            m = m @ w
            if gain is not None:
                m *= gain[..., None, :]
        self._m, self._w, self._gain = m, None, None


class Layer(Protocol):
    def forward(self, x: FloatArray, mode: Mode) -> FloatArray: ...
    def backward(self, g: FloatArray, parameters: bool = True) -> FloatArray: ...
    def jacobian(self, product: JacobianProduct) -> None: ...
    def parameters(self) -> list[Parameter]: ...


def jacobians(layer: Layer, k: int) -> FloatArray:
    """Input-output Jacobians of the first ``k`` samples through ``layer`` after its
    training-mode forward pass, ``(k, N_0, N_L)`` with ``J_i[p, q] = d y_i[q] / d x_i[p]``, in
    the weights' dtype; for a dense network ``J_i = W_1 D_1i W_2 D_2i ... W_L D_Li`` with
    ``D_li`` the product of the layer's diagonal gains for sample i (phi'(z), each batch
    norm's gain with the batch statistics held fixed, the dropout mask) (Pennington,
    Schoenholz & Ganguli 2017, arXiv:1711.04735)."""
    product = JacobianProduct(k)
    layer.jacobian(product)
    return product.result()


def dense(h: FloatArray, w: FloatArray, b: FloatArray, trained: bool = False) -> FloatArray:
    """The pre-activation ``a = h @ W + b`` on the last axis. The bias add is skipped when b
    is all zero (no pass over ``a`` for nothing: the analysis' hot path), unless the bias is
    ``trained`` (it has had a gradient: then it is nonzero in practice and the check would
    cost more than it saves). A layer boundary: the worker takes up its current share of the
    CPUs first (:func:`initscope.engine.cores.follow`), spent on the product's blocks."""
    cores.follow()
    a = cores.matmul(h, w) if h.ndim == 2 else h @ w
    if trained or b.any():
        a += b
    return a


class Dense:
    """``y = x W + b`` on the last axis, ``W`` (fan_in, fan_out). Backward:
    ``dL/dW = x^T g``, ``dL/db = sum g`` (over every axis but the last), ``dL/dx = g W^T``.
    Jacobian: ``W``."""

    def __init__(self, w: FloatArray, b: FloatArray) -> None:
        self.w = Parameter(w, decay=True)
        self.b = Parameter(b, decay=False)
        self.x: FloatArray | None = None
        self.grad_sum_squares = math.nan  # ||dL/dW||^2 of the last statistics-only pass

    @classmethod
    def draw(
        cls,
        weight: WeightInit,
        bias: BiasInit,
        shape: tuple[int, int],
        dtype: np.dtype[Any],
        rng: np.random.Generator,
    ) -> Dense:
        """W ``(fan_in, fan_out)`` from ``weight``, then b ``(fan_out,)`` from ``bias``, both
        from ``rng`` in that order (the order fixes the draws)."""
        fan_in, fan_out = shape
        w = weight.sample(rng, fan_in, fan_out, dtype)
        return cls(w, bias.sample(rng, fan_out, dtype))

    def forward(self, x: FloatArray, mode: Mode) -> FloatArray:
        if mode == "train":
            self.x = x
        return dense(x, self.w.value, self.b.value, trained=self.b.grad is not None)

    def backward(self, g: FloatArray, parameters: bool = True) -> FloatArray:
        assert self.x is not None, "backward before a training-mode forward"
        cores.follow()
        x, w = self.x, self.w.value
        x2, g2 = (x, g) if x.ndim == 2 else (x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1]))
        if parameters:
            self.w.grad = cores.matmul(x2.T, g2, out=self.w.buffer())
            self.b.grad = g2.sum(axis=0, out=self.b.buffer())
        else:  # the statistics' norm only: dW is not kept (nor its memory held)
            self.grad_sum_squares = sum_squares(cores.matmul(x2.T, g2))  # float64: no overflow
        dx: FloatArray = cores.matmul(g2, w.T).reshape((*g.shape[:-1], w.shape[0]))
        return dx

    def weight_grad_norm(self, samples: int) -> float:
        """What a dense layer reports: the Frobenius norm of the sample-mean weight gradient,
        ``||(1/n) x^T g||_F``, from the last statistics-only backward pass."""
        return math.sqrt(self.grad_sum_squares) / samples

    def weight_norm(self) -> float:
        """``||W||_F``, accumulated in float64."""
        return math.sqrt(sum_squares(self.w.value))

    def jacobian(self, product: JacobianProduct) -> None:
        product.matmul(self.w.value)

    def parameters(self) -> list[Parameter]:
        return [self.w, self.b]


class BatchNorm:
    """Batch normalisation (Ioffe & Szegedy 2015, arXiv:1502.03167) with learned ``gamma`` and
    ``beta`` per feature, over every axis but the last (the batch of ``n`` values per feature),
    ``torch.nn.BatchNorm1d``'s rules:

        mu = mean x,   sigma^2 = mean (x - mu)^2,
        xhat = (x - mu) / sqrt(sigma^2 + eps),   y = gamma xhat + beta,

    the biased batch variance, ``eps`` inside the root, in ``x``'s dtype; a constant feature
    gives xhat = 0 and y = beta. In ``"train"`` mode the running estimates move by momentum
    0.1: ``mean <- 0.9 mean + 0.1 mu``, ``var <- 0.9 var + 0.1 sigma^2 n / (n - 1)`` (the
    unbiased batch variance; a batch of one, whose variance is undefined, leaves them as they
    are); in ``"eval"`` mode they (0 and 1 at first) replace the batch's, so an output does not
    depend on the other samples. Backward, the batch statistics differentiated too (the
    paper's section 3):

        dx = gamma / sqrt(sigma^2 + eps) (dy - mean dy - xhat mean(dy xhat)),
        dgamma = sum(dy xhat),   dbeta = sum(dy).

    The input gradient sums to 0 over the batch and is orthogonal to xhat: batch norm passes no
    gradient along a shift or a rescaling of its input. Jacobian (the batch statistics held
    fixed): the diagonal gain ``gamma / sqrt(sigma^2 + eps)``.
    """

    MOMENTUM = 0.1

    def __init__(self, spec: BatchNormSpec, units: int, dtype: np.dtype[Any]) -> None:
        self.gamma = Parameter(np.full(units, spec.gamma, dtype), decay=False)
        self.beta = Parameter(np.full(units, spec.beta, dtype), decay=False)
        self.eps = dtype.type(spec.eps)
        self.running_mean = np.zeros(units, dtype)
        self.running_var = np.ones(units, dtype)
        self.xhat: FloatArray | None = None
        self.gain: FloatArray | None = None  # gamma / sqrt(sigma^2 + eps), per feature

    def forward(self, x: FloatArray, mode: Mode) -> FloatArray:
        axes = tuple(range(x.ndim - 1))
        if mode == "eval":
            xhat: FloatArray = (x - self.running_mean) / np.sqrt(self.running_var + self.eps)
            return self._affine(xhat)
        mu = x.mean(axis=axes)
        xhat = x - mu
        var = np.mean(xhat * xhat, axis=axes)
        inv_sigma = 1.0 / np.sqrt(var + self.eps)
        xhat *= inv_sigma
        if mode == "train":
            n = x.size // x.shape[-1]
            if n > 1:
                m = x.dtype.type(self.MOMENTUM)
                self.running_mean *= 1 - m
                self.running_mean += m * mu
                self.running_var *= 1 - m
                self.running_var += m * var * x.dtype.type(n / (n - 1))
            self.xhat, self.gain = xhat, inv_sigma * self.gamma.value
        return self._affine(xhat)

    def _affine(self, xhat: FloatArray) -> FloatArray:
        y = xhat * self.gamma.value
        if self.beta.value.any():
            y += self.beta.value
        return y

    def backward(self, g: FloatArray, parameters: bool = True) -> FloatArray:
        assert self.xhat is not None, "backward before a training-mode forward"
        assert self.gain is not None
        axes = tuple(range(g.ndim - 1))
        moment = g * self.xhat
        if parameters:
            self.gamma.grad = np.sum(moment, axis=axes, out=self.gamma.buffer())
            self.beta.grad = np.sum(g, axis=axes, out=self.beta.buffer())
        dx: FloatArray = g - g.mean(axis=axes)
        dx -= self.xhat * np.mean(moment, axis=axes)
        dx *= self.gain
        return dx

    def jacobian(self, product: JacobianProduct) -> None:
        assert self.gain is not None
        product.scale(self.gain, per_sample=False)

    def parameters(self) -> list[Parameter]:
        return [self.gamma, self.beta]


@dataclass(frozen=True)
class PhiStatistics:
    """What an activation layer reports (:meth:`Activation.statistics`)."""

    preactivations: Moments
    mean_derivative_sq: float | None
    saturated_fraction: float | None
    alive: NDArray[np.bool_]  # per unit: phi' != 0 on some sample
    sample_correlation: float | None  # mean correlation of two samples' z (the measured c^l)


@dataclass(frozen=True)
class Asked:
    """What the per-layer statistics are asked for: the histogram's bins and range (None: the
    layer's own, :meth:`Block.histogram_range`), phi' below this fraction of its largest
    slope counts as saturated, and whether to compute the effective rank."""

    bins: int
    histogram_range: tuple[float, float] | None
    saturation_derivative: float
    effective_rank: bool


class Activation:
    """``h = phi(z)`` elementwise. Backward ``g phi'(z)``; Jacobian the diagonal ``phi'(z)``.
    In ``"train"`` mode keeps ``z`` and ``phi'(z)``, which the statistics read (phi's input,
    E[phi'^2], dead and saturated units). ``phi'(z)`` is computed when first read (:attr:`d`),
    so the analysis computes it with the layer's statistics, off the products' path."""

    def __init__(self, fn: ActivationFn) -> None:
        self.fn = fn
        self.z: FloatArray | None = None
        self._d: FloatArray | None = None
        self._h: FloatArray | None = None  # phi(z), until phi'(z) is computed from it
        self._computing = threading.Lock()  # the statistics' thread and the backward pass

    @property
    def d(self) -> FloatArray | None:
        """phi'(z) of the last training-mode pass; None before one. Computed once, by
        whichever thread reads it first (the analysis' statistics or its backward pass)."""
        if self._d is None and self._h is not None:
            with self._computing:
                if self._d is None and self._h is not None:
                    assert self.z is not None
                    self._d, self._h = self.fn.derivative(self.z, self._h), None
        return self._d

    def forward(self, x: FloatArray, mode: Mode) -> FloatArray:
        h = self.fn.forward(x)
        if mode == "train":
            self.z, self._d, self._h = x, None, h
        return h

    def backward(self, g: FloatArray, parameters: bool = True) -> FloatArray:
        d = self.d
        assert d is not None, "backward before a training-mode forward"
        g *= d
        return g

    def jacobian(self, product: JacobianProduct) -> None:
        d = self.d
        assert d is not None
        product.scale(d, per_sample=True)

    def statistics(self, saturation_derivative: float) -> PhiStatistics:
        """What phi reports, from its last training-mode pass: the moments of its input ``z``,
        E[phi'(z)^2], the share of phi'(z) below ``saturation_derivative`` of phi's largest
        slope (a saturating phi only), the units whose phi' is 0 on every sample, and the mean
        correlation between two samples' inputs z (:func:`sample_correlation`)."""
        d = self.d
        assert self.z is not None, "statistics before a training-mode forward"
        assert d is not None
        fn: ActivationFn = self.fn
        pre = summarise(self.z)
        deriv = summarise_derivative(d, saturation_derivative * fn.max_derivative)
        return PhiStatistics(
            preactivations=Moments(as_float(pre.mean), as_float(pre.std)),
            mean_derivative_sq=as_float(deriv.mean_square),
            saturated_fraction=deriv.below / d.size if fn.saturating else None,
            alive=deriv.alive,
            sample_correlation=sample_correlation(self.z),
        )

    def parameters(self) -> list[Parameter]:
        return []


class DropoutSource(Protocol):
    def keep(self, rate: float, shape: tuple[int, ...], dtype: np.dtype[Any]) -> NDArray[np.bool_]:
        """Which values survive: ``u >= rate`` for uniform ``u`` in [0, 1)."""
        ...


class SharedDropout:
    """Training's source: one stream shared by every layer and step, its uniforms drawn in
    float64 whatever the data's dtype, so one seed drops the same values in every dtype."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def keep(self, rate: float, shape: tuple[int, ...], dtype: np.dtype[Any]) -> NDArray[np.bool_]:
        return self.rng.random(shape) >= rate


def dropout_mask(rate: float, keep: NDArray[np.bool_], dtype: np.dtype[Any]) -> FloatArray:
    """The inverted-dropout multiplier (Srivastava, Hinton, Krizhevsky, Sutskever &
    Salakhutdinov 2014, "Dropout", JMLR 15:1929-1958), as ``torch.nn.functional.dropout`` in
    training mode: ``m = keep / (1 - rate)``, 0 or ``1 / (1 - rate)``, so E[m] = 1 and
    E[m v] = E[v]. With ``keep = u >= rate`` a higher rate drops a superset of the values a
    lower one drops."""
    mask: FloatArray = keep.astype(dtype)
    mask *= dtype.type(1.0 / (1.0 - rate))
    return mask


class Dropout:
    """Inverted dropout ``y = m x`` (:func:`dropout_mask`) in ``"train"`` mode, the identity
    otherwise; backward ``g m``, Jacobian the diagonal ``m`` (each sample's own mask). Draws
    its ``keep`` pattern from ``source``."""

    def __init__(self, rate: float, source: DropoutSource) -> None:
        self.rate = rate
        self.source = source
        self.mask: FloatArray | None = None

    def forward(self, x: FloatArray, mode: Mode) -> FloatArray:
        if mode != "train":
            self.mask = None
            return x
        self.mask = dropout_mask(self.rate, self.source.keep(self.rate, x.shape, x.dtype), x.dtype)
        return x * self.mask  # not in place: a linear phi returns its input

    def backward(self, g: FloatArray, parameters: bool = True) -> FloatArray:
        if self.mask is not None:
            g *= self.mask
        return g

    def jacobian(self, product: JacobianProduct) -> None:
        if self.mask is not None:
            product.scale(self.mask, per_sample=True)

    def parameters(self) -> list[Parameter]:
        return []


class Sequential:
    """Layers applied in order; itself a layer (a block, a residual branch, a network)."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers

    def forward(self, x: FloatArray, mode: Mode) -> FloatArray:
        for layer in self.layers:
            x = layer.forward(x, mode)
        return x

    def backward(self, g: FloatArray, parameters: bool = True) -> FloatArray:
        for layer in reversed(self.layers):
            g = layer.backward(g, parameters)
        return g

    def jacobian(self, product: JacobianProduct) -> None:
        for layer in self.layers:
            layer.jacobian(product)

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]


class Block(Sequential):
    """One layer of the spec: ``a = h_prev W + b``, ``z = BN(a)`` or ``a``, ``u = phi(z)``,
    ``v = BN(u)`` or ``u``, ``h = m v`` (batch norm at one of the two places, ``m`` the dropout
    multiplier). Its parameters are drawn from ``rng``, the layer's own stream
    (:func:`initscope.engine.network.layer_stream`): W, then b; batch norm's gamma and beta
    start at the spec's constants. ``dropout`` is the random source of its dropout mask."""

    def __init__(
        self,
        spec: LayerSpec,
        fan_in: int,
        dtype: np.dtype[Any],
        rng: np.random.Generator,
        dropout: DropoutSource,
    ) -> None:
        bn = spec.batch_norm
        self.spec = spec
        self.init: WeightInit = spec.init
        self.lsuv: LsuvReport | None = None  # what initialise() did, for an LSUV layer
        self.dense = Dense.draw(spec.init, spec.bias, (fan_in, spec.units), dtype, rng)
        self.before = BatchNorm(bn, spec.units, dtype) if bn and bn.placement == "before" else None
        self.activation = Activation(spec.activation)
        self.after = BatchNorm(bn, spec.units, dtype) if bn and bn.placement == "after" else None
        self.dropout = Dropout(spec.dropout, dropout) if spec.dropout > 0 else None
        parts = (self.dense, self.before, self.activation, self.after, self.dropout)
        super().__init__([part for part in parts if part is not None])

    def initialise(self, x: FloatArray) -> LsuvReport | None:
        """The data-dependent part of the initialisation, on the block's input ``x``: LSUV
        (:func:`lsuv`) for an LSUV-initialised layer, rescaling ``W`` in place; None otherwise."""
        if not isinstance(self.init, Lsuv):
            return None
        w, b = self.dense.w.value, self.dense.b.value
        _, _, self.lsuv = lsuv(self.init, self.activation.fn, x, w, b)
        return self.lsuv

    def statistics(self, index: int, h: FloatArray, asked: Asked) -> LayerResult:
        """What the block reports as layer ``index`` after its training-mode forward pass to
        ``h``: the output's moments, histogram, zeros, distinct units and (on request) effective
        rank; phi's statistics (:meth:`Activation.statistics`); the init's sigma_w^2 (for LSUV,
        the rescaled W's own) and sigma_b^2. The gradients are filled in by the backward pass
        (:meth:`Dense.weight_grad_norm`)."""
        spec = self.spec
        fan_in = self.dense.w.value.shape[0]
        phi = self.activation.statistics(asked.saturation_derivative)
        out = summarise(h)
        all_finite = out.non_finite == 0
        distinct: int | None = None  # not assessed on overflowed values
        if all_finite:
            column_means = h.mean(axis=0, dtype=np.float64)
            spread = np.sqrt(max(out.mean_square - float(np.mean(column_means**2)), 0.0))
            distinct = distinct_units(h, phi.alive, spread, max(-out.min, out.max))
        if self.lsuv is None:
            sigma_w2 = float(fan_in * spec.init.variance(fan_in, spec.units))
        else:  # the rescaled W's own variance, not the pre-init's
            sigma_w2 = fan_in * float(np.var(self.dense.w.value, dtype=np.float64))
        return LayerResult(
            index=index,
            fan_in=fan_in,
            units=spec.units,
            activation=self.activation.fn.label,
            init=init_label(spec.init),
            sigma_w2=sigma_w2,
            sigma_b2=float(spec.bias.variance()),
            activations=ActivationStats(
                mean=as_float(out.mean),
                std=as_float(out.std),
                rms=as_float(out.rms),
                min=as_float(out.min),
                max=as_float(out.max),
                zero_fraction=out.zeros / out.size,
                saturated_fraction=phi.saturated_fraction,
                non_finite=out.non_finite,
                histogram=histogram(
                    h, asked.bins, asked.histogram_range or self.histogram_range(out), out
                ),
            ),
            preactivations=phi.preactivations,
            mean_derivative_sq=phi.mean_derivative_sq,
            dead_units=int(np.count_nonzero(~phi.alive)),
            distinct_units=distinct,
            effective_rank=effective_rank(h) if asked.effective_rank and all_finite else None,
            gradients=GradientStats(None, None, None),  # filled in by the backward pass
            sample_correlation=phi.sample_correlation,
            batch_norm=spec.batch_norm,
            dropout=spec.dropout,
            lsuv=self.lsuv,
        )

    def histogram_range(self, out: Summary) -> tuple[float, float]:
        """The histogram's default range: a bounded activation's natural range (widened by
        dropout's 1 / (1 - rate)); with batch norm after phi, or an unbounded phi, the data's."""
        fn: ActivationFn = self.activation.fn
        if not fn.bounded or self.after is not None:
            return data_range(out)
        low, high = fn.natural_range
        scale = 1.0 / (1.0 - self.spec.dropout)
        return (low * scale, high * scale)


def init_label(init: WeightInit) -> str:
    """``scheme(param=value, ...)`` with every parameter, so the label alone says what ran."""
    params = [
        f"{field.name}={getattr(init, field.name)!r}"
        for field in dataclasses.fields(init)
        if field.name != "scheme"
    ]
    return f"{init.scheme}({', '.join(params)})" if params else init.scheme


def output_variance(h: FloatArray) -> float:
    """Var(h) over all samples and units, as the layer statistics report it (std^2); NaN
    when any value is not finite."""
    out = summarise(h)
    return out.std**2 if out.non_finite == 0 else math.nan


@applies_policy
def lsuv(
    init: Lsuv, act: ActivationFn, h_prev: FloatArray, w: FloatArray, b: FloatArray
) -> tuple[FloatArray, FloatArray, LsuvReport]:
    """LSUV (Mishkin & Matas 2016, arXiv:1511.06422) for one layer, rescaling ``w`` in place.

    v = Var(h_prev @ W + b), the pre-activation's (``target="output"``: Var(phi(h_prev @ W +
    b)), the Keras port's), over all samples and units, measured on the plain layer (before
    any batch norm or dropout); while |v - 1| >= tol, at most ``max_iterations`` times:
    W <- W / sqrt(v), and measure v again. Stops early, not converged, when v is 0 or not
    finite (a dead or overflowing layer cannot be rescaled); a bias spread across units wider
    than 1 + tol leaves v out of reach, and the layer stops after ``max_iterations``, not
    converged (:class:`initscope.engine.initializers.Lsuv`). Returns the final pre-activation
    and output; the reported variance is the measured one's.
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
