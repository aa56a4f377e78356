"""Domain errors, turned into HTTP responses only at the edge (``service.api``).

InitscopeError
└── InvalidRequest      a request that passed the schema but not the service's limits or
    │                   cross-field rules; carries one error per offending field -> 422
    └── BudgetExceeded  the request would cost more compute or memory than allowed -> 422
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"
    input: Any = None


class InitscopeError(Exception):
    """Base of every error the service raises on purpose."""


class InvalidRequest(InitscopeError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        self.errors = errors


class BudgetExceeded(InvalidRequest):
    pass


class NotAcceptable(InitscopeError):
    pass
