"""Short training runs: mini-batch training of the spec'd network on a task, and a check of
the diagnosis made at step 0.

The network is the spec's dense layers (``a_l = h_{l-1} W_l + b_l``, ``h_l = phi_l(a_l)``,
weights drawn exactly as :func:`initscope.engine.simulation.simulate` draws them, from the same
per-layer streams) followed by a linear readout of ``classes`` units with the last layer's
weight initialiser and zero bias (the book's ``MultiLayerNet``). The loss is the mean softmax
cross-entropy over the batch,

    L = -(1/B) sum_i log softmax(z_i)[y_i],   dL/dz = (softmax(z) - onehot(y)) / B,

plus ``(lambda / 2) sum_l ||W_l||^2`` for weight decay (weights only, not biases: the book's
rule; its gradient ``lambda W`` is what ``weight_decay`` adds in PyTorch's optimisers). Reported
losses are the cross-entropy alone.

Optimisers follow ``torch.optim`` (g: the gradient including the decay term, t: the step):

- SGD: ``p <- p - lr g``;
- momentum (``SGD(momentum=mu)``, no dampening, not Nesterov): ``v <- mu v + g`` (``v = g``
  at t = 1), ``p <- p - lr v``;
- Adam: ``m <- b1 m + (1 - b1) g``, ``s <- b2 s + (1 - b2) g^2``,
  ``p <- p - lr (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)``.

Each layer runs its affine map, then its hooks in order; a hook is an object with
``forward(x, training) -> y`` and ``backward(g) -> g_x`` that may own parameters
(:meth:`parameters`): batch normalisation (:class:`BatchNormHook`, learned ``gamma`` and
``beta``, running statistics out of training) before the activation (between the affine map
and phi) or after it, and inverted dropout after the activation. Weight decay applies to the
weights alone, not to biases, gamma or beta.

Data order, dropout masks and the data itself come from streams independent of the network,
so variants trained under one seed see the same batches in the same order.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field

from initscope import __version__
from initscope.engine.activations import ActivationFn, Linear
from initscope.engine.analysis import analyze
from initscope.engine.initializers import BiasZeros, Lsuv
from initscope.engine.simulation import lsuv, streams
from initscope.jobs import (
    AnalysisJob,
    BatchNorm,
    DType,
    LayerSpec,
    NormalInput,
    RandomNormalGradient,
    Thresholds,
)
from initscope.results import Analysis, FindingCode, as_float
from initscope.training.datasets import (
    Dataset,
    Digits,
    InlineTask,
    Spirals,
    Teacher,
    make_dataset,
    validation_count,
)

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.intp]

_FORBID = ConfigDict(extra="forbid")
LearningRate = Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]
# The streams of the data, the batch order and the dropout masks: SeedSequence((seed, _TAG)),
# whose entropy differs from the layers' SeedSequence(seed).
_TAG = 0x7472_6169
_DATA, _ORDER, _DROPOUT = 0, 1, 2
# Rows the step-0 analysis and LSUV see: the first rows of the (shuffled) training set.
ANALYSIS_ROWS = 256
# Training "moved" when the training loss fell by at least this fraction of its initial value.
MOVED_FRACTION = 0.1
# A gradient finding held when the step-wise ratio was past the threshold in this many steps.
HELD_FRACTION = 0.5


@dataclass(frozen=True)
class Sgd:
    __pydantic_config__ = _FORBID
    name: Literal["sgd"] = "sgd"
    learning_rate: LearningRate = 0.1


@dataclass(frozen=True)
class Momentum:
    __pydantic_config__ = _FORBID
    name: Literal["momentum"] = "momentum"
    learning_rate: LearningRate = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.9


@dataclass(frozen=True)
class Adam:
    __pydantic_config__ = _FORBID
    name: Literal["adam"] = "adam"
    learning_rate: LearningRate = 0.001
    beta1: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.999
    eps: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1e-8


Optimizer = Annotated[Sgd | Momentum | Adam, Field(discriminator="name")]
TaskSpec = Spirals | Teacher | Digits | InlineTask


@dataclass(frozen=True)
class TrainJob:
    """One training run, validated and within the limits: everything the worker needs."""

    input_dim: int
    layers: tuple[LayerSpec, ...]
    task: TaskSpec
    optimizer: Sgd | Momentum | Adam
    batch_size: int
    epochs: int
    steps: int | None  # stop after this many steps (the last epoch then partial); None: epochs
    weight_decay: float
    dropout: float  # inverted dropout after hidden layers without their own rate; 0: off
    seed: int
    dtype: DType
    thresholds: Thresholds

    @property
    def classes(self) -> int:
        return self.task.classes

    @property
    def fans(self) -> list[tuple[int, int]]:
        widths = [self.input_dim, *(x.units for x in self.layers), self.classes]
        return list(itertools.pairwise(widths))

    @property
    def train_rows(self) -> int:
        return self.task.samples - validation_count(self.task)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_rows / self.batch_size)

    @property
    def total_steps(self) -> int:
        full = self.epochs * self.steps_per_epoch
        return full if self.steps is None else min(self.steps, full)

    @property
    def recorded_epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    @property
    def cost(self) -> int:
        """Multiply-adds: 3 per weight per trained row (forward, and two backward products),
        1 per weight per row evaluated (training and validation sets at step 0 and after each
        epoch), plus the step-0 analysis (a forward pass and its two backward products)."""
        per_row = sum(fan_in * fan_out for fan_in, fan_out in self.fans)
        return self.fit_cost + 3 * min(ANALYSIS_ROWS, self.train_rows) * per_row

    @property
    def fit_cost(self) -> int:
        """:attr:`cost` without the step-0 analysis: one trial of a search."""
        per_row = sum(fan_in * fan_out for fan_in, fan_out in self.fans)
        trained = min(self.total_steps * self.batch_size, self.epochs * self.train_rows)
        evaluated = (self.recorded_epochs + 1) * self.task.samples
        return 3 * trained * per_row + evaluated * per_row

    def peak_bytes(self) -> int:
        """Upper estimate of working memory: the data, an evaluation pass over all rows (three
        arrays as wide as the widest layer), and four copies of the parameters (Adam's)."""
        itemsize = 4 if self.dtype == "float32" else 8
        widest = max(self.input_dim, self.classes, *(x.units for x in self.layers))
        params = sum(fan_in * fan_out + fan_out for fan_in, fan_out in self.fans)
        rows = self.task.samples
        return itemsize * (rows * self.input_dim + 3 * rows * widest + 4 * params)


# --- the network ---------------------------------------------------------------------------


class Hook(Protocol):
    """A per-layer transformation with its own backward pass (batch norm, dropout)."""

    def forward(self, x: FloatArray, training: bool) -> FloatArray: ...
    def backward(self, g: FloatArray) -> FloatArray: ...
    def parameters(self) -> list[Parameter]: ...


@dataclass
class Parameter:
    value: FloatArray
    grad: FloatArray
    decay: bool  # weight decay applies (weights, not biases, not batch norm's gamma and beta)


class Dropout:
    """Inverted dropout (Srivastava et al. 2014): in training ``y = x m / (1 - p)`` with
    ``m ~ Bernoulli(1 - p)`` per value, from the shared dropout stream; identity otherwise."""

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        self.rate = rate
        self.rng = rng
        self.mask: FloatArray | None = None

    def forward(self, x: FloatArray, training: bool) -> FloatArray:
        if not training:
            self.mask = None
            return x
        keep = self.rng.random(x.shape, dtype=x.dtype) >= self.rate
        self.mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.rate)
        return x * self.mask

    def backward(self, g: FloatArray) -> FloatArray:
        return g if self.mask is None else g * self.mask

    def parameters(self) -> list[Parameter]:
        return []


