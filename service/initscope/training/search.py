"""Random hyperparameter search (Bergstra & Bengio 2012): ``trials`` draws of two
hyperparameters, each uniform or log-uniform in its range, every trial trained from the same
initial weights on the same batches, judged on the validation rows training never sees."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from initscope.engine.floating import applies_policy
from initscope.engine.sweep import Part, held
from initscope.training.loop import TrainJob, dataset, fit
from initscope.training.optimizers import Momentum

SearchParam = Literal["learning_rate", "weight_decay", "dropout", "momentum"]
_TAG = 0x7365_6172  # the draws' stream: SeedSequence((seed, _TAG))


@dataclass(frozen=True)
class SearchAxis:
    param: SearchParam
    low: float
    high: float
    log: bool

    def draw(self, rng: np.random.Generator, n: int) -> list[float]:
        if self.log:
            return [math.exp(v) for v in rng.uniform(math.log(self.low), math.log(self.high), n)]
        return [float(v) for v in rng.uniform(self.low, self.high, n)]


@dataclass(frozen=True)
class SearchJob:
    base: TrainJob
    x: SearchAxis
    y: SearchAxis
    trials: int
    part: Part | None = None  # trials index, index + count, ... of the one stream's draws


@dataclass(frozen=True)
class Trial:
    x: float
    y: float
    val_accuracy: float  # after the last epoch
    val_loss: float | None
    train_accuracy: float
    train_loss: float | None
    diverged: bool
    index: int  # in the order of the draws: ties in rank keep it


@dataclass(frozen=True)
class SearchResult:
    x_param: str
    y_param: str
    trials: tuple[Trial, ...]  # best validation accuracy first (then lower validation loss)
    median_val_accuracy: float  # over the trials held (a part's own)
    elapsed_ms: float
    part: Part | None = None


def with_value(job: TrainJob, param: SearchParam, value: float) -> TrainJob:
    if param == "learning_rate":
        return dataclasses.replace(
            job, optimizer=dataclasses.replace(job.optimizer, learning_rate=value)
        )
    if param == "momentum":
        assert isinstance(job.optimizer, Momentum)  # checked by the request
        return dataclasses.replace(
            job, optimizer=dataclasses.replace(job.optimizer, momentum=value)
        )
    if param == "weight_decay":
        return dataclasses.replace(job, weight_decay=value)
    return dataclasses.replace(job, dropout=value)


@dataclass(frozen=True)
class SearchTrial:
    """Trial ``index`` of a search, with its draws: one job of the pool."""

    search: SearchJob
    index: int
    x: float
    y: float


@dataclass(frozen=True)
class TrialResult:
    part: SearchTrial
    trial: Trial
    elapsed_ms: float


def search_trials(job: SearchJob) -> list[tuple[str, SearchTrial]]:
    """Every trial's draws, made here in sequence from the search's one stream (so each trial
    is the same whichever worker, or replica for a part, runs it, and whenever); the trials
    the job holds (all, or its part's)."""
    rng = np.random.default_rng(np.random.SeedSequence((job.base.seed, _TAG)))
    xs, ys = job.x.draw(rng, job.trials), job.y.draw(rng, job.trials)
    return [(f"trial {i}", SearchTrial(job, i, xs[i], ys[i])) for i in held(job.trials, job.part)]


@applies_policy
def run_trial(part: SearchTrial) -> TrialResult:
    """Top-level and picklable: what the process pool runs for each trial of /search."""
    start = time.perf_counter()
    job = part.search
    trial_job = with_value(with_value(job.base, job.x.param, part.x), job.y.param, part.y)
    last = fit(trial_job, dataset(job.base))
    end = last.history[-1]
    trial = Trial(
        part.x,
        part.y,
        end.val_accuracy,
        end.val_loss,
        end.train_accuracy,
        end.train_loss,
        last.diverged,
        part.index,
    )
    return TrialResult(part, trial, (time.perf_counter() - start) * 1e3)


def rank_trials(parts: Sequence[tuple[str, TrialResult]]) -> SearchResult:
    """The trials' results, best first; ``elapsed_ms`` is the trials' compute time summed."""
    results = [result for _, result in parts]
    job = results[0].part.search
    assert tuple(r.part.index for r in results) == held(job.trials, job.part)
    trials = [r.trial for r in results]
    median = float(np.median([t.val_accuracy for t in trials]))
    ranked = sorted(  # stable: ties keep the order of the draws
        trials,
        key=lambda t: (-t.val_accuracy, math.inf if t.val_loss is None else t.val_loss),
    )
    elapsed = round(sum(r.elapsed_ms for r in results), 3)
    return SearchResult(job.x.param, job.y.param, tuple(ranked), median, elapsed, job.part)


@applies_policy
def run_search(job: SearchJob) -> SearchResult:
    """The whole search, trial after trial in this process: what the pool's trials combine
    to."""
    return rank_trials([(name, run_trial(part)) for name, part in search_trials(job)])
