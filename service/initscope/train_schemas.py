"""The HTTP contract of /train and /search: request and response models, request -> jobs."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from pydantic import Field, model_validator

from initscope.config import Settings
from initscope.engine.sweep import held
from initscope.errors import FieldError, InvalidRequest
from initscope.jobs import DType, Thresholds
from initscope.limits import (
    MAX_VARIANTS,
    MIN_VARIANTS,
    Cost,
    Loc,
    at_most,
    check_budget,
    inline_data,
)
from initscope.schema_base import (
    AnyNetwork,
    Network,
    NetworkPatch,
    Out,
    Seed,
    Strict,
    variant_networks,
)
from initscope.schemas import PART_FIELD, PartIn, PartOut, part_of, part_out
from initscope.training.datasets import InlineTask, Spirals, Task
from initscope.training.loop import Claim, TrainComparison, TrainJob, TrainResult
from initscope.training.optimizers import Optimizer, Sgd
from initscope.training.search import SearchAxis, SearchJob, SearchResult

Rate = Annotated[float, Field(ge=0, le=0.9, allow_inf_nan=False)]
Decay = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Training(Strict):
    """What every run of a request shares: the task, the schedule, the seed."""

    task: Task = Field(
        default=Spirals(),
        description="spirals, teacher, digits (UCI 8x8 handwritten digits) or inline rows; "
        "each split once into training and validation rows.",
    )
    optimizer: Optimizer = Sgd()
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    epochs: Annotated[int, Field(ge=1, le=1000)] = 10
    steps: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, description="Stop after this many steps (the last epoch partial)."
    )
    weight_decay: Decay = Field(
        default=0.0, description="L2 coefficient lambda on the weights: loss + lambda/2 ||W||^2."
    )
    dropout: Rate = Field(
        default=0.0,
        description="Inverted dropout rate after the activation of every hidden layer that has "
        "no dropout of its own: a layer's own rate (network layers' dropout, > 0) wins where "
        "set; this one (or a variant's) applies to the other hidden layers.",
    )
    thresholds: Thresholds = Thresholds()
    seed: Seed = 0
    dtype: DType = "float32"


class TrainVariantSpec(NetworkPatch):
    """One run of a comparison: a whole ``network`` or patches over the base network, and
    optionally its own optimiser, weight decay or dropout."""

    optimizer: Optimizer | None = None
    weight_decay: Decay | None = None
    dropout: Rate | None = None


class TrainRequest(Training):
    network: Network | None = Field(
        default=None, description="The network; the base of the variants when they are given."
    )
    variants: (
        Annotated[list[TrainVariantSpec], Field(min_length=MIN_VARIANTS, max_length=MAX_VARIANTS)]
        | None
    ) = Field(default=None, description="2 to 8 runs on the same data, order and seed.")

    @model_validator(mode="after")
    def _complete(self) -> TrainRequest:
        if self.variants is None:
            if self.network is None:
                raise ValueError("give a network, or variants")
            return self
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        missing = [v.name for v in self.variants if v.network is None and self.network is None]
        if missing:
            raise ValueError(f"variants {missing} have no network and there is no base network")
        return self

    def jobs(self, settings: Settings) -> list[tuple[str, TrainJob]]:
        """One job per run, each within the limits, all together within the budget."""
        if self.variants is None:
            assert self.network is not None  # checked by _complete
            jobs = [("run", train_job(self, self.network, settings, ("network",)))]
        else:
            jobs = []
            networks = variant_networks(self.variants, self.network, ("network",))
            for variant, (name, net, where) in zip(self.variants, networks, strict=True):
                job = train_job(self, net, settings, where)
                job = dataclasses.replace(
                    job,
                    optimizer=variant.optimizer or job.optimizer,
                    weight_decay=job.weight_decay
                    if variant.weight_decay is None
                    else variant.weight_decay,
                    dropout=job.dropout if variant.dropout is None else variant.dropout,
                )
                jobs.append((name, job))
        cost = sum(job.cost for _, job in jobs)
        check_budget(training_cost(cost, max(j.peak_bytes() for _, j in jobs)), settings, ("body",))
        return jobs


def train_job(request: Training, net: AnyNetwork, settings: Settings, where: Loc) -> TrainJob:
    """Expand one network against the configured limits and the task, and freeze it."""
    errors = net.limits(settings, where)
    task = request.task
    if isinstance(task, InlineTask):
        errors += inline_data(
            ("task", "x"),
            task.samples,
            task.features,
            settings,
            "the number of rows",
            "the number of values",
        )
    else:
        errors += at_most(("task", "samples"), task.samples, settings.max_samples, "samples")
    if not errors and net.input_dim != task.features:
        errors.append(
            FieldError(
                ("body", *where, "input_dim"),
                f"input_dim={net.input_dim} does not match the task's {task.features} features",
                "value_error",
                net.input_dim,
            )
        )
    if errors:
        raise InvalidRequest(errors)
    return TrainJob(
        input_dim=net.input_dim,
        layers=net.layer_specs(),
        task=task,
        optimizer=request.optimizer,
        batch_size=request.batch_size,
        epochs=request.epochs,
        steps=request.steps,
        weight_decay=request.weight_decay,
        dropout=request.dropout,
        seed=request.seed,
        dtype=request.dtype,
        thresholds=request.thresholds,
    )


def training_cost(macs: int, peak_bytes: int) -> Cost:
    """``macs``: the jobs' own estimate (``TrainJob.cost``, or trials x ``fit_cost``)."""
    return Cost(
        macs=macs,
        peak_bytes=peak_bytes,
        what="the training",
        breakdown="3 x rows trained x weights, plus the evaluations",
        remedy="fewer epochs, steps, samples, trials or smaller layers",
        memory_remedy="fewer samples or smaller layers",
    )