class BatchNormHook:
    """Batch normalisation with learned ``gamma`` and ``beta`` per unit (Ioffe & Szegedy 2015,
    arXiv:1502.03167), ``torch.nn.BatchNorm1d``'s rules. In training, the batch statistics of
    :func:`initscope.engine.simulation.batch_norm` (biased variance, ``eps`` inside the root):

        xhat = (x - mu_B) / sqrt(sigma_B^2 + eps),   y = gamma xhat + beta,

    and the running estimates move by ``momentum`` = 0.1: ``mean <- 0.9 mean + 0.1 mu_B``,
    ``var <- 0.9 var + 0.1 sigma_B^2 N / (N - 1)`` (the unbiased batch variance; a batch of
    one row, whose variance is undefined, leaves them as they are). Out of training the
    running estimates (0 and 1 at first) replace the batch's, so a row's output does not
    depend on the other rows. Backward (training mode, the statistics differentiated):

        dx = (gamma / sigma) / N (N dy - sum dy - xhat sum(dy xhat)),
        dgamma = sum(dy xhat),   dbeta = sum(dy),

    sums over the batch, per unit. ``gamma`` and ``beta`` start at the spec's constants and
    carry no weight decay."""

    MOMENTUM = 0.1

    def __init__(self, spec: BatchNorm, units: int, dtype: np.dtype[Any]) -> None:
        self.gamma = Parameter(np.full(units, spec.gamma, dtype), np.zeros(units, dtype), False)
        self.beta = Parameter(np.full(units, spec.beta, dtype), np.zeros(units, dtype), False)
        self.eps = dtype.type(spec.eps)
        self.running_mean = np.zeros(units, dtype)
        self.running_var = np.ones(units, dtype)
        self._xhat: FloatArray | None = None
        self._inv_sigma: FloatArray | None = None

    def normalise(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``xhat``, ``1 / sigma``, ``mu`` and the biased variance of the batch ``x``."""
        mu = x.mean(axis=0)
        centred = x - mu
        var = np.mean(centred * centred, axis=0)
        inv_sigma = 1.0 / np.sqrt(var + self.eps)
        centred *= inv_sigma
        return centred, inv_sigma, mu, var

    def forward(self, x: FloatArray, training: bool) -> FloatArray:
        if not training:
            self._xhat = self._inv_sigma = None
            xhat: FloatArray = (x - self.running_mean) / np.sqrt(self.running_var + self.eps)
            return xhat * self.gamma.value + self.beta.value
        xhat, inv_sigma, mu, var = self.normalise(x)
        n = len(x)
        if n > 1:
            m = x.dtype.type(self.MOMENTUM)
            self.running_mean *= 1 - m
            self.running_mean += m * mu
            self.running_var *= 1 - m
            self.running_var += m * var * x.dtype.type(n / (n - 1))
        self._xhat, self._inv_sigma = xhat, inv_sigma
        return xhat * self.gamma.value + self.beta.value

    def probe(self, x: FloatArray) -> FloatArray:
        """The training-mode output on ``x`` with nothing stored or updated (LSUV's pass)."""
        xhat, *_ = self.normalise(x)
        return xhat * self.gamma.value + self.beta.value

    def backward(self, g: FloatArray) -> FloatArray:
        assert self._xhat is not None
        assert self._inv_sigma is not None
        xhat = self._xhat
        np.sum(g * xhat, axis=0, out=self.gamma.grad)
        np.sum(g, axis=0, out=self.beta.grad)
        n = len(g)
        dx: FloatArray = n * g - self.beta.grad - xhat * self.gamma.grad
        dx *= self.gamma.value * self._inv_sigma / n
        return dx

    def parameters(self) -> list[Parameter]:
        return [self.gamma, self.beta]


class Dense:
    """``h = post(phi(pre(x W + b)))``: the ``pre`` hooks (batch norm before the activation)
    between the affine map and phi, the ``hooks`` after phi (batch norm after it, then
    dropout); keeps what its backward pass needs."""

    def __init__(
        self,
        w: FloatArray,
        b: FloatArray,
        activation: ActivationFn,
        hooks: list[Hook],
        pre: list[Hook] | None = None,
    ) -> None:
        self.w = Parameter(w, np.zeros_like(w), decay=True)
        self.b = Parameter(b, np.zeros_like(b), decay=False)
        self.activation = activation
        self.pre: list[Hook] = pre or []
        self.hooks = hooks
        self._x: FloatArray | None = None
        self._d: FloatArray | None = None

    def forward(self, x: FloatArray, training: bool) -> FloatArray:
        a: FloatArray = x @ self.w.value
        a += self.b.value
        for hook in self.pre:
            a = hook.forward(a, training)
        h = self.activation.forward(a)
        if training:
            self._x, self._d = x, self.activation.derivative(a, h)
        for hook in self.hooks:
            h = hook.forward(h, training)
        return h

    def probe(self, x: FloatArray) -> FloatArray:
        """The output on ``x`` with batch norm on the batch's statistics and no dropout, nothing
        stored: what :func:`initscope.engine.simulation.simulate` passes to the next layer's LSUV
        (there with its dropout mask)."""

        def apply(hooks: list[Hook], v: FloatArray) -> FloatArray:
            for hook in hooks:
                v = hook.probe(v) if isinstance(hook, BatchNormHook) else v
            return v

        return apply(
            self.hooks, self.activation.forward(apply(self.pre, x @ self.w.value + self.b.value))
        )

    def backward(self, g: FloatArray) -> FloatArray:
        """``g = dL/dh`` of this layer's output; fills the gradients, returns dL/dx."""
        assert self._x is not None
        assert self._d is not None
        for hook in reversed(self.hooks):
            g = hook.backward(g)
        delta: FloatArray = g * self._d
        for hook in reversed(self.pre):
            delta = hook.backward(delta)
        np.matmul(self._x.T, delta, out=self.w.grad)
        np.sum(delta, axis=0, out=self.b.grad)
        return delta @ self.w.value.T

    def parameters(self) -> list[Parameter]:
        hooks = [*self.pre, *self.hooks]
        return [self.w, self.b, *(p for hook in hooks for p in hook.parameters())]


def build_network(job: TrainJob, x_init: FloatArray) -> list[Dense]:
    """The spec's layers and the readout, drawn from the per-layer streams of
    :func:`initscope.engine.simulation.streams` (so layer l's weights are the ones /analyze draws
    for the same seed); LSUV layers are rescaled on ``x_init``. Each hidden layer gets its batch
    norm (before or after phi) and its dropout: the layer's own rate where it has one, else
    the job's."""
    specs = [*job.layers, LayerSpec(job.classes, Linear(), job.layers[-1].init, BiasZeros())]
    rngs = streams(job.seed, len(specs))
    dropout_rng = _streams(job.seed)[_DROPOUT]
    dtype = np.dtype(job.dtype)
    layers: list[Dense] = []
    h = x_init
    for index, (spec, (fan_in, fan_out)) in enumerate(zip(specs, job.fans, strict=True)):
        rng = rngs[2 + index]  # simulation's _FIRST_LAYER_STREAM
        w = spec.init.sample(rng, fan_in, fan_out, dtype)
        b = spec.bias.sample(rng, fan_out, dtype)
        if isinstance(spec.init, Lsuv):
            lsuv(spec.init, spec.activation, h, w, b)  # rescales w in place
        pre: list[Hook] = []
        hooks: list[Hook] = []
        if spec.batch_norm is not None:
            bn = BatchNormHook(spec.batch_norm, fan_out, dtype)
            (pre if spec.batch_norm.placement == "before" else hooks).append(bn)
        rate = spec.dropout or (job.dropout if index < len(job.layers) else 0.0)
        if rate:
            hooks.append(Dropout(rate, dropout_rng))
        layer = Dense(w, b, spec.activation, hooks, pre)
        h = layer.probe(h)
        layers.append(layer)
    return layers


def forward(layers: list[Dense], x: FloatArray, training: bool) -> list[FloatArray]:
    """Every layer's output, the logits last."""
    outputs = []
    for layer in layers:
        x = layer.forward(x, training)
        outputs.append(x)
    return outputs


def softmax_cross_entropy(z: FloatArray, y: IntArray) -> tuple[float, FloatArray]:
    """Mean cross-entropy of logits ``z`` (B, C) against labels ``y`` (B,), and dL/dz."""
    shifted = z - z.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y], dtype=np.float64))
    p = exp / total
    p[rows, y] -= 1
    p /= len(y)
    return loss, p


