"""Phase diagrams: one metric over a grid of two hyperparameters, simulated and predicted.

Each cell is a network of ``depth`` identical layers of ``width`` units with
``W ~ N(0, sigma_w2 / width)`` and ``b ~ N(0, sigma_b2)``, fed N(0, 1) inputs of dimension
``width``: the setting of Poole et al. (2016) and Schoenholz et al. (2017), where
mean-field theory predicts the edge of chaos chi_1 = 1 (the book's section 5 on finding good
hyperparameters, applied to initialisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from initscope.engine import theory
from initscope.engine.activations import Activation, ActivationFn
from initscope.engine.diagnosis import diagnose
from initscope.engine.floating import applies_policy
from initscope.engine.initializers import BiasNormal, BiasZeros, Normal
from initscope.engine.simulation import simulate
from initscope.jobs import AnalysisJob, LayerSpec, NormalInput, RandomNormalGradient, Thresholds
from initscope.results import as_float

SweepParam = Literal["sigma_w2", "std", "sigma_b2", "depth", "width"]
Metric = Literal["first_to_last", "last_std", "chi_1", "xi_c", "verdict"]
Value = float | str | None  # a number, or for "verdict" a finding code / a phase
Source = Literal["simulation", "theory", "both"]


@dataclass(frozen=True)
class Part:
    """Part ``index`` of ``count`` of a job split by the client; ``request`` names the whole
    request (a digest of it without its part), so parts of different jobs are not merged."""

    index: int
    count: int
    request: str


def held(total: int, part: Part | None) -> tuple[int, ...]:
    """The indices (of rows, trials) ``part`` holds: ``index``, ``index + count``, ..."""
    return tuple(range(total)) if part is None else tuple(range(part.index, total, part.count))


@dataclass(frozen=True)
class Cell:
    """One network of the grid, in the user's units and in mean-field units."""

    sigma_w2: float
    sigma_b2: float
    depth: int
    width: int


@dataclass(frozen=True)
class SweepJob:
    activation: Activation
    depth: int
    width: int
    sigma_w2: float
    sigma_b2: float
    samples: int
    seed: int
    x_param: SweepParam
    x_values: tuple[float, ...]
    y_param: SweepParam
    y_values: tuple[float, ...]
    metric: Metric
    source: Source
    part: Part | None = None  # (index, count, request digest): rows index, index + count, ...

    @property
    def rows(self) -> tuple[int, ...]:
        """The rows this job computes: all of them, or its part's share, strided so that the
        parts differ by at most one row and share rows of growing cost (y = depth or width)."""
        return held(len(self.y_values), self.part)

    def cell(self, x: float, y: float) -> Cell:
        values: dict[str, float] = {
            "sigma_w2": self.sigma_w2,
            "sigma_b2": self.sigma_b2,
            "depth": self.depth,
            "width": self.width,
        }
        for param, value in ((self.x_param, x), (self.y_param, y)):
            values[param] = value
        width = int(values["width"])
        for param, value in ((self.x_param, x), (self.y_param, y)):
            if param == "std":  # a scheme's std: sigma_w^2 = fan_in * std^2
                values["sigma_w2"] = width * value * value
        return Cell(values["sigma_w2"], values["sigma_b2"], int(values["depth"]), width)

    def cells(self) -> list[list[Cell]]:
        """Rows over y, columns over x."""
        return [[self.cell(x, y) for x in self.x_values] for y in self.y_values]

    @property
    def macs(self) -> int:
        """Multiply-adds of the simulated cells (0 when only theory is asked for)."""
        if self.source == "theory":
            return 0
        cells = self.cells()
        return sum(
            self.samples * cell.depth * cell.width * cell.width
            for i in self.rows
            for cell in cells[i]
        )


@dataclass(frozen=True)
class SweepResult:
    job: SweepJob
    simulation: tuple[tuple[Value, ...], ...] | None  # [y][x]
    theory: tuple[tuple[Value, ...], ...] | None
    critical: tuple[tuple[float, float], ...] | None  # (sigma_w2, sigma_b2) on chi_1 = 1
    critical_note: str  # "" in a part without row 0 (that part draws the curve)


def cell_job(job: SweepJob, cell: Cell) -> AnalysisJob:
    """The analysis job behind one simulated cell."""
    weight = Normal(std=math.sqrt(cell.sigma_w2 / cell.width))
    bias = BiasNormal(std=math.sqrt(cell.sigma_b2)) if cell.sigma_b2 > 0 else BiasZeros()
    layer = LayerSpec(cell.width, job.activation, weight, bias)
    return AnalysisJob(
        input_dim=cell.width,
        layers=(layer,) * cell.depth,
        samples=job.samples,
        distribution=NormalInput(),
        data=None,
        bins=10,
        histogram_range=None,
        gradient=RandomNormalGradient(),
        thresholds=Thresholds(),
        seed=job.seed,
        dtype="float32",
        effective_rank=False,
    )


