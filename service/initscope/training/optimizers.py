"""Optimisers, following ``torch.optim`` (g: the gradient including the decay term, t: the step):

- SGD: ``p <- p - lr g``;
- momentum (``SGD(momentum=mu)``, no dampening, not Nesterov): ``v <- mu v + g`` (``v = g``
  at t = 1), ``p <- p - lr v``;
- Adam (Kingma & Ba 2014, arXiv:1412.6980): ``m <- b1 m + (1 - b1) g``,
  ``s <- b2 s + (1 - b2) g^2``, ``p <- p - lr (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)``.

The option types are stdlib dataclasses that pydantic validates directly (the request schema
and the job share them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field

from initscope.engine.layers import Parameter

_FORBID = ConfigDict(extra="forbid")
LearningRate = Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]


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


class Update:
    """The optimiser's state and step (the module's rules), over ``params`` whose ``grad``
    the backward pass has filled."""

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
            grad = p.grad
            assert grad is not None, "step before a backward pass"
            if isinstance(opt, Sgd):
                p.value -= lr * grad
            elif isinstance(opt, Momentum):
                assert state is not None
                v = state[0]
                v *= opt.momentum
                v += grad
                p.value -= lr * v
            else:
                assert state is not None
                m, s = state
                m *= opt.beta1
                m += (1 - opt.beta1) * grad
                s *= opt.beta2
                s += (1 - opt.beta2) * np.square(grad)
                m_hat_scale = lr / (1 - opt.beta1**self.t)
                denom = np.sqrt(s / (1 - opt.beta2**self.t))
                denom += opt.eps
                p.value -= m_hat_scale * m / denom