def loss_and_gradients(
    layers: list[Dense], x: FloatArray, y: IntArray, weight_decay: float, training: bool = True
) -> tuple[float, list[float]]:
    """The training loss (cross-entropy plus the L2 term) of one batch, filling every
    parameter's ``grad``; also the RMS of dL/dh_l per spec layer (the readout excluded),
    scaled by the batch size: the RMS of the per-sample gradients."""
    z = forward(layers, x, training)[-1]
    loss, g = softmax_cross_entropy(z, y)
    rms: list[float] = []
    for layer in reversed(layers):
        if layer is not layers[-1]:
            rms.append(float(np.sqrt(np.mean(np.square(g, dtype=np.float64)))) * len(y))
        g = layer.backward(g)
    rms.reverse()
    if weight_decay:
        for layer in layers:
            loss += 0.5 * weight_decay * float(np.sum(np.square(layer.w.value, dtype=np.float64)))
            layer.w.grad += weight_decay * layer.w.value
    return loss, rms


class Update:
    """The optimiser's state and step, PyTorch's rules (module docstring)."""

    def __init__(self, optimizer: Sgd | Momentum | Adam, params: list[Parameter]) -> None:
        self.optimizer = optimizer
        self.params = params
        self.t = 0
        self.state = [
            (np.zeros_like(p.value), np.zeros_like(p.value))
            if not isinstance(optimizer, Sgd)
            else None
            for p in params
        ]

    def step(self) -> None:
        self.t += 1
        opt = self.optimizer
        lr = opt.learning_rate
        for p, state in zip(self.params, self.state, strict=True):
            if isinstance(opt, Sgd):
                p.value -= lr * p.grad
            elif isinstance(opt, Momentum):
                assert state is not None
                v = state[0]
                v *= opt.momentum
                v += p.grad
                p.value -= lr * v
            else:
                assert state is not None
                m, s = state
                m *= opt.beta1
                m += (1 - opt.beta1) * p.grad
                s *= opt.beta2
                s += (1 - opt.beta2) * np.square(p.grad)
                m_hat_scale = lr / (1 - opt.beta1**self.t)
                denom = np.sqrt(s / (1 - opt.beta2**self.t))
                denom += opt.eps
                p.value -= m_hat_scale * m / denom


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 0: before any step
    steps: int  # steps taken so far
    train_loss: float | None  # mean cross-entropy over the whole training set, no dropout
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float
    grad_rms: tuple[float | None, ...]  # per spec layer: RMS over this epoch's steps; () at 0


