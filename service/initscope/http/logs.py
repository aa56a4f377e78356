"""JSON logs, a request id on every response, and one access line per request.

``X-Request-ID`` is taken from the request when it is 1-128 characters of ``A-Z a-z 0-9 . _ : -``
(anything else is replaced, never echoed), else a new ``uuid4().hex``. It is returned on every
response, is ``request.state.request_id`` for handlers, and is added to every log record
emitted while the request is handled.

Serving (:func:`initscope.http.server.serve`): uvicorn gets ``log_config(level, json)`` and
``access_log=False`` -- the access line written here replaces uvicorn's; elsewhere
``logs.configure(level)``.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI, Request
from pythonjsonlogger.core import RESERVED_ATTRS
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from initscope.http.metrics import route_template

REQUEST_ID_HEADER = "X-Request-ID"
QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})  # probes and scrapes: not logged
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

access_log = logging.getLogger("initscope.access")


def request_id_from(header: str | None) -> str:
    """The client's id when it is safe to log and echo, else a fresh one."""
    if header is not None and _SAFE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def request_id(request: Request) -> str:
    """This request's id (for handlers that build responses outside the middleware)."""
    return str(getattr(request.state, "request_id", None) or request_id_from(None))


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and (current := _request_id.get()) is not None:
            record.request_id = current
        return True


class RequestLogMiddleware:
    """Request id in and out, and the access line (pure ASGI: no body buffering, no task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        # scope["state"] is what request.state reads, here and in the 500 handler outside us.
        scope.setdefault("state", {})["request_id"] = rid
        token = _request_id.set(rid)
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            exc.add_note(f"request_id={rid}")  # for the server's traceback
            raise
        finally:
            _request_id.reset(token)
            if scope["path"] not in QUIET_PATHS:
                _log_access(scope, status, time.perf_counter() - start, rid)


def _log_access(scope: Scope, status: int, seconds: float, rid: str) -> None:
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "route": route_template(scope),
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "request_id": rid,
        "client": client[0] if client else None,
    }
    access_log.info(
        "%s %s %d %.1f ms", fields["method"], fields["path"], status, seconds * 1000, extra=fields
    )


def install(app: FastAPI) -> None:
    app.add_middleware(RequestLogMiddleware)


def log_config(level: str = "INFO", json: bool = True) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict, also uvicorn's ``log_config``: every record on
    stdout, one JSON object a line (or plain text), uvicorn's access log off."""
    level = level.upper()
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],  # uvicorn's ANSI copy
            "timestamp": True,
        }
        if json
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "loggers": {
            "initscope": {"level": level, "propagate": True},
            "uvicorn": {"level": level, "propagate": True},
            "uvicorn.access": {"level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stdout"], "level": level},
    }


def configure(level: str = "INFO", json: bool = True) -> None:
    logging.config.dictConfig(log_config(level, json))
