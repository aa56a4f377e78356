"""Short training runs: mini-batch training of the spec's network on a task, and a check of
the diagnosis made at step 0.

The network is the spec's layers (:mod:`initscope.engine.layers`, built by
:func:`initscope.engine.network.build` from the same per-layer streams as /analyze, so the
network at step 0 is the one /analyze draws) followed by a linear readout of ``classes`` units
with the last layer's weight initialiser and zero bias (the book's ``MultiLayerNet``); LSUV
layers are rescaled on the first training rows, each on the output of the layers before it in
``"probe"`` mode (batch norm on the batch's statistics, no dropout). The loss is the mean
softmax cross-entropy over the batch,

    L = -(1/B) sum_i log softmax(z_i)[y_i],   dL/dz = (softmax(z) - onehot(y)) / B,

plus ``(lambda / 2) sum_l ||W_l||^2`` for weight decay (weights only, not biases, not batch
norm's gamma and beta: the book's rule; its gradient ``lambda W`` is what ``weight_decay`` adds
in PyTorch's optimisers). Reported losses are the cross-entropy alone. A step is a
``"train"``-mode forward (batch statistics, running statistics updated, dropout drawn from one
training stream shared by all layers), the backward pass and the optimiser's update
(:mod:`initscope.training.optimizers`); evaluation runs in ``"eval"`` mode (running
statistics, no dropout).

Data order, dropout masks and the data itself come from streams independent of the network,
so variants trained under one seed see the same batches in the same order.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from initscope import __version__
from initscope.engine.activations import Linear
from initscope.engine.analysis import analyze
from initscope.engine.floating import applies_policy
from initscope.engine.initializers import BiasZeros
from initscope.engine.layers import SharedDropout
from initscope.engine.network import Network, build
from initscope.jobs import (
    AnalysisJob,
    DType,
    LayerSpec,
    NormalInput,
    RandomNormalGradient,
    Thresholds,
)
from initscope.results import Analysis, Comparison, FindingCode, as_float
from initscope.training.datasets import (
    Dataset,
    Digits,
    InlineTask,
    Spirals,
    Teacher,
    make_dataset,
    validation_count,
)
from initscope.training.optimizers import Adam, Momentum, Sgd, Update

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.intp]

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


def build_network(job: TrainJob, x_init: FloatArray) -> Network:
    """The spec's layers and the readout (:func:`initscope.engine.network.build`), LSUV layers
    rescaled on ``x_init``. Each hidden layer keeps its own dropout rate where it has one, else
    gets the job's; all draw their masks from the one training dropout stream."""
    hidden = [dataclasses.replace(spec, dropout=spec.dropout or job.dropout) for spec in job.layers]
    readout = LayerSpec(job.classes, Linear(), job.layers[-1].init, BiasZeros())
    source = SharedDropout(_streams(job.seed)[_DROPOUT])
    network = build(
        [*hidden, readout], job.input_dim, job.seed, np.dtype(job.dtype), lambda _: source
    )
    network.initialise(x_init, "probe")
    return network


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
    network: Network, x: FloatArray, y: IntArray, weight_decay: float
) -> tuple[float, list[float]]:
    """The training loss (cross-entropy plus the L2 term) of one batch after a ``"train"``-mode
    forward pass, filling every parameter's ``grad``; also the RMS of dL/dh_l per spec layer
    (the readout excluded), scaled by the batch size: the RMS of the per-sample gradients."""
    z = network.forward(x, "train")
    loss, g = softmax_cross_entropy(z, y)
    rms: list[float] = []
    readout = network.blocks[-1]
    for block in reversed(network.blocks):
        if block is not readout:
            rms.append(float(np.sqrt(np.mean(np.square(g, dtype=np.float64)))) * len(y))
        g = block.backward(g)
    rms.reverse()
    if weight_decay:
        for p in network.parameters():
            if p.decay:
                assert p.grad is not None
                loss += 0.5 * weight_decay * float(np.sum(np.square(p.value, dtype=np.float64)))
                p.grad += weight_decay * p.value
    return loss, rms


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


def evaluate(network: Network, x: FloatArray, y: IntArray) -> tuple[float | None, float]:
    z = network.forward(x, "eval")
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


@applies_policy
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


@applies_policy
def fit(job: TrainJob, data: Dataset) -> Run:
    """Train on ``data.x_train`` for the job's epochs or steps, evaluating both sets on the
    way; stops after the first epoch whose training loss is not finite (divergence is measured
    and reported, never raised)."""
    order_rng = _streams(job.seed)[_ORDER]
    x_init = data.x_train[:ANALYSIS_ROWS]
    n = len(data.y_train)
    ratios: list[float] = []
    history: list[EpochRecord] = []
    diverged = False
    network = build_network(job, x_init)
    update = Update(job.optimizer, network.parameters())
    history.append(_record(network, data, 0, 0, []))
    step = 0
    for epoch in range(1, job.recorded_epochs + 1):
        order = order_rng.permutation(n)
        grad_rms: list[list[float]] = []
        for first in range(0, n, job.batch_size):
            if step == job.total_steps:
                break
            batch = order[first : first + job.batch_size]
            _, rms = loss_and_gradients(
                network, data.x_train[batch], data.y_train[batch], job.weight_decay
            )
            update.step()
            step += 1
            grad_rms.append(rms)
            if rms[-1] > 0 and math.isfinite(rms[0] / rms[-1]):
                ratios.append(rms[0] / rms[-1])
        history.append(_record(network, data, epoch, step, grad_rms))
        if history[-1].train_loss is None:
            diverged = True
            break
    return Run(tuple(history), tuple(ratios), diverged, step, data)


def _record(
    network: Network, data: Dataset, epoch: int, step: int, grad_rms: list[list[float]]
) -> EpochRecord:
    train_loss, train_acc = evaluate(network, data.x_train, data.y_train)
    val_loss, val_acc = evaluate(network, data.x_val, data.y_val)
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


TrainComparison = Comparison[TrainResult]