@dataclass(frozen=True)
class Claim:
    claim: str
    held: bool
    evidence: str


@dataclass(frozen=True)
class DiagnosisCheck:
    """The step-0 diagnosis against what training did."""

    verdict: str
    predicted: tuple[FindingCode, ...]
    first_to_last_at_init: float | None
    vanishing_steps: float  # fraction of steps with layer-1 / last gradient RMS below threshold
    exploding_steps: float
    median_first_to_last: float | None
    loss_drop: float | None  # 1 - final training loss / initial training loss
    moved: bool
    claims: tuple[Claim, ...]


@dataclass(frozen=True)
class TrainResult:
    history: tuple[EpochRecord, ...]
    check: DiagnosisCheck
    diverged: bool
    steps: int
    train_rows: int
    val_rows: int
    classes: int
    chance_accuracy: float  # the largest class' share of the validation set
    seed: int
    elapsed_ms: float
    version: str = field(default=__version__)


def _streams(seed: int) -> list[np.random.Generator]:
    children = np.random.SeedSequence((seed, _TAG)).spawn(3)
    return [np.random.default_rng(child) for child in children]


def dataset(job: TrainJob) -> Dataset:
    return make_dataset(job.task, _streams(job.seed)[_DATA], job.dtype)


def evaluate(layers: list[Dense], x: FloatArray, y: IntArray) -> tuple[float | None, float]:
    z = forward(layers, x, training=False)[-1]
    loss, _ = softmax_cross_entropy(z, y)
    return as_float(loss), float(np.mean(np.argmax(z, axis=1) == y))


