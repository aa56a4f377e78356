"""Classification tasks for training: synthetic (spirals, teacher), real (digits) or inline.

Each task is a frozen dataclass validated by pydantic (as the option types of
:mod:`initscope.jobs`); :func:`make_dataset` turns one into arrays, seeded, split once into a
training and a validation part that training never mixes. For one seed the data, and the split,
do not depend on the network: variants of a comparison see the same rows.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field

_FORBID = ConfigDict(extra="forbid")
FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.intp]
ValidationFraction = Annotated[float, Field(ge=0.05, le=0.5, allow_inf_nan=False)]
DIGITS_ROWS = 1797


@dataclass(frozen=True)
class Spirals:
    """``classes`` interleaved spiral arms in the plane (CS231n's toy set): arm k's point i of
    m has radius r = i / (m - 1) and angle t = 4 (k + r) + noise N(0, noise^2);
    x = (r sin t, r cos t). Not linearly separable: a linear model stays near chance."""

    __pydantic_config__ = _FORBID
    name: Literal["spirals"] = "spirals"
    samples: Annotated[int, Field(ge=20, le=100_000)] = 600
    classes: Annotated[int, Field(ge=2, le=10)] = 3
    noise: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] = 0.2
    validation_fraction: ValidationFraction = 0.2

    @property
    def features(self) -> int:
        return 2


@dataclass(frozen=True)
class Teacher:
    """Labels from a random teacher network: x ~ N(0, I_d), label = argmax of
    ``tanh(x W_1) W_2`` with W_1 (d, hidden), W_2 (hidden, classes) i.i.d. N(0, 1/fan_in).
    Realisable by a student at least as wide, so validation accuracy can approach 1."""

    __pydantic_config__ = _FORBID
    name: Literal["teacher"] = "teacher"
    samples: Annotated[int, Field(ge=20, le=100_000)] = 1000
    input_dim: Annotated[int, Field(ge=1, le=1024)] = 20
    hidden: Annotated[int, Field(ge=1, le=1024)] = 32
    classes: Annotated[int, Field(ge=2, le=10)] = 4
    validation_fraction: ValidationFraction = 0.2

    @property
    def features(self) -> int:
        return self.input_dim


@dataclass(frozen=True)
class Digits:
    """The UCI optical handwritten digits (Alpaydin & Kaynak 1998, CC BY 4.0; the set
    scikit-learn's ``load_digits`` ships): 1797 images of 8 x 8 pixels, 10 classes. Pixels
    0..16 are scaled to [0, 1]; ``samples`` < 1797 takes a seeded random subset."""

    __pydantic_config__ = _FORBID
    name: Literal["digits"] = "digits"
    samples: Annotated[int, Field(ge=20, le=DIGITS_ROWS)] = DIGITS_ROWS
    validation_fraction: ValidationFraction = 0.2

    @property
    def features(self) -> int:
        return 64

    @property
    def classes(self) -> int:
        return 10


@dataclass(frozen=True)
class InlineTask:
    """Labelled rows given in the request: ``x`` (samples x features), ``y`` in 0..classes-1."""

    __pydantic_config__ = _FORBID
    name: Literal["inline"]
    x: tuple[tuple[Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)], ...], ...]
    y: tuple[Annotated[int, Field(ge=0, le=99)], ...]
    validation_fraction: ValidationFraction = 0.2

    def __post_init__(self) -> None:
        if len(self.x) < 4:
            raise ValueError(f"x must hold at least 4 rows, got {len(self.x)}")
        if len(self.y) != len(self.x):
            raise ValueError(f"y has {len(self.y)} labels but x has {len(self.x)} rows")
        width = len(self.x[0])
        if width == 0 or any(len(row) != width for row in self.x):
            raise ValueError("x rows must be non-empty and of equal length")
        if len(set(self.y)) < 2:
            raise ValueError("y must hold at least two classes")

    @property
    def samples(self) -> int:
        return len(self.x)

    @property
    def features(self) -> int:
        return len(self.x[0])

    @property
    def classes(self) -> int:
        return max(self.y) + 1


Task = Annotated[Spirals | Teacher | Digits | InlineTask, Field(discriminator="name")]


@dataclass(frozen=True)
class Dataset:
    """Rows ``x`` (n, features) and labels ``y`` (n,) for training and for validation."""

    x_train: FloatArray
    y_train: IntArray
    x_val: FloatArray
    y_val: IntArray
    classes: int


def validation_count(task: Spirals | Teacher | Digits | InlineTask) -> int:
    """Rows held out for validation: round(fraction * samples), at least 1, at most n - 2."""
    n = task.samples
    return min(max(1, round(task.validation_fraction * n)), n - 2)


@cache
def _digits() -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    raw = (resources.files("initscope") / "data" / "digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",")
    return table[:, :-1] / 16.0, table[:, -1].astype(np.intp)


def _spirals(task: Spirals, rng: np.random.Generator) -> tuple[FloatArray, IntArray]:
    base, extra = divmod(task.samples, task.classes)
    per_arm = [base + (k < extra) for k in range(task.classes)]
    xs, ys = [], []
    for k, m in enumerate(per_arm):
        r = np.linspace(0.0, 1.0, m)
        t = 4.0 * (k + r) + rng.standard_normal(m) * task.noise
        xs.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
        ys.append(np.full(m, k, dtype=np.intp))
    return np.concatenate(xs), np.concatenate(ys)


def _teacher(task: Teacher, rng: np.random.Generator) -> tuple[FloatArray, IntArray]:
    w1 = rng.standard_normal((task.input_dim, task.hidden)) / math.sqrt(task.input_dim)
    w2 = rng.standard_normal((task.hidden, task.classes)) / math.sqrt(task.hidden)
    x = rng.standard_normal((task.samples, task.input_dim))
    return x, np.argmax(np.tanh(x @ w1) @ w2, axis=1).astype(np.intp)


def make_dataset(
    task: Spirals | Teacher | Digits | InlineTask, rng: np.random.Generator, dtype: str
) -> Dataset:
    """The task's rows, shuffled by ``rng`` and split: the first ``validation_count`` rows of
    the permutation validate, the rest train."""
    if isinstance(task, Spirals):
        x, y = _spirals(task, rng)
    elif isinstance(task, Teacher):
        x, y = _teacher(task, rng)
    elif isinstance(task, Digits):
        x, y = _digits()
    else:
        x, y = np.asarray(task.x, dtype=np.float64), np.asarray(task.y, dtype=np.intp)
    order = rng.permutation(len(y))[: task.samples]
    held = validation_count(task)
    val, train = order[:held], order[held:]
    return Dataset(
        x_train=x[train].astype(dtype),
        y_train=y[train],
        x_val=x[val].astype(dtype),
        y_val=y[val],
        classes=task.classes,
    )
