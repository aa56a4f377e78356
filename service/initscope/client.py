"""A typed client for the initscope service, on httpx2 (the maintained fork of httpx).

:class:`Client` blocks; :class:`AsyncClient` is the same for asyncio. Their methods are the
operations (``analyze``, ``compare``, ``sweep``, ``train``, ``search``), the catalogue
(``initializers``, ``activations``) and ``health`` (``GET /readyz``). Requests are the service's
own models (``AnalyzeRequest``, ``CompareRequest``, ``SweepRequest`` of
:mod:`initscope.schemas`; ``TrainRequest``, ``SearchRequest`` of :mod:`initscope.train_schemas`)
or plain dicts of the same shape, sent as ``application/json``; answers are the response
models, or bytes for a figure (``format="png"`` or ``"svg"``)::

    from initscope.client import Client

    request = {"network": {"input_dim": 100, "depth": 5, "width": 100,
                           "activation": "relu", "init": "he_normal"}}
    with Client("http://localhost:8000") as initscope:
        result = initscope.analyze(request)
        print(result.diagnosis.verdict)
        png = initscope.analyze(request, format="png")

A 503 carrying ``Retry-After`` (the service is overloaded or shutting down) is retried up to
``retries`` times, waiting the larger of ``Retry-After`` and an exponential backoff, plus up
to ``jitter`` of it, capped at ``max_delay`` seconds (:class:`RetryPolicy`); a 503 without it
(the worker died) is not. A 429 with ``Retry-After`` (this API key holds its share of the
service) is retried the same way. ``api_key`` is sent as ``Authorization: Bearer <key>`` on
every request. Every failure is one of these exceptions:

ClientError
├── MergeError            the answers of a split job's parts do not make one job's answer
├── TransportError        no HTTP answer: connection refused or reset, bad URL, protocol error
│   └── Timeout           no answer within ``timeout`` seconds
└── ProblemError          the service answered 4xx/5xx; the RFC 9457 fields type, title,
    │                     status, detail, instance and errors (one per offending field)
    ├── InvalidRequest    422: the request failed the schema or a limit; errors name fields
    ├── NotAcceptable     406: the service cannot produce the asked-for format
    ├── Unavailable       503: overloaded, shutting down, or its worker died; retry_after
    └── DeadlineExceeded  504: the computation ran out of time

Any other error status (400, 401, 404, 413, 415, 429, 507, 500, ...) is a :class:`ProblemError`
itself.

Error bodies are read as ``application/problem+json`` when the service says so, and in the
older FastAPI shape (``{"detail": "..."}`` or ``{"detail": [{loc, msg, type}, ...]}``)
otherwise.

**A job split over replicas.** ``sweep(..., parts=k)`` and ``search(..., parts=k)`` send k
requests at once, each with ``part = {"index": i, "count": k}`` (rows i, i + k, ... of the grid;
trials i, i + k, ... of the draws), so that behind a Kubernetes Service k replicas compute one
job; :func:`merge_sweep` and :func:`merge_search` join the answers into exactly the unsplit
answer (for a search, ``elapsed_ms`` is the trials' compute time summed, as unsplit). JSON only:
a figure needs the unsplit request.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal, TypeVar, overload

import httpx2 as httpx
import numpy as np
from pydantic import BaseModel, TypeAdapter

from initscope.schemas import (
    ActivationInfo,
    AnalyzeRequest,
    AnalyzeResponse,
    CompareRequest,
    CompareResponse,
    InitializerInfo,
    SweepRequest,
    SweepResponse,
)
from initscope.train_schemas import SearchRequest, SearchResponse, TrainRequest, TrainResponse

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "DeadlineExceeded",
    "FieldProblem",
    "Health",
    "InvalidRequest",
    "MergeError",
    "NotAcceptable",
    "ProblemError",
    "Timeout",
    "TransportError",
    "Unavailable",
    "merge_search",
    "merge_sweep",
    "split",
]

Figure = Literal["png", "svg"]
Format = Literal["json", "png", "svg"]
Body = BaseModel | Mapping[str, Any]
Response = TypeVar("Response", bound=BaseModel)

_ACCEPT: dict[Format, str] = {
    "json": "application/json",
    "png": "image/png",
    "svg": "image/svg+xml",
}
_INITIALIZERS = TypeAdapter(list[InitializerInfo])
_ACTIVATIONS = TypeAdapter(list[ActivationInfo])


# --- errors ------------------------------------------------------------------------------------


class ClientError(Exception):
    """Base of every error this client raises."""


class MergeError(ClientError):
    """The parts' answers are not the parts of one job: different requests, a part missing or
    given twice, or an answer that is not a part."""


class TransportError(ClientError):
    """The request got no HTTP answer."""


class Timeout(TransportError):
    """No answer within the client's timeout."""


