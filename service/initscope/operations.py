"""Each computing operation, defined once: what the HTTP route (``initscope.http.api``) and the
command line's in-process path (``initscope.cli``) both run.

    request model -> to_jobs (validation past the schema, the limits) -> named jobs
      -> compute, one call per job (top-level and picklable: what the process pool runs)
      -> combine -> the response model (JSON) or render (the figure)

The service runs the jobs concurrently in its pool (:func:`initscope.http.api`'s ``_answer``);
:func:`run_here` runs them one after another in this process and reports progress: ``steps``
ticks per job, from inside ``compute`` when it takes a tick (a sweep's rows, a search's
trials), else once after each job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from initscope.config import Settings
from initscope.engine.analysis import analyze
from initscope.engine.sweep import SweepJob, SweepResult, run_sweep
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
from initscope.training.search import SearchJob, SearchResult, run_search

Tick = Callable[[], object]
RequestT = TypeVar("RequestT", bound=BaseModel)
JobT = TypeVar("JobT")
PartT = TypeVar("PartT")
ResultT = TypeVar("ResultT")
Named = list[tuple[str, PartT]]
JobIn = TypeVar("JobIn", contravariant=True)
PartOut = TypeVar("PartOut", covariant=True)


class Ticking(Protocol[JobIn, PartOut]):
    """``compute`` that also takes a progress callback (``run_sweep``, ``run_search``)."""

    def __call__(self, job: JobIn, tick: Tick | None = None, /) -> PartOut: ...


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
    # compute again, taking a tick it calls ``steps(job)`` times; None: compute ticks nothing
    ticking: Ticking[JobT, PartT] | None = None
    steps: Callable[[JobT], int] = lambda job: 1

    def total(self, jobs: Sequence[tuple[str, JobT]]) -> int:
        """The ticks :func:`run_here` makes for these jobs."""
        return sum(self.steps(job) for _, job in jobs)


def run_here(
    operation: Operation[RequestT, JobT, PartT, ResultT],
    jobs: Sequence[tuple[str, JobT]],
    tick: Tick | None = None,
) -> ResultT:
    """The jobs one after another in this process, combined: what the pool's answer would be."""
    parts: Named[PartT] = []
    for name, job in jobs:
        if operation.ticking is not None:
            parts.append((name, operation.ticking(job, tick)))
        else:
            parts.append((name, operation.compute(job)))
            if tick is not None:
                tick()
    return operation.combine(parts)


def _only(parts: Named[PartT]) -> PartT:
    ((_, part),) = parts
    return part


def _compared(parts: Named[PartT]) -> Comparison[PartT]:
    """The named results of the variants of a comparison (/compare, /train), in order."""
    return Comparison(tuple(Variant(name, part) for name, part in parts))


def _one(name: str) -> Callable[[Any, Settings], list[tuple[str, Any]]]:
    """``to_jobs`` of a request that makes one job: its ``job(settings)``."""
    return lambda request, settings: [(name, request.job(settings))]


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
)
SWEEP = Operation[SweepRequest, SweepJob, SweepResult, SweepResult](
    name="sweep",
    summary="Phase diagram over two hyperparameters",
    request=SweepRequest,
    response=SweepResponse,
    to_jobs=_one("sweep"),
    compute=run_sweep,
    combine=_only,
    to_json=SweepResponse.from_result,
    render=render_sweep,
    progress="sweeping rows",
    ticking=run_sweep,
    steps=lambda job: len(job.y_values),
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
)
SEARCH = Operation[SearchRequest, SearchJob, SearchResult, SearchResult](
    name="search",
    summary="Random hyperparameter search",
    request=SearchRequest,
    response=SearchResponse,
    to_jobs=_one("search"),
    compute=run_search,
    combine=_only,
    to_json=SearchResponse.from_result,
    render=render_search,
    progress="trials",
    ticking=run_search,
    steps=lambda job: job.trials,
)

# In the order of the API description and the command line's help.
OPERATIONS: dict[str, Operation[Any, Any, Any, Any]] = {
    op.name: op for op in (ANALYZE, COMPARE, SWEEP, TRAIN, SEARCH)
}