def analysis_job(job: TrainJob, x_init: FloatArray) -> AnalysisJob:
    """The /analyze job of the spec's network on the first training rows."""
    return AnalysisJob(
        input_dim=job.input_dim,
        layers=job.layers,
        samples=len(x_init),
        distribution=NormalInput(),
        data=tuple(tuple(float(v) for v in row) for row in x_init),
        bins=30,
        histogram_range=None,
        gradient=RandomNormalGradient(),
        thresholds=job.thresholds,
        seed=job.seed,
        dtype=job.dtype,
        theory=False,
    )


@dataclass(frozen=True)
class Run:
    history: tuple[EpochRecord, ...]
    ratios: tuple[float, ...]  # per step: RMS(dL/dh_1) / RMS(dL/dh_L), the finite ones
    diverged: bool
    steps: int
    data: Dataset


def train(job: TrainJob) -> TrainResult:
    """Top-level and picklable: what the process pool runs for /train: the step-0 analysis,
    the run, and the check of one against the other."""
    start = time.perf_counter()
    data = dataset(job)
    initial = analyze(analysis_job(job, data.x_train[:ANALYSIS_ROWS]))
    run = fit(job, data)
    counts = np.bincount(data.y_val, minlength=data.classes)
    return TrainResult(
        history=run.history,
        check=check_diagnosis(initial, run, job.thresholds),
        diverged=run.diverged,
        steps=run.steps,
        train_rows=len(data.y_train),
        val_rows=len(data.y_val),
        classes=data.classes,
        chance_accuracy=float(counts.max() / counts.sum()),
        seed=job.seed,
        elapsed_ms=round((time.perf_counter() - start) * 1e3, 3),
    )