@dataclass(frozen=True)
class FieldProblem:
    """One offending field: where (``["body", "network", "depth"]``), what, and its code."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = ""

    @property
    def where(self) -> str:
        return ".".join(map(str, self.loc))

    def __str__(self) -> str:
        return f"{self.where}: {self.msg}" if self.loc else self.msg


class ProblemError(ClientError):
    """The service answered with an error status: the fields of its problem+json body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type: str = "about:blank",
        instance: str | None = None,
        errors: Sequence[FieldProblem] = (),
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.instance = instance
        self.errors = tuple(errors)
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """``title (status): detail``, then one line per offending field."""
        head = f"{self.title} ({self.status})"
        if self.detail:
            head += f": {self.detail}"
        return "\n".join([head, *(f"  {error}" for error in self.errors)])


class InvalidRequest(ProblemError):
    pass


class NotAcceptable(ProblemError):
    pass


class Unavailable(ProblemError):
    pass


class DeadlineExceeded(ProblemError):
    pass


_BY_STATUS: dict[int, type[ProblemError]] = {
    422: InvalidRequest,
    406: NotAcceptable,
    503: Unavailable,
    504: DeadlineExceeded,
}


def _field_problem(item: Any) -> FieldProblem:
    """One entry of ``errors`` (problem+json) or of ``detail`` (FastAPI's 422)."""
    if not isinstance(item, Mapping):
        return FieldProblem((), str(item))
    loc = item.get("loc")
    if loc is None and isinstance(item.get("pointer"), str):  # a JSON pointer: /network/depth
        loc = ["body", *(part for part in item["pointer"].split("/") if part)]
    msg = item.get("msg", item.get("detail", item.get("message", "")))
    return FieldProblem(
        tuple(loc) if isinstance(loc, list | tuple) else (), str(msg), str(item.get("type", ""))
    )


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def problem(response: httpx.Response) -> ProblemError:
    """The exception for an error response, problem+json or FastAPI's legacy body."""
    status = response.status_code
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = response.reason_phrase or "Error"
    try:
        body = response.json()
    except ValueError:
        body = None
    kind = _BY_STATUS.get(status, ProblemError)
    wait = retry_after(response)
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/problem+json" and isinstance(body, Mapping):
        detail = body.get("detail")
        return kind(
            int(body.get("status", status)),
            str(body.get("title") or reason),
            None if detail is None else str(detail),
            type=str(body.get("type", "about:blank")),
            instance=body.get("instance"),
            errors=[_field_problem(item) for item in body.get("errors") or ()],
            retry_after=wait,
        )
    detail = body.get("detail") if isinstance(body, Mapping) else None
    if isinstance(detail, list):
        return kind(status, reason, errors=[_field_problem(x) for x in detail], retry_after=wait)
    if detail is None and not isinstance(body, Mapping):
        detail = response.text.strip() or None
    return kind(status, reason, None if detail is None else str(detail), retry_after=wait)


