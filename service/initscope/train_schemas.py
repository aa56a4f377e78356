"""The HTTP contract of /train and /search: request and response models, request -> jobs."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from initscope.config import Settings
from initscope.errors import BudgetExceeded, FieldError, InvalidRequest
from initscope.jobs import DType, LayerSpec, Thresholds
from initscope.schemas import (
    ActivationIn,
    BiasInitIn,
    LayeredNetwork,
    Network,
    UniformNetwork,
    WeightInitIn,
    at_most,
    network_limits,
)
from initscope.training.datasets import InlineTask, Spirals, Task
from initscope.training.loop import Claim, TrainComparison, TrainJob, TrainResult
from initscope.training.optimizers import Optimizer, Sgd
from initscope.training.search import SearchAxis, SearchJob, SearchResult

Rate = Annotated[float, Field(ge=0, le=0.9, allow_inf_nan=False)]
Decay = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, le=2**53 - 1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class TrainVariantSpec(Strict):
    """One run of a comparison: a whole ``network`` or patches over the base network, and
    optionally its own optimiser, weight decay or dropout."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    network: Network | None = None
    activation: ActivationIn | None = None
    init: WeightInitIn | None = None
    bias: BiasInitIn | None = None
    optimizer: Optimizer | None = None
    weight_decay: Decay | None = None
    dropout: Rate | None = None

    def apply(self, base: LayeredNetwork | UniformNetwork) -> LayeredNetwork | UniformNetwork:
        patches = {
            key: getattr(self, key)
            for key in ("activation", "init", "bias")
            if getattr(self, key) is not None
        }
        if isinstance(base, UniformNetwork):
            return base.model_copy(update=patches)
        layers = [layer.model_copy(update=patches) for layer in base.layers]
        return base.model_copy(update={"layers": layers})


class TrainRequest(Training):
    network: Network | None = Field(
        default=None, description="The network; the base of the variants when they are given."
    )
    variants: Annotated[list[TrainVariantSpec], Field(min_length=2, max_length=8)] | None = Field(
        default=None, description="2 to 8 runs on the same data, order and seed."
    )

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
            for i, variant in enumerate(self.variants):
                where: tuple[str | int, ...]
                if variant.network is not None:
                    net, where = variant.network, ("variants", i, "network")
                else:
                    assert self.network is not None
                    net, where = variant.apply(self.network), ("network",)
                job = train_job(self, net, settings, where)
                job = dataclasses.replace(
                    job,
                    optimizer=variant.optimizer or job.optimizer,
                    weight_decay=job.weight_decay
                    if variant.weight_decay is None
                    else variant.weight_decay,
                    dropout=job.dropout if variant.dropout is None else variant.dropout,
                )
                jobs.append((variant.name, job))
        check_budget(
            sum(job.cost for _, job in jobs), max(j.peak_bytes() for _, j in jobs), settings
        )
        return jobs


def train_job(
    request: Training,
    net: LayeredNetwork | UniformNetwork,
    settings: Settings,
    where: tuple[str | int, ...],
) -> TrainJob:
    """Expand one network against the configured limits and the task, and freeze it."""
    errors: list[FieldError] = []

    def limit(loc: tuple[str | int, ...], value: int, maximum: int, what: str) -> None:
        errors.extend(at_most(loc, value, maximum, what))

    errors.extend(network_limits(net, settings, where))
    task = request.task
    if isinstance(task, InlineTask):
        limit(("task", "x"), task.samples, settings.max_inline_rows, "the number of rows")
        limit(
            ("task", "x"),
            task.samples * task.features,
            settings.max_inline_values,
            "the number of values",
        )
    else:
        limit(("task", "samples"), task.samples, settings.max_samples, "samples")
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
    layers = net.expand()
    return TrainJob(
        input_dim=net.input_dim,
        layers=tuple(
            LayerSpec(x.units, x.activation, x.init, x.bias, x.batch_norm, x.dropout)
            for x in layers
        ),
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


def check_budget(macs: int, peak: int, settings: Settings) -> None:
    errors: list[FieldError] = []
    if macs > settings.compute_budget:
        errors.append(
            FieldError(
                ("body",),
                f"the training costs {macs:.3g} multiply-adds (3 x rows trained x weights, plus "
                f"the evaluations); the limit is {settings.compute_budget:.3g}: use fewer "
                "epochs, steps, samples, trials or smaller layers",
                "compute_budget",
                macs,
            )
        )
    if peak > settings.memory_budget_bytes:
        errors.append(
            FieldError(
                ("body",),
                f"the training needs about {peak / 2**20:.0f} MiB of working memory; the limit "
                f"is {settings.memory_budget_bytes / 2**20:.0f} MiB: use fewer samples or "
                "smaller layers",
                "memory_budget",
                peak,
            )
        )
    if errors:
        raise BudgetExceeded(errors)


# --- responses -------------------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


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

    @model_validator(mode="after")
    def _axes(self) -> SearchRequest:
        if self.x.param == self.y.param:
            raise ValueError(f"x and y must search different things, got {self.x.param} twice")
        if "momentum" in (self.x.param, self.y.param) and self.optimizer.name != "momentum":
            raise ValueError("searching momentum needs optimizer.name = momentum")
        return self

    def job(self, settings: Settings) -> SearchJob:
        base = train_job(self, self.network, settings, ("network",))
        job = SearchJob(
            base=base,
            x=SearchAxis(self.x.param, self.x.low, self.x.high, self.x.log),
            y=SearchAxis(self.y.param, self.y.low, self.y.high, self.y.log),
            trials=self.trials,
        )
        check_budget(self.trials * base.fit_cost, base.peak_bytes(), settings)
        return job


class TrialOut(Out):
    rank: int
    x: float
    y: float
    val_accuracy: float
    val_loss: float | None
    train_accuracy: float
    train_loss: float | None
    diverged: bool


class SearchResponse(Out):
    x_param: str
    y_param: str
    trials: list[TrialOut] = Field(description="Best validation accuracy first.")
    median_val_accuracy: float
    elapsed_ms: float

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
        )


__all__ = ["Claim", "SearchRequest", "SearchResponse", "TrainRequest", "TrainResponse"]