def fit(job: TrainJob, data: Dataset) -> Run:
    """Train on ``data.x_train`` for the job's epochs or steps, evaluating both sets on the
    way; stops after the first epoch whose training loss is not finite."""
    order_rng = _streams(job.seed)[_ORDER]
    x_init = data.x_train[:ANALYSIS_ROWS]
    n = len(data.y_train)
    ratios: list[float] = []
    history: list[EpochRecord] = []
    diverged = False
    with np.errstate(all="ignore"):  # divergence is measured and reported, never raised
        layers = build_network(job, x_init)
        update = Update(job.optimizer, [p for layer in layers for p in layer.parameters()])
        history.append(_record(layers, data, 0, 0, []))
        step = 0
        for epoch in range(1, job.recorded_epochs + 1):
            order = order_rng.permutation(n)
            grad_rms: list[list[float]] = []
            for first in range(0, n, job.batch_size):
                if step == job.total_steps:
                    break
                batch = order[first : first + job.batch_size]
                _, rms = loss_and_gradients(
                    layers, data.x_train[batch], data.y_train[batch], job.weight_decay
                )
                update.step()
                step += 1
                grad_rms.append(rms)
                if rms[-1] > 0 and math.isfinite(rms[0] / rms[-1]):
                    ratios.append(rms[0] / rms[-1])
            history.append(_record(layers, data, epoch, step, grad_rms))
            if history[-1].train_loss is None:
                diverged = True
                break
    return Run(tuple(history), tuple(ratios), diverged, step, data)