# --- the parts the two clients share -------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """``GET /readyz``: ready to take work, and the body the service sent with it."""

    ready: bool
    status: str
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before resending after a 503 (or 429) with ``Retry-After``.

    The wait before retry ``n`` (0-based) is ``max(Retry-After, backoff * 2**n)``, times
    ``1 + jitter * U(0, 1)``, capped at ``max_delay``; a 503 without ``Retry-After`` (the worker
    running the request died) is not retried: the same request may kill the next one too.
    """

    retries: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        if response.status_code not in (429, 503) or attempt >= self.retries:
            return None
        wait = retry_after(response)
        if wait is None:
            return None
        wait = max(wait, self.backoff * 2.0**attempt) * (1 + self.jitter * self.rng.random())
        return min(wait, self.max_delay)


def _body(request: Body) -> Any:
    if isinstance(request, BaseModel):
        return request.model_dump(mode="json", exclude_unset=True)
    return dict(request)


def _figure_params(
    format: Format, width: int | None, height: int | None, dpi: int | None
) -> dict[str, int]:
    params = {"width": width, "height": height, "dpi": dpi}
    if format == "json" and any(v is not None for v in params.values()):
        raise ValueError("width, height and dpi size a figure: give format='png' or 'svg'")
    return {k: v for k, v in params.items() if v is not None}


def _result(response: httpx.Response, model: type[Response], format: Format) -> Response | bytes:
    if response.is_error:
        raise problem(response)
    return response.content if format != "json" else model.model_validate_json(response.content)


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise problem(response)
    return response


def _health(response: httpx.Response) -> Health:
    if response.status_code not in (200, 503):
        raise problem(response)
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    # {"status": "ready"}, or a problem+json 503 whose "state" says why
    state = body.get("state", body.get("status"))
    status = state if isinstance(state, str) else "ready" if response.is_success else "unavailable"
    return Health(response.status_code == 200, status, body)


def _transport_error(exc: httpx.TransportError, request: str) -> TransportError:
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"{request}: no answer in time ({type(exc).__name__})")
    return TransportError(f"{request}: {exc or type(exc).__name__}")


class _Base:
    def __init__(
        self,
        base_url: str,
        timeout: float | httpx.Timeout,
        retries: int,
        max_delay: float,
        jitter: float,
        rng: random.Random | None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.base_url = base_url
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.policy = RetryPolicy(
            retries, max_delay=max_delay, jitter=jitter, rng=rng or random.Random()
        )

    @staticmethod
    def _post_args(
        path: str,
        request: Body,
        format: Format,
        width: int | None,
        height: int | None,
        dpi: int | None,
    ) -> dict[str, Any]:
        return {
            "method": "POST",
            "url": path,
            "json": _body(request),
            "params": _figure_params(format, width, height, dpi),
            "headers": {"accept": _ACCEPT[format]},
        }


# --- a job split into parts ------------------------------------------------------------------

Parted = TypeVar("Parted", SweepResponse, SearchResponse)


def split(request: Body, parts: int) -> list[dict[str, Any]]:
    """The bodies of the ``parts`` requests that share ``request``'s job."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    body = _body(request)
    if body.get("part") is not None:
        raise ValueError("the request already names a part: give parts=1, or drop its part")
    return [{**body, "part": {"index": i, "count": parts}} for i in range(parts)]


def _in_order(answers: Sequence[Parted], what: str) -> tuple[list[Parted], int]:
    """The answers by part index, checked to be every part of one request; the number of
    rows or trials they share."""
    if not answers:
        raise MergeError("no answers to merge")
    found = []
    for i, answer in enumerate(answers):
        if answer.part is None:
            raise MergeError(f"answer {i} is a whole job's, not a part's")
        found.append(answer.part)
    if len({p.request for p in found}) > 1:
        raise MergeError("the parts answer different requests (their part.request differ)")
    count = found[0].count
    indices = sorted(p.index for p in found)
    if any(p.count != count for p in found) or indices != list(range(count)):
        raise MergeError(
            f"need parts 0 to {count - 1} once each, got indices {indices} of counts "
            f"{sorted({p.count for p in found})}"
        )
    ordered = sorted(answers, key=lambda a: a.part.index if a.part else 0)
    total = max((i for p in found for i in p.holds), default=-1) + 1
    for answer in ordered:
        assert answer.part is not None
        if answer.part.holds != list(range(answer.part.index, total, count)):
            raise MergeError(f"part {answer.part.index} holds {what} {answer.part.holds}")
    return ordered, total


def merge_sweep(answers: Sequence[SweepResponse]) -> SweepResponse:
    """The answer of the unsplit sweep from its parts' answers, in any order: each row from the
    part holding it, the edge of chaos from part 0 (which holds row 0)."""
    ordered, total = _in_order(answers, "rows")
    if total != len(ordered[0].y.values):
        raise MergeError(f"the parts hold {total} rows of {len(ordered[0].y.values)}")
    rows: dict[int, tuple[list[float | str | None] | None, ...]] = {}
    for answer in ordered:
        assert answer.part is not None
        for k, i in enumerate(answer.part.holds):
            rows[i] = tuple(g[k] if g else None for g in (answer.simulation, answer.theory))

    def grid(which: int) -> list[list[float | str | None]] | None:
        cells = [rows[i][which] for i in range(total)]
        return None if any(row is None for row in cells) else [row or [] for row in cells]

    first = ordered[0]
    return SweepResponse.model_validate(
        {
            **first.model_dump(exclude={"simulation", "theory", "part"}),
            "simulation": grid(0),
            "theory": grid(1),
            "part": None,
        }
    )