# --- responses -------------------------------------------------------------------------------


class EpochOut(Out):
    epoch: int = Field(description="0: before the first step.")
    steps: int = Field(description="Steps taken by the end of this epoch.")
    train_loss: float | None = Field(description="Mean cross-entropy over the training rows.")
    train_accuracy: float
    val_loss: float | None = Field(description="Mean cross-entropy over the validation rows.")
    val_accuracy: float
    grad_rms: list[float | None] = Field(
        description="Per layer of the spec: RMS over this epoch's steps of the per-sample "
        "RMS(dL/dh_l); empty at epoch 0."
    )


class ClaimOut(Out):
    claim: str
    held: bool
    evidence: str


class CheckOut(Out):
    verdict: str = Field(description="The step-0 diagnosis (/analyze on the first rows).")
    predicted: list[str]
    first_to_last_at_init: float | None
    vanishing_steps: float = Field(
        description="Fraction of steps with layer-1 / last gradient RMS below "
        "thresholds.vanishing_gradient_ratio."
    )
    exploding_steps: float
    median_first_to_last: float | None
    loss_drop: float | None = Field(description="1 - final / initial training loss.")
    moved: bool = Field(description="The training loss fell by at least 10 %.")
    claims: list[ClaimOut]


class TrainRunOut(Out):
    name: str
    history: list[EpochOut]
    check: CheckOut
    diverged: bool = Field(description="The training loss became non-finite; stopped there.")
    steps: int
    train_rows: int
    val_rows: int
    classes: int
    chance_accuracy: float = Field(description="The largest class' share of validation rows.")
    seed: int
    elapsed_ms: float
    version: str

    @classmethod
    def of(cls, name: str, result: TrainResult) -> TrainRunOut:
        base = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
        check = result.check
        return cls.model_validate(
            {
                **base,
                "name": name,
                "history": [EpochOut.model_validate(e) for e in result.history],
                "check": CheckOut.model_validate(
                    {
                        **{f.name: getattr(check, f.name) for f in dataclasses.fields(check)},
                        "claims": [ClaimOut.model_validate(c) for c in check.claims],
                    }
                ),
            }
        )


class TrainRowOut(Out):
    name: str
    verdict: str
    final_val_accuracy: float
    best_val_accuracy: float
    final_train_loss: float | None
    diverged: bool