def _record(
    layers: list[Dense], data: Dataset, epoch: int, step: int, grad_rms: list[list[float]]
) -> EpochRecord:
    train_loss, train_acc = evaluate(layers, data.x_train, data.y_train)
    val_loss, val_acc = evaluate(layers, data.x_val, data.y_val)
    per_layer: tuple[float | None, ...] = ()
    if grad_rms:
        squares = np.square(np.asarray(grad_rms, dtype=np.float64))
        per_layer = tuple(as_float(v) for v in np.sqrt(squares.mean(axis=0)))
    return EpochRecord(epoch, step, train_loss, train_acc, val_loss, val_acc, per_layer)


def check_diagnosis(initial: Analysis, run: Run, thresholds: Thresholds) -> DiagnosisCheck:
    """Did the step-0 diagnosis hold? Gradient findings against the step-wise ratio
    RMS(dL/dh_1) / RMS(dL/dh_L); the verdict against whether the training loss moved."""
    diagnosis = initial.diagnosis
    predicted = tuple(f.code for f in diagnosis.findings)
    history, ratios, steps = run.history, run.ratios, run.steps
    total = max(steps, 1)
    low, high = thresholds.vanishing_gradient_ratio, thresholds.exploding_gradient_ratio
    vanishing = sum(r < low for r in ratios) / total
    exploding = sum(r > high for r in ratios) / total
    median = float(np.median(ratios)) if ratios else None
    first, last = history[0].train_loss, history[-1].train_loss
    drop = 1 - last / first if first and last is not None else None
    moved = drop is not None and drop >= MOVED_FRACTION
    at_init = initial.gradient_decay.first_to_last
    init_text = f"{at_init:.3g}" if at_init is not None else "undefined"
    claims: list[Claim] = []
    if "vanishing_gradients" in predicted:
        claims.append(
            Claim(
                "vanishing_gradients",
                vanishing >= HELD_FRACTION,
                f"vanishing gradients predicted (layer-1 / last gradient RMS {init_text} at "
                f"step 0); during training layer 1's gradient stayed below {low:g} of the "
                f"last layer's for {vanishing:.0%} of {steps} steps",
            )
        )
    if "exploding_gradients" in predicted:
        claims.append(
            Claim(
                "exploding_gradients",
                exploding >= HELD_FRACTION,
                f"exploding gradients predicted (layer-1 / last gradient RMS {init_text} at "
                f"step 0); during training layer 1's gradient stayed above {high:g} times the "
                f"last layer's for {exploding:.0%} of {steps} steps",
            )
        )
    drop_text = f"{drop:.0%}" if drop is not None else "an undefined fraction (not finite)"
    if diagnosis.verdict == "healthy":
        claims.append(
            Claim(
                "healthy",
                moved,
                f"no problem predicted; the training loss fell by {drop_text} "
                f"(it trains when it falls by at least {MOVED_FRACTION:.0%})",
            )
        )
    else:
        claims.append(
            Claim(
                diagnosis.verdict,
                not moved,
                f"{', '.join(predicted)} predicted; the training loss fell by {drop_text} "
                f"(the prediction holds when it falls by less than {MOVED_FRACTION:.0%})",
            )
        )
    return DiagnosisCheck(
        verdict=diagnosis.verdict,
        predicted=predicted,
        first_to_last_at_init=at_init,
        vanishing_steps=vanishing,
        exploding_steps=exploding,
        median_first_to_last=median,
        loss_drop=drop,
        moved=moved,
        claims=tuple(claims),
    )


@dataclass(frozen=True)
class TrainVariant:
    name: str
    result: TrainResult


@dataclass(frozen=True)
class TrainComparison:
    variants: tuple[TrainVariant, ...]