def merge_search(answers: Sequence[SearchResponse]) -> SearchResponse:
    """The answer of the unsplit search from its parts' answers, in any order: every trial
    ranked by validation accuracy, then lower validation loss, then the order of the draws
    (as the service ranks), the median over all trials, ``elapsed_ms`` summed."""
    ordered, _ = _in_order(answers, "trials")
    trials = [t for answer in ordered for t in answer.trials]
    ranked = sorted(
        trials,
        key=lambda t: (-t.val_accuracy, math.inf if t.val_loss is None else t.val_loss, t.index),
    )
    first = ordered[0]
    return SearchResponse.model_validate(
        {
            **first.model_dump(exclude={"trials", "part"}),
            "trials": [{**t.model_dump(), "rank": r} for r, t in enumerate(ranked, start=1)],
            "median_val_accuracy": float(np.median([t.val_accuracy for t in trials])),
            "elapsed_ms": round(sum(answer.elapsed_ms for answer in ordered), 3),
            "part": None,
        }
    )


def _parts_format(parts: int, format: Format) -> None:
    if parts != 1 and format != "json":
        raise ValueError("a job split into parts is answered as JSON: a figure needs parts=1")


# --- the clients -----------------------------------------------------------------------------


def _auth(api_key: str | None) -> dict[str, str]:
    """``api_key``: the service's API key (``INITSCOPE_API_KEYS``), sent on every request."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


class Client(_Base):
    """Blocking client. ``transport`` replaces the network (``httpx.MockTransport``, tests)."""

    def __init__(
        self,
        base_url: str = "http://localhost:8000",
        *,
        timeout: float | httpx.Timeout = 60.0,
        retries: int = 3,
        max_delay: float = 30.0,
        jitter: float = 0.1,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        api_key: str | None = None,
    ) -> None:
        super().__init__(base_url, timeout, retries, max_delay, jitter, rng)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url, timeout=self.timeout, transport=transport, headers=_auth(api_key)
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise _transport_error(exc, f"{method} {self.base_url}{url}") from exc

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            response = self._send_once(method, url, **kwargs)
            wait = self.policy.delay(response, attempt)
            if wait is None:
                return response
            self._sleep(wait)
            attempt += 1

    def _parts(self, path: str, request: Body, parts: int, model: type[Parted]) -> list[Parted]:
        """The parts of ``request``'s job, sent at once (a thread each), answered."""

        def send(body: dict[str, Any]) -> httpx.Response:
            return self._send(**self._post_args(path, body, "json", None, None, None))

        with ThreadPoolExecutor(max_workers=parts) as threads:
            answers = list(threads.map(send, split(request, parts)))
        return [model.model_validate_json(_checked(answer).content) for answer in answers]

    @overload
    def analyze(
        self, request: AnalyzeRequest | Mapping[str, Any], *, format: Literal["json"] = ...
    ) -> AnalyzeResponse: ...
    @overload
    def analyze(
        self,
        request: AnalyzeRequest | Mapping[str, Any],
        *,
        format: Figure,
        width: int | None = ...,
        height: int | None = ...,
        dpi: int | None = ...,
    ) -> bytes: ...
    def analyze(
        self,
        request: AnalyzeRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
    ) -> AnalyzeResponse | bytes:
        """``POST /analyze``: the analysis, or its figure as PNG or SVG bytes."""
        args = self._post_args("/analyze", request, format, width, height, dpi)
        return _result(self._send(**args), AnalyzeResponse, format)

    @overload
    def compare(
        self, request: CompareRequest | Mapping[str, Any], *, format: Literal["json"] = ...
    ) -> CompareResponse: ...
    @overload
    def compare(
        self,
        request: CompareRequest | Mapping[str, Any],
        *,
        format: Figure,
        width: int | None = ...,
        height: int | None = ...,
        dpi: int | None = ...,
    ) -> bytes: ...
    def compare(
        self,
        request: CompareRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
    ) -> CompareResponse | bytes:
        """``POST /compare``: every variant's analysis and the table, or one figure."""
        args = self._post_args("/compare", request, format, width, height, dpi)
        return _result(self._send(**args), CompareResponse, format)

    @overload
    def sweep(
        self,
        request: SweepRequest | Mapping[str, Any],
        *,
        format: Literal["json"] = ...,
        parts: int = ...,
    ) -> SweepResponse: ...
    @overload
    def sweep(
        self,
        request: SweepRequest | Mapping[str, Any],
        *,
        format: Figure,
        width: int | None = ...,
        height: int | None = ...,
        dpi: int | None = ...,
    ) -> bytes: ...
    def sweep(
        self,
        request: SweepRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
        parts: int = 1,
    ) -> SweepResponse | bytes:
        """``POST /sweep``: the metric over the grid, or the heatmap. ``parts=k`` sends k
        requests at once, each computing every k-th row, and merges their JSON."""
        _parts_format(parts, format)
        if parts != 1:
            return merge_sweep(self._parts("/sweep", request, parts, SweepResponse))
        args = self._post_args("/sweep", request, format, width, height, dpi)
        return _result(self._send(**args), SweepResponse, format)

    def train(
        self,
        request: TrainRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
    ) -> TrainResponse | bytes:
        """``POST /train``: every run's history and diagnosis check, or the curves."""
        args = self._post_args("/train", request, format, width, height, dpi)
        return _result(self._send(**args), TrainResponse, format)

    @overload
    def search(
        self,
        request: SearchRequest | Mapping[str, Any],
        *,
        format: Literal["json"] = ...,
        parts: int = ...,
    ) -> SearchResponse: ...
    @overload
    def search(
        self,
        request: SearchRequest | Mapping[str, Any],
        *,
        format: Figure,
        width: int | None = ...,
        height: int | None = ...,
        dpi: int | None = ...,
    ) -> bytes: ...
    def search(
        self,
        request: SearchRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
        parts: int = 1,
    ) -> SearchResponse | bytes:
        """``POST /search``: the ranked trials, or their scatter plot. ``parts=k`` sends k
        requests at once, each training every k-th trial, and merges their JSON."""
        _parts_format(parts, format)
        if parts != 1:
            return merge_search(self._parts("/search", request, parts, SearchResponse))
        args = self._post_args("/search", request, format, width, height, dpi)
        return _result(self._send(**args), SearchResponse, format)

    def initializers(self) -> list[InitializerInfo]:
        """``GET /initializers``."""
        return _INITIALIZERS.validate_json(_checked(self._send("GET", "/initializers")).content)

    def activations(self) -> list[ActivationInfo]:
        """``GET /activations``."""
        return _ACTIVATIONS.validate_json(_checked(self._send("GET", "/activations")).content)

    def health(self) -> Health:
        """``GET /readyz`` once (a 503 here is an answer, not retried): ready or not, and why."""
        response = self._send_once("GET", "/readyz")
        return _health(response)