def simulated(job: SweepJob, cell: Cell) -> Value:
    if job.metric == "verdict":  # the most severe finding of the cell's diagnosis
        analysis_job = cell_job(job, cell)
        return diagnose(analysis_job, simulate(analysis_job)).verdict
    if job.metric in ("chi_1", "xi_c"):
        # Measured chi_1: the geometric mean of the per-layer gradient factor squared over the
        # deeper half of the layers (equal widths: E[g_{l-1}^2] / E[g_l^2] = chi_1(q^l), and
        # q^l approaches q* with depth); xi_c from it in the ordered phase.
        sim = simulate(cell_job(job, cell))
        rms = [x.gradients.output_grad_rms for x in sim.layers]
        rms = rms[len(rms) // 2 - 1 :]  # the deeper half: q has settled near q* there
        steps = [b / a for a, b in zip(rms[1:], rms[:-1], strict=True) if a and b]
        if not steps:
            return None
        chi = float(np.exp(np.mean(np.log(np.square(steps)))))
        if job.metric == "chi_1":
            return as_float(chi)
        return as_float(-1.0 / math.log(chi)) if chi < 1 else None
    sim = simulate(cell_job(job, cell))
    if job.metric == "first_to_last":
        return sim.layers[0].gradients.relative_to_last
    return sim.layers[-1].activations.std


def predicted(job: SweepJob, cell: Cell) -> Value:
    act: ActivationFn = job.activation
    if job.metric == "verdict":  # theory's counterpart of a verdict: the phase at q*
        chi = theory.chi_1_at_fixed_point(act, cell.sigma_w2, cell.sigma_b2)
        return theory.phase(chi) if math.isfinite(chi) else None
    if job.metric in ("chi_1", "xi_c"):
        q_star = theory.fixed_point(act, cell.sigma_w2, cell.sigma_b2)
        if not math.isfinite(q_star):
            return None
        if job.metric == "chi_1":
            return as_float(theory.chi_1(act, q_star, cell.sigma_w2))
        return as_float(theory.depth_scales(act, cell.sigma_w2, cell.sigma_b2)[1])
    layers = [(act, cell.sigma_w2, cell.sigma_b2, cell.width)] * cell.depth
    predictions = theory.propagate(layers, q0=1.0, input_dim=cell.width)
    if job.metric == "first_to_last":
        ratio = math.prod(x.gradient_ratio for x in predictions[1:])
        return as_float(ratio)
    last = predictions[-1]
    mean = theory.expect(lambda a: act.forward(a), last.q)
    return as_float(math.sqrt(max(last.second_moment - mean * mean, 0.0)))


def critical_curve(job: SweepJob) -> tuple[tuple[tuple[float, float], ...] | None, str]:
    """The edge of chaos chi_1(q*) = 1 in the (sigma_w2, sigma_b2) plane, where it applies."""
    axes = {job.x_param, job.y_param}
    if not axes <= {"sigma_w2", "std", "sigma_b2"} or "sigma_b2" not in axes:
        return None, "the edge of chaos is a curve in the (sigma_w2, sigma_b2) plane; not drawn"
    b_values = job.x_values if job.x_param == "sigma_b2" else job.y_values
    grid = np.linspace(min(b_values), max(b_values), 25)
    points = []
    for sigma_b2 in grid:
        sigma_w2 = theory.critical_sigma_w2(job.activation, float(sigma_b2))
        if sigma_w2 is not None:
            points.append((sigma_w2, float(sigma_b2)))
    if not points:
        return None, f"{job.activation.name} has no chi_1 = 1 point in this range of sigma_b2"
    return tuple(points), "chi_1(q*) = 1 (Schoenholz et al. 2017)"


@dataclass(frozen=True)
class SweepRow:
    """Row ``index`` of a sweep's grid (y = ``job.y_values[index]``): one job of the pool. Every
    cell is seeded by ``job.seed`` alone, so a row computes the same wherever and whenever it
    runs; the first row also draws the edge of chaos (about 30 ms of quadrature)."""

    job: SweepJob
    index: int


@dataclass(frozen=True)
class RowResult:
    row: SweepRow
    simulation: tuple[Value, ...] | None
    theory: tuple[Value, ...] | None
    curve: tuple[tuple[tuple[float, float], ...] | None, str] | None  # the first row's only


def sweep_rows(job: SweepJob) -> list[tuple[str, SweepRow]]:
    """The grid (or the job's part of it) as one job per row, in order."""
    return [(f"row {i}", SweepRow(job, i)) for i in job.rows]


@applies_policy
def run_sweep_row(part: SweepRow) -> RowResult:
    """Top-level and picklable: what the process pool runs for each row of /sweep."""
    job = part.job
    y = job.y_values[part.index]
    row = [job.cell(x, y) for x in job.x_values]
    sim = None if job.source == "theory" else tuple(simulated(job, c) for c in row)
    pred = None if job.source == "simulation" else tuple(predicted(job, c) for c in row)
    curve = critical_curve(job) if part.index == 0 else None
    return RowResult(part, sim, pred, curve)


def join_rows(parts: Sequence[tuple[str, RowResult]]) -> SweepResult:
    """The rows' results, in order, as the whole sweep's (or its part's: the rows it holds,
    and the edge of chaos only if row 0 is among them)."""
    rows = [result for _, result in parts]
    job = rows[0].row.job
    assert tuple(r.row.index for r in rows) == job.rows
    curve = rows[0].curve if rows[0].row.index == 0 else (None, "")
    assert curve is not None
    sim = None if job.source == "theory" else tuple(r.simulation or () for r in rows)
    pred = None if job.source == "simulation" else tuple(r.theory or () for r in rows)
    return SweepResult(job, sim, pred, *curve)


@applies_policy
def run_sweep(job: SweepJob) -> SweepResult:
    """The whole sweep, row after row in this process: what the pool's rows combine to."""
    return join_rows([(name, run_sweep_row(part)) for name, part in sweep_rows(job)])