class TrainResponse(Out):
    runs: list[TrainRunOut]
    table: list[TrainRowOut]

    @classmethod
    def from_result(cls, comparison: TrainComparison) -> TrainResponse:
        runs = [TrainRunOut.of(v.name, v.result) for v in comparison.variants]
        table = [
            TrainRowOut(
                name=v.name,
                verdict=v.result.check.verdict,
                final_val_accuracy=v.result.history[-1].val_accuracy,
                best_val_accuracy=max(e.val_accuracy for e in v.result.history),
                final_train_loss=v.result.history[-1].train_loss,
                diverged=v.result.diverged,
            )
            for v in comparison.variants
        ]
        return cls(runs=runs, table=table)


# --- search ----------------------------------------------------------------------------------


class SearchAxisIn(Strict):
    param: Literal["learning_rate", "weight_decay", "dropout", "momentum"]
    low: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]
    high: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]
    log: bool = Field(default=True, description="Log-uniform (both ends > 0) or uniform.")

    @model_validator(mode="after")
    def _valid(self) -> SearchAxisIn:
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got {self.low} and {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log-uniform range needs low > 0")
        top = {"dropout": 0.9, "momentum": 0.99, "weight_decay": 1.0}.get(self.param)
        if top is not None and self.high > top:
            raise ValueError(f"{self.param} must be at most {top}, got high={self.high}")
        if self.param == "learning_rate" and self.low <= 0:
            raise ValueError("learning_rate must be > 0")
        return self


class SearchRequest(Training):
    network: Network
    x: SearchAxisIn = SearchAxisIn(param="learning_rate", low=1e-3, high=1.0)
    y: SearchAxisIn = SearchAxisIn(param="weight_decay", low=1e-8, high=1e-1)
    trials: Annotated[int, Field(ge=2, le=200)] = 20
    part: PartIn | None = PART_FIELD

    @model_validator(mode="after")
    def _axes(self) -> SearchRequest:
        if self.x.param == self.y.param:
            raise ValueError(f"x and y must search different things, got {self.x.param} twice")
        if "momentum" in (self.x.param, self.y.param) and self.optimizer.name != "momentum":
            raise ValueError("searching momentum needs optimizer.name = momentum")
        return self

    def job(self, settings: Settings) -> SearchJob:
        base = train_job(self, self.network, settings, ("network",))
        part, errors = part_of(self, self.part, self.trials, "trials")
        if errors:
            raise InvalidRequest(errors)
        job = SearchJob(
            base=base,
            x=SearchAxis(self.x.param, self.x.low, self.x.high, self.x.log),
            y=SearchAxis(self.y.param, self.y.low, self.y.high, self.y.log),
            trials=self.trials,
            part=part,
        )
        share = len(held(self.trials, part))
        check_budget(training_cost(share * base.fit_cost, base.peak_bytes()), settings, ("body",))
        return job


class TrialOut(Out):
    rank: int
    index: int = Field(
        description="The trial's place in the order of the draws, from 0 (ties in rank keep it)."
    )
    x: float
    y: float
    val_accuracy: float
    val_loss: float | None
    train_accuracy: float
    train_loss: float | None
    diverged: bool


class SearchResponse(Out):
    """Every trial, best first; or, for a request with a ``part``, the trials it holds
    (``part.holds``), ranked among themselves, and their median."""

    x_param: str
    y_param: str
    trials: list[TrialOut] = Field(description="Best validation accuracy first.")
    median_val_accuracy: float
    elapsed_ms: float = Field(description="The trials' compute time, summed.")
    part: PartOut | None = Field(
        default=None, description="The part of a split search this answer holds (null: all)."
    )

    @classmethod
    def from_result(cls, result: SearchResult) -> SearchResponse:
        return cls(
            x_param=result.x_param,
            y_param=result.y_param,
            trials=[
                TrialOut.model_validate({**dataclasses.asdict(t), "rank": i})
                for i, t in enumerate(result.trials, start=1)
            ],
            median_val_accuracy=result.median_val_accuracy,
            elapsed_ms=result.elapsed_ms,
            part=part_out(result.part, sorted(t.index for t in result.trials)),
        )


__all__ = ["Claim", "SearchRequest", "SearchResponse", "TrainRequest", "TrainResponse"]