class AsyncClient(_Base):
    """The same as :class:`Client` for asyncio; ``transport`` may be ``httpx.ASGITransport``."""

    def __init__(
        self,
        base_url: str = "http://localhost:8000",
        *,
        timeout: float | httpx.Timeout = 60.0,
        retries: int = 3,
        max_delay: float = 30.0,
        jitter: float = 0.1,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        api_key: str | None = None,
    ) -> None:
        super().__init__(base_url, timeout, retries, max_delay, jitter, rng)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=self.timeout, transport=transport, headers=_auth(api_key)
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise _transport_error(exc, f"{method} {self.base_url}{url}") from exc

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            response = await self._send_once(method, url, **kwargs)
            wait = self.policy.delay(response, attempt)
            if wait is None:
                return response
            await self._sleep(wait)
            attempt += 1

    async def _parts(
        self, path: str, request: Body, parts: int, model: type[Parted]
    ) -> list[Parted]:
        """The parts of ``request``'s job, sent at once, answered."""
        answers = await asyncio.gather(
            *(
                self._send(**self._post_args(path, body, "json", None, None, None))
                for body in split(request, parts)
            )
        )
        return [model.model_validate_json(_checked(answer).content) for answer in answers]

    @overload
    async def analyze(
        self, request: AnalyzeRequest | Mapping[str, Any], *, format: Literal["json"] = ...
    ) -> AnalyzeResponse: ...
    @overload
    async def analyze(
        self,
        request: AnalyzeRequest | Mapping[str, Any],
        *,
        format: Figure,
        width: int | None = ...,
        height: int | None = ...,
        dpi: int | None = ...,
    ) -> bytes: ...
    async def analyze(
        self,
        request: AnalyzeRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
    ) -> AnalyzeResponse | bytes:
        """``POST /analyze``: the analysis, or its figure as PNG or SVG bytes."""
        args = self._post_args("/analyze", request, format, width, height, dpi)
        return _result(await self._send(**args), AnalyzeResponse, format)

    @overload
    async def compare(
        self, request: CompareRequest | Mapping[str, Any], *, format: Literal["json"] = ...
    ) -> CompareResponse: ...
    @overload
    async def compare(
        self,
        request: CompareRequest | Mapping[str, Any],
        *,
        format: Figure,
        width: int | None = ...,
        height: int | None = ...,
        dpi: int | None = ...,
    ) -> bytes: ...
    async def compare(
        self,
        request: CompareRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
    ) -> CompareResponse | bytes:
        """``POST /compare``: every variant's analysis and the table, or one figure."""
        args = self._post_args("/compare", request, format, width, height, dpi)
        return _result(await self._send(**args), CompareResponse, format)

    @overload
    async def sweep(
        self,
        request: SweepRequest | Mapping[str, Any],
        *,
        format: Literal["json"] = ...,
        parts: int = ...,
    ) -> SweepResponse: ...
    @overload
    async def sweep(
        self,
        request: SweepRequest | Mapping[str, Any],
        *,
        format: Figure,
        width: int | None = ...,
        height: int | None = ...,
        dpi: int | None = ...,
    ) -> bytes: ...
    async def sweep(
        self,
        request: SweepRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
        parts: int = 1,
    ) -> SweepResponse | bytes:
        """``POST /sweep``: the metric over the grid, or the heatmap. ``parts=k`` sends k
        requests at once, each computing every k-th row, and merges their JSON."""
        _parts_format(parts, format)
        if parts != 1:
            return merge_sweep(await self._parts("/sweep", request, parts, SweepResponse))
        args = self._post_args("/sweep", request, format, width, height, dpi)
        return _result(await self._send(**args), SweepResponse, format)

    async def train(
        self,
        request: TrainRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
    ) -> TrainResponse | bytes:
        """``POST /train``: every run's history and diagnosis check, or the curves."""
        args = self._post_args("/train", request, format, width, height, dpi)
        return _result(await self._send(**args), TrainResponse, format)

    @overload
    async def search(
        self,
        request: SearchRequest | Mapping[str, Any],
        *,
        format: Literal["json"] = ...,
        parts: int = ...,
    ) -> SearchResponse: ...
    @overload
    async def search(
        self,
        request: SearchRequest | Mapping[str, Any],
        *,
        format: Figure,
        width: int | None = ...,
        height: int | None = ...,
        dpi: int | None = ...,
    ) -> bytes: ...
    async def search(
        self,
        request: SearchRequest | Mapping[str, Any],
        *,
        format: Format = "json",
        width: int | None = None,
        height: int | None = None,
        dpi: int | None = None,
        parts: int = 1,
    ) -> SearchResponse | bytes:
        """``POST /search``: the ranked trials, or their scatter plot. ``parts=k`` sends k
        requests at once, each training every k-th trial, and merges their JSON."""
        _parts_format(parts, format)
        if parts != 1:
            return merge_search(await self._parts("/search", request, parts, SearchResponse))
        args = self._post_args("/search", request, format, width, height, dpi)
        return _result(await self._send(**args), SearchResponse, format)

    async def initializers(self) -> list[InitializerInfo]:
        """``GET /initializers``."""
        return _INITIALIZERS.validate_json(
            _checked(await self._send("GET", "/initializers")).content
        )

    async def activations(self) -> list[ActivationInfo]:
        """``GET /activations``."""
        return _ACTIVATIONS.validate_json(_checked(await self._send("GET", "/activations")).content)

    async def health(self) -> Health:
        """``GET /readyz`` once (a 503 here is an answer, not retried): ready or not, and why."""
        response = await self._send_once("GET", "/readyz")
        return _health(response)
