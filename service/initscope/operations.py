"""Each computing operation, defined once: what the HTTP route (``initscope.http.api``) and the
command line's in-process path (``initscope.cli``) both run.

    request model -> to_jobs (validation past the schema, the limits) -> named jobs
      -> compute, one call per job (top-level and picklable: what the process pool runs)
      -> combine -> the response model (JSON) or render (the figure)

The service runs the jobs concurrently in its pool (:func:`initscope.http.api`'s ``_answer``),
admitted by their ``cost`` (multiply-adds, the budget's count: ``initscope.runner``);
:func:`run_here` runs them one after another in this process and reports progress, a tick
after each job (a variant, a sweep's row, a search's trial).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from initscope.config import Settings
from initscope.engine.advice import candidates, patched
from initscope.engine.analysis import analyze
from initscope.engine.sweep import (
    RowResult,
    SweepResult,
    SweepRow,
    join_rows,
    run_sweep_row,
    sweep_rows,
)
from initscope.errors import NotAcceptable
from initscope.figures import (
    render_analysis,
    render_comparison,
    render_search,
    render_sweep,
    render_training,
)
from initscope.jobs import AnalysisJob, FigureOptions
from initscope.results import Analysis, Comparison, Variant
from initscope.schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    CompareRequest,
    CompareResponse,
    SweepRequest,
    SweepResponse,
    to_jobs,
)
from initscope.train_schemas import SearchRequest, SearchResponse, TrainRequest, TrainResponse
from initscope.training.loop import TrainComparison, TrainJob, TrainResult, train
from initscope.training.search import (
    SearchResult,
    SearchTrial,
    TrialResult,
    rank_trials,
    run_trial,
    search_trials,
)

Tick = Callable[[], object]
RequestT = TypeVar("RequestT", bound=BaseModel)
JobT = TypeVar("JobT")
PartT = TypeVar("PartT")
ResultT = TypeVar("ResultT")
Named = list[tuple[str, PartT]]


@dataclass(frozen=True)
class Operation(Generic[RequestT, JobT, PartT, ResultT]):
    """One ``POST /{name}``, and the ``initscope {name}`` command."""

    name: str
    summary: str
    request: type[RequestT]
    response: type[BaseModel]
    to_jobs: Callable[[RequestT, Settings], list[tuple[str, JobT]]]
    compute: Callable[[JobT], PartT]
    combine: Callable[[Named[PartT]], ResultT]
    to_json: Callable[[ResultT], BaseModel]
    render: Callable[[ResultT, FigureOptions], bytes]
    progress: str  # what a progress bar says is being done
    cost: Callable[[JobT], int]  # one job's multiply-adds, as the budget counts them

    def total(self, jobs: Sequence[tuple[str, JobT]]) -> int:
        """The ticks :func:`run_here` makes for these jobs."""
        return len(jobs)


def run_here(
    operation: Operation[RequestT, JobT, PartT, ResultT],
    jobs: Sequence[tuple[str, JobT]],
    tick: Tick | None = None,
) -> ResultT:
    """The jobs one after another in this process, combined: what the pool's answer would be."""
    parts: Named[PartT] = []
    for name, job in jobs:
        parts.append((name, operation.compute(job)))
        if tick is not None:
            tick()
    return operation.combine(parts)


# A figure's nominal cost: below every sensible cheap_cost (matplotlib draws one in tens of ms);
# the runner measures the render tasks' real rate like any other's.
RENDER_COST = 1_000_000


def analysis_cost(job: AnalysisJob) -> int:
    """The job's own passes (``AnalysisJob.cost``: forward, LSUV, Jacobian), plus, when it
    recommends, what its candidates would cost within its advice budget (an upper estimate:
    a network without findings simulates none)."""
    if not job.recommend:
        return job.cost
    advice = sum(patched(job, candidate.patch).cost for candidate in candidates(job))
    return job.cost + min(advice, job.advice_budget)


