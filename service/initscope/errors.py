"""Domain errors, raised by the request models, the runner and content negotiation, and turned
into problem+json responses only at the edge (``initscope.http.problems``); the command line
prints an ``InvalidRequest`` as the 422 would read (``initscope.cli``). The HTTP status each
becomes is on the right.

InitscopeError
├── InvalidRequest        a request that passed the schema but not the service's limits or
│   │                     cross-field rules; carries one error per offending field -> 422
│   └── BudgetExceeded    the request would cost more compute or memory than allowed -> 422
├── NotAcceptable         none of the accepted media types can be produced -> 406
├── UnsupportedMediaType  a request body declared as another media type, or not at all -> 415
└── RunnerError           the process pool could not give the request an answer; each
    │                     declares its ``status``, ``title`` and maybe ``retry_after``
    ├── Overloaded        the work queued ahead would keep it waiting too long -> 503 + Retry-After
    ├── ShuttingDown      the server is draining after SIGTERM -> 503 + Retry-After
    ├── WorkerLost        the worker running this request died -> 503
    ├── OutOfMemory       the work outgrew the worker's memory cap despite the budget -> 507
    └── DeadlineExceeded  the request ran past its deadline; its work was killed -> 504
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


class UnsupportedMediaType(InitscopeError):
    pass


class RunnerError(InitscopeError):
    status: int = 503
    title: str = "Service unavailable"
    retry_after: int | None = None


class Overloaded(RunnerError):
    title = "Overloaded"

    def __init__(self, retry_after: int, why: str = "too many requests are held") -> None:
        super().__init__(f"{why}; retry in {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(RunnerError):
    title = "Shutting down"

    def __init__(self, retry_after: int) -> None:
        super().__init__("the server is shutting down; retry on another replica or later")
        self.retry_after = retry_after


class WorkerLost(RunnerError):
    title = "Worker lost"

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(
            f"the worker process running this request died (exit code {exitcode}); "
            "it has been replaced, the request can be retried"
        )
        self.exitcode = exitcode


class OutOfMemory(RunnerError):
    status = 507
    title = "Insufficient memory"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the work outgrew the worker's memory cap of {limit / 2**20:.0f} MiB: "
            "use fewer samples, fewer or smaller layers, or float32"
        )


class DeadlineExceeded(RunnerError):
    status = 504
    title = "Deadline exceeded"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request did not finish within its deadline of {seconds:g} s")
        self.seconds = seconds
