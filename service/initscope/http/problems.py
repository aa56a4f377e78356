"""Every error response as RFC 9457 problem details (``application/problem+json``).

``type`` names the kind of problem and never changes for it:

- ``https://initscope.dev/problems/validation`` (422): the request is not a valid request; its
  ``errors`` member holds one entry per offending field (``loc``, ``msg``, ``type``, ``input``,
  ``ctx``), whether the schema or a service limit refused it.
- ``https://initscope.dev/problems/not-acceptable`` (406): no accepted media type can be made.
- ``https://initscope.dev/problems/unsupported-media-type`` (415): the body of a JSON operation
  is declared as something else (or not declared); ``Accept-Post`` lists what is read.
- ``https://initscope.dev/problems/content-too-large`` (413): the body is over ``max_body_bytes``.
- ``https://initscope.dev/problems/<kebab-case class name>``: a domain error of
  :mod:`initscope.errors` that declares its own ``status`` and ``title`` (``overloaded``,
  ``shutting-down``, ``worker-lost``, ``out-of-memory``, ``deadline-exceeded``), with
  ``Retry-After`` when the error carries ``retry_after``.
- ``https://initscope.dev/problems/internal`` (500): a bug; the body says nothing more.
- ``about:blank``: plain HTTP errors with nothing to add to the status (404, 405, ...); as RFC
  9457 section 4.2.1 asks, ``title`` is then the status phrase.

``instance`` is the request path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import URL, Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from initscope.errors import InitscopeError, InvalidRequest, NotAcceptable, UnsupportedMediaType
from initscope.http import logs, media

MEDIA_TYPE = "application/problem+json"
TYPES = "https://initscope.dev/problems/"
VALIDATION = TYPES + "validation"
NOT_ACCEPTABLE = TYPES + "not-acceptable"
UNSUPPORTED_MEDIA_TYPE = TYPES + "unsupported-media-type"
CONTENT_TOO_LARGE = TYPES + "content-too-large"
INTERNAL = TYPES + "internal"


class FieldProblem(BaseModel):
    """One field the request got wrong."""

    type: str = Field(description="Machine-readable error code, e.g. `greater_than`.")
    loc: list[str | int] = Field(description="Where: `body`, then keys and indices.")
    msg: str = Field(description="What is wrong, for a person.")
    input: Any = Field(default=None, description="The offending value as received.")
    ctx: dict[str, Any] | None = Field(default=None, description="The rule's parameters.")


class ProblemDetails(BaseModel):
    """An error, as RFC 9457 problem details."""

    model_config = ConfigDict(title="ProblemDetails")

    type: str = Field(description="URI naming the kind of problem (see the API description).")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str = Field(description="The request path.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="422 only: one entry per offending field."
    )


def problem(
    scope: Scope,
    status_code: int,
    detail: str,
    *,
    type_: str = "about:blank",
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        **extensions,
        "type": type_,
        "title": title or HTTPStatus(status_code).phrase,
        "status": status_code,
        "detail": detail,
        "instance": URL(scope=scope).path,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(
        _json_safe(jsonable_encoder(body)),
        status_code=status_code,
        headers=dict(headers or {}),
        media_type=MEDIA_TYPE,
    )


# Fields holding a tagged union: pydantic puts the tag in the error location
# (network.layers.layers.0.init.normal.std); users wrote network.layers.0.init.std.
_TAGGED = frozenset({"network", "activation", "init", "bias", "distribution", "gradient"})


def clean_loc(loc: Sequence[str | int]) -> list[str | int]:
    return [
        part
        for i, part in enumerate(loc)
        if not (i and isinstance(part, str) and loc[i - 1] in _TAGGED)
    ]


def _json_safe(value: Any) -> Any:
    """Echoed input may hold NaN or inf (Python's JSON parser accepts them): spell them out."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _echo(value: Any) -> Any:
    """An offending input as JSON can hold it, whatever it is: bytes (a body that was not
    parsed) as text with undecodable bytes escaped, anything unknown as its ``str``."""
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {str(_echo(k)): _echo(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_echo(v) for v in value]
    return str(value)


def _unprocessable(scope: Scope, errors: Iterable[Mapping[str, Any]]) -> JSONResponse:
    items = []
    for error in errors:
        item = {
            "type": error["type"],
            "loc": list(error["loc"]),
            "msg": error["msg"],
            "input": _echo(error.get("input")),
        }
        if ctx := error.get("ctx"):
            item["ctx"] = {
                k: v if isinstance(v, int | float | str) else str(v) for k, v in ctx.items()
            }
        items.append(item)
    return problem(
        scope,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        validation_detail([(e["loc"], e["msg"]) for e in items]),
        type_=VALIDATION,
        title=VALIDATION_TITLE,
        errors=items,
    )


VALIDATION_TITLE = "Invalid request"


def validation_detail(fields: Sequence[tuple[Sequence[str | int], str]]) -> str:
    """The 422's one-line ``detail``: how many fields, and the first three of them."""
    where = [f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in fields[:3]]
    more = f"; and {len(fields) - 3} more" if len(fields) > 3 else ""
    noun = "field is" if len(fields) == 1 else "fields are"
    return f"{len(fields)} {noun} invalid: {'; '.join(where)}{more}"


async def invalid_body(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _unprocessable(request.scope, ({**e, "loc": clean_loc(e["loc"])} for e in exc.errors()))


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidRequest)
    return _unprocessable(
        request.scope,
        ({"type": e.type, "loc": e.loc, "msg": e.msg, "input": e.input} for e in exc.errors),
    )


async def not_acceptable(request: Request, exc: Exception) -> JSONResponse:
    return problem(
        request.scope,
        status.HTTP_406_NOT_ACCEPTABLE,
        str(exc),
        type_=NOT_ACCEPTABLE,
        title="Not acceptable",
        headers={"Vary": "Accept"},
    )


async def unsupported_media_type(request: Request, exc: Exception) -> JSONResponse:
    return problem(
        request.scope,
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        str(exc),
        type_=UNSUPPORTED_MEDIA_TYPE,
        title="Unsupported media type",
        headers={"Accept-Post": ", ".join(media.JSON_BODY_TYPES)},
    )


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    """Any :class:`InitscopeError` declaring ``status`` and ``title``, e.g. 503 Overloaded."""
    code = getattr(exc, "status", None)
    if not isinstance(code, int):
        return await internal_error(request, exc)
    headers = {}
    if (retry_after := getattr(exc, "retry_after", None)) is not None:
        headers["Retry-After"] = str(math.ceil(retry_after))
    title = getattr(exc, "title", None) or HTTPStatus(code).phrase
    return problem(
        request.scope,
        code,
        str(exc) or title,
        type_=TYPES + _kebab(type(exc).__name__),
        title=title,
        headers=headers,
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Errors of routing and the framework (404, 405 with ``Allow``, 413 ...)."""
    assert isinstance(exc, HTTPException)
    code = exc.status_code
    detail = exc.detail
    if code == status.HTTP_400_BAD_REQUEST and exc.__cause__ is not None:
        detail = f"{detail}: {exc.__cause__}"  # e.g. a body that is not UTF-8
    elif code == status.HTTP_404_NOT_FOUND and detail == HTTPStatus(code).phrase:
        detail = f"nothing at {request.url.path}; the operations are listed at /docs"
    elif code == status.HTTP_405_METHOD_NOT_ALLOWED:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
    elif code == status.HTTP_413_CONTENT_TOO_LARGE:
        return problem(
            request.scope, code, detail, type_=CONTENT_TOO_LARGE, title="Content too large"
        )
    return problem(request.scope, code, str(detail), headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Last resort: the server logs the traceback; the client learns only that it happened,
    and the request id to quote (this runs outside every middleware, in Starlette's
    ServerErrorMiddleware, so the id header is set here)."""
    return problem(
        request.scope,
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        "the server failed to handle this request; the error has been logged",
        type_=INTERNAL,
        title="Internal error",
        headers={logs.REQUEST_ID_HEADER: logs.request_id(request)},
    )


class ContentTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE, f"the request body is over {limit} bytes"
        )


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413: at once when Content-Length says so,
    else while the body streams in (chunked transfer), counting the bytes received."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ContentTooLarge(self.max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except ContentTooLarge:  # raised where nothing turned it into a response
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = ContentTooLarge(self.max_bytes)
        response = problem(
            scope,
            exc.status_code,
            exc.detail,
            type_=CONTENT_TOO_LARGE,
            title="Content too large",
        )
        await response(scope, receive, send)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for these error statuses, each a ProblemDetails."""
    described = {
        status.HTTP_400_BAD_REQUEST: "The body could not be read, e.g. it is not UTF-8.",
        status.HTTP_406_NOT_ACCEPTABLE: "None of the accepted media types can be produced.",
        status.HTTP_413_CONTENT_TOO_LARGE: "The request body is over the size limit.",
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "The body is not declared as JSON: send "
        "`Content-Type: application/json` (or `application/*+json`).",
        status.HTTP_422_UNPROCESSABLE_CONTENT: "The request is invalid; `errors` names each "
        "offending field.",
        status.HTTP_503_SERVICE_UNAVAILABLE: "Overloaded or shutting down (retry after "
        "`Retry-After` seconds), or the worker running the request died.",
        status.HTTP_504_GATEWAY_TIMEOUT: "The computation ran over its deadline.",
        status.HTTP_507_INSUFFICIENT_STORAGE: "The computation outgrew the worker's memory cap.",
    }
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    entries: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"description": described[code], "content": content}
        if code == status.HTTP_503_SERVICE_UNAVAILABLE:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                }
            }
        elif code == status.HTTP_406_NOT_ACCEPTABLE:
            entry["headers"] = {"Vary": {"schema": {"type": "string"}}}
        elif code == status.HTTP_415_UNSUPPORTED_MEDIA_TYPE:
            entry["headers"] = {
                "Accept-Post": {
                    "description": "The media types the operation reads.",
                    "schema": {"type": "string"},
                }
            }
        entries[code] = entry
    return entries


def install(app: FastAPI, max_body_bytes: int) -> None:
    """Register the handlers and the body limit."""
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(InvalidRequest, invalid_request)
    app.add_exception_handler(NotAcceptable, not_acceptable)
    app.add_exception_handler(UnsupportedMediaType, unsupported_media_type)
    app.add_exception_handler(InitscopeError, domain_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