def row_cost(row: SweepRow) -> int:
    """A /sweep row's simulated cells, samples x depth x width^2 each (``SweepJob.macs``)."""
    job = row.job
    if job.source == "theory":
        return 0
    y = job.y_values[row.index]
    cells = [job.cell(x, y) for x in job.x_values]
    return sum(job.samples * cell.depth * cell.width * cell.width for cell in cells)


def trial_cost(trial: SearchTrial) -> int:
    """A /search trial: one fit of the base job (``TrainJob.fit_cost``)."""
    return trial.search.base.fit_cost


def train_cost(job: TrainJob) -> int:
    return job.cost


def _only(parts: Named[PartT]) -> PartT:
    ((_, part),) = parts
    return part


def _compared(parts: Named[PartT]) -> Comparison[PartT]:
    """The named results of the variants of a comparison (/compare, /train), in order."""
    return Comparison(tuple(Variant(name, part) for name, part in parts))


def _one(name: str) -> Callable[[Any, Settings], list[tuple[str, Any]]]:
    """``to_jobs`` of a request that makes one job: its ``job(settings)``."""
    return lambda request, settings: [(name, request.job(settings))]


def _whole(part: object) -> None:
    if part is not None:
        raise NotAcceptable(
            "a part of a split job (the request's part) is answered as JSON only: merge the "
            "parts' JSON, or send the whole request for the figure"
        )


def render_sweep_whole(result: SweepResult, options: FigureOptions) -> bytes:
    """The heatmap of a whole sweep; a part's answer has no figure (406)."""
    _whole(result.job.part)
    return render_sweep(result, options)


def render_search_whole(result: SearchResult, options: FigureOptions) -> bytes:
    """The scatter plot of a whole search; a part's answer has no figure (406)."""
    _whole(result.part)
    return render_search(result, options)


ANALYZE = Operation[AnalyzeRequest, AnalysisJob, Analysis, Analysis](
    name="analyze",
    summary="Analyse a network's initialisation",
    request=AnalyzeRequest,
    response=AnalyzeResponse,
    to_jobs=_one("analysis"),
    compute=analyze,
    combine=_only,
    to_json=AnalyzeResponse.from_result,
    render=render_analysis,
    progress="analysing",
    cost=analysis_cost,
)
COMPARE = Operation[CompareRequest, AnalysisJob, Analysis, Comparison[Analysis]](
    name="compare",
    summary="Compare initialisations side by side",
    request=CompareRequest,
    response=CompareResponse,
    to_jobs=to_jobs,
    compute=analyze,
    combine=_compared,
    to_json=CompareResponse.from_result,
    render=render_comparison,
    progress="analysing variants",
    cost=analysis_cost,
)
SWEEP = Operation[SweepRequest, SweepRow, RowResult, SweepResult](
    name="sweep",
    summary="Phase diagram over two hyperparameters",
    request=SweepRequest,
    response=SweepResponse,
    to_jobs=lambda request, settings: sweep_rows(request.job(settings)),
    compute=run_sweep_row,
    combine=join_rows,
    to_json=SweepResponse.from_result,
    render=render_sweep_whole,
    progress="sweeping rows",
    cost=row_cost,
)
TRAIN = Operation[TrainRequest, TrainJob, TrainResult, TrainComparison](
    name="train",
    summary="Train and check the diagnosis",
    request=TrainRequest,
    response=TrainResponse,
    to_jobs=lambda request, settings: request.jobs(settings),
    compute=train,
    combine=_compared,
    to_json=TrainResponse.from_result,
    render=render_training,
    progress="training",
    cost=train_cost,
)
SEARCH = Operation[SearchRequest, SearchTrial, TrialResult, SearchResult](
    name="search",
    summary="Random hyperparameter search",
    request=SearchRequest,
    response=SearchResponse,
    to_jobs=lambda request, settings: search_trials(request.job(settings)),
    compute=run_trial,
    combine=rank_trials,
    to_json=SearchResponse.from_result,
    render=render_search_whole,
    progress="trials",
    cost=trial_cost,
)

# In the order of the API description and the command line's help.
OPERATIONS: dict[str, Operation[Any, Any, Any, Any]] = {
    op.name: op for op in (ANALYZE, COMPARE, SWEEP, TRAIN, SEARCH)
}
