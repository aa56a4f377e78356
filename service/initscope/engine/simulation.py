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
``(1/n) h_{l-1}^T delta_l`` and ``update_ratio`` that norm over ``||W_l||_F``.

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
before them (Mishkin & Matas 2016, :func:`initscope.engine.layers.lsuv`). The Jacobian
spectrum (Pennington et al. 2017) is that of each sample with the batch statistics held fixed
and the sample's own dropout mask (:func:`initscope.engine.layers.jacobians`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from initscope.engine import cores
from initscope.engine.floating import applies_policy, non_finite_policy
from initscope.engine.layers import Asked, Block, jacobians
from initscope.engine.network import (
    LayerDropout,
    Network,
    draw_block,
    gradient_stream,
    input_stream,
)
from initscope.engine.statistics import data_range, histogram, rms, summarise
from initscope.jobs import AnalysisJob, NormalInput, OnesGradient
from initscope.results import (
    GradientStats,
    JacobianSpectrum,
    LayerResult,
    Simulation,
    as_float,
)

FloatArray = NDArray[np.floating[Any]]
T = TypeVar("T")


def make_input(job: AnalysisJob, rng: np.random.Generator) -> FloatArray:
    """The input rows, drawn in float64 and cast to the job's dtype (one seed, one input in
    every dtype), or the request's own."""
    if job.data is not None:
        return np.asarray(job.data, dtype=job.dtype)
    shape = (job.samples, job.input_dim)
    dist = job.distribution
    if isinstance(dist, NormalInput):
        x = rng.standard_normal(shape)
        x *= dist.std
        x += dist.mean
    else:
        x = rng.random(shape)
        x *= dist.high - dist.low
        x += dist.low
    return x.astype(job.dtype, copy=False)


@applies_policy
def make_upstream(job: AnalysisJob, rng: np.random.Generator) -> FloatArray:
    """dL/dh_L, drawn in float64 and cast to the job's dtype."""
    shape = (job.samples, job.layers[-1].units)
    if isinstance(job.gradient, OnesGradient):
        return np.ones(shape, dtype=job.dtype)
    return rng.standard_normal(shape).astype(job.dtype, copy=False)


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
    spread = summarise(logs)
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
        log10_histogram=histogram(logs, _JACOBIAN_BINS, data_range(spread), spread),
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
    return Network([drawn.result() for drawn in _draw_blocks(job, None)])


def _draw_blocks(job: AnalysisJob, helper: ThreadPoolExecutor | None) -> list[Future[Block]]:
    """:func:`analysis_network`'s layers, drawn in ``helper`` in order (or here)."""
    dtype, seed = np.dtype(job.dtype), job.seed
    layers = zip(job.layers, job.fans, strict=True)
    return [
        _start(helper, draw_block, spec, fan_in, dtype, seed, index, LayerDropout(seed, index))
        for index, (spec, (fan_in, _)) in enumerate(layers, 1)
    ]


_statistics_thread: ThreadPoolExecutor | None = None
_statistics_lock = threading.Lock()


def _statistics_executor() -> ThreadPoolExecutor:
    """The one thread that draws and measures while the caller runs the passes (created on
    first use, in the process that simulates: a worker, never the forkserver)."""
    global _statistics_thread
    with _statistics_lock:
        if _statistics_thread is None:
            _statistics_thread = ThreadPoolExecutor(1, thread_name_prefix="initscope-stats")
        return _statistics_thread


def _start(helper: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` in ``helper``, or here and now when there is none."""
    if helper is not None:
        return helper.submit(fn, *args)
    done: Future[T] = Future()
    done.set_result(fn(*args))
    return done


def _measure(block: Block, index: int, h: FloatArray, asked: Asked) -> LayerResult:
    """Layer ``index``'s statistics (and phi'(z), computed on first read), then z is freed."""
    with non_finite_policy():  # NumPy's error state is per thread
        result = block.statistics(index, h, asked)
    block.activation.z = None  # phi's input is not needed past the statistics
    return result


# Layers whose statistics may still be pending while the passes go on, each holding its phi
# input z (counted in :meth:`AnalysisJob.peak_bytes`).
STATISTICS_BACKLOG = 3


class _Measurements:
    """The layers' statistics, in ``helper`` (or inline without one), in layer order, at most
    :data:`STATISTICS_BACKLOG` pending. :meth:`collect` takes back the newest ones the helper
    has not started and runs them in the calling thread, so both threads finish together."""

    def __init__(self, helper: ThreadPoolExecutor | None, asked: Asked) -> None:
        self.helper, self.asked = helper, asked
        self.done: list[LayerResult] = []
        self.pending: deque[tuple[Future[LayerResult], tuple[Block, int, FloatArray]]] = deque()

    def add(self, block: Block, index: int, h: FloatArray) -> None:
        if len(self.pending) == STATISTICS_BACKLOG:
            self.done.append(self.pending.popleft()[0].result())
        future = _start(self.helper, _measure, block, index, h, self.asked)
        self.pending.append((future, (block, index, h)))

    def collect(self) -> list[LayerResult]:
        taken: list[LayerResult] = []
        for future, args in reversed(self.pending):
            if not future.cancel():  # started: so are the older ones
                break
            taken.append(_measure(*args, self.asked))
        rest = [future.result() for future, _ in self.pending if not future.cancelled()]
        return self.done + rest + taken[::-1]


@applies_policy
def simulate(job: AnalysisJob, *, overlap: bool | None = None) -> Simulation:
    """Run the forward and backward pass of ``job`` and measure every layer.

    With more than one CPU (:mod:`initscope.engine.cores`) a second thread draws the layers'
    weights, in order, and the upstream gradient while this one draws the input and runs the
    forward pass as each layer's weights arrive; then it measures the layers, in order,
    while this one runs the forward and the backward pass; when the passes are done,
    this thread takes the layers the other has not started (:class:`_Measurements`). NumPy
    releases the GIL in its loops, its random fills and BLAS, so they overlap. phi'(z) is
    computed once, by whichever thread reads it first; nothing else is shared but read-only
    arrays (layer l + 1 reads h_l, the backward pass reads h and phi'(z), nothing writes
    them). With a single CPU everything runs inline, in order (``overlap`` None: decided so;
    True/False: forced). The results are the sequential ones, bit for bit: every value comes
    from the same operations on the same arrays, whichever thread runs them.
    """
    if overlap is None:
        overlap = cores.follow() != 1
    helper = _statistics_executor() if overlap else None
    drawn = _draw_blocks(job, helper)
    upstream = _start(helper, make_upstream, job, gradient_stream(job.seed))
    x = h = make_input(job, input_stream(job.seed))
    asked = Asked(
        bins=job.bins,
        histogram_range=job.histogram_range,
        saturation_derivative=job.thresholds.saturation_derivative,
        effective_rank=job.effective_rank,
    )
    measurements = _Measurements(helper, asked)
    for index, block in enumerate(future.result() for future in drawn):
        block.initialise(h)
        h = block.forward(h, "train")
        measurements.add(block, index + 1, h)
    network = Network([future.result() for future in drawn])

    jacobian: JacobianSpectrum | None = None
    if job.jacobian_count > 0:
        jacobian = jacobian_spectrum(jacobians(network, job.jacobian_count))

    g = upstream.result()
    grad_rms: list[float] = []
    weight_norms: list[float] = []
    n = job.samples
    for block in reversed(network.blocks):
        grad_rms.append(rms(g))
        g = block.backward(g, parameters=False)  # in place where it can: g is ours
        weight_norms.append(block.dense.weight_grad_norm(n))
    sizes = [block.dense.weight_norm() for block in network.blocks]
    input_grad_rms = rms(g)
    forward = measurements.collect()
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
                update_ratio=as_float(norm / size) if size > 0 else None,
            ),
        )
        for result, out, norm, size in zip(forward, grad_rms, weight_norms, sizes, strict=True)
    )
    return Simulation(
        samples=n,
        input_rms=rms(x),
        input_grad_rms=as_float(input_grad_rms),
        layers=layers,
        jacobian=jacobian,
    )
