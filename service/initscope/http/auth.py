"""Who may call: API keys as ``Authorization: Bearer <key>`` (RFC 6750), and a per-key share of
the pool.

Off unless ``INITSCOPE_API_KEYS`` or ``INITSCOPE_API_KEYS_FILE`` names a key. Then every
computing operation (the ``POST``s) needs one of the keys, or answers 401 problem+json with
``WWW-Authenticate: Bearer realm="initscope"`` (plus ``error="invalid_token"`` when a key was
given and is not one of them). The probes, the documentation, the OpenAPI document, the
catalogue (static, the same facts as the OpenAPI document, never in the pool) and ``/metrics``
(scraped by Prometheus, counts only, keys as hashed ids; the NetworkPolicy limits who reaches
it) stay open.

A key may hold at most ``Settings.key_limit`` requests at once (``key_share`` of what the pool
admits, running and queued): beyond it 429 problem+json with ``Retry-After``, so one caller
cannot take every slot. Without keys there is no per-caller limit: nothing identifies a caller
that it could not forge, and behind a Service or an ingress every client has the proxy's
address; the pool's own admission (503 ``Retry-After``) still bounds the work.

A presented token is hashed (SHA-256) and compared with every key's hash by
``hmac.compare_digest``, all of them, whatever matches: the time does not say which key matched
or how much of one did. Keys are never logged: the access log records no header, and metrics
and logs name a key by :func:`key_id`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NoReturn, Protocol

from fastapi import Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from initscope.config import Settings
from initscope.errors import InitscopeError
from initscope.http import problems

SCHEME = "bearer"  # the name of the security scheme in the OpenAPI document
REALM = "initscope"
log = logging.getLogger("initscope.auth")

bearer = HTTPBearer(
    scheme_name=SCHEME,
    description="An API key of this deployment (`INITSCOPE_API_KEYS`, "
    "`INITSCOPE_API_KEYS_FILE`), sent as `Authorization: Bearer <key>`. Needed by the "
    "computing operations when the server has keys; ignored when it has none.",
    auto_error=False,
)


def key_id(key: str) -> str:
    """A key's name in metrics and logs: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class Unauthorized(InitscopeError):
    status = status.HTTP_401_UNAUTHORIZED
    title = "Unauthorized"

    def __init__(self, reason: Literal["missing", "invalid"]) -> None:
        super().__init__(
            "this operation needs an API key: send Authorization: Bearer <key>"
            if reason == "missing"
            else "the API key is not one of this server's keys"
        )
        self.reason = reason


class TooManyRequests(InitscopeError):
    """Answered by ``problems.domain_error``: 429 with ``Retry-After``."""

    status = status.HTTP_429_TOO_MANY_REQUESTS
    title = "Too many requests"

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            f"this API key already has {limit} request{'s' * (limit != 1)} in flight, its "
            f"share of the pool; retry in {retry_after} s"
        )
        self.retry_after = retry_after


class KeyObserver(Protocol):
    """What the gate reports (``initscope.http.metrics.Metrics``); keys by :func:`key_id`."""

    def keys_configured(self, keys: list[str]) -> None: ...
    def key_request(self, key: str) -> None: ...
    def key_rejected(self, key: str, reason: str) -> None: ...
    def unauthorized(self, reason: str) -> None: ...


@dataclass(frozen=True)
class Caller:
    """Who is calling: ``key`` is the hashed id of the key, None when auth is off."""

    key: str | None


class Gate:
    """The keys of one app and the requests each key has in flight (the event loop's only)."""

    def __init__(self, settings: Settings, observer: KeyObserver | None = None) -> None:
        keys = settings.bearer_keys
        self._digests = tuple((hashlib.sha256(k.encode()).digest(), key_id(k)) for k in keys)
        self.limit = settings.key_limit
        self.retry_after = settings.retry_after_s
        self.in_flight: Counter[str] = Counter()
        self._observer = observer
        if settings.api_keys_file is not None and not settings.api_keys_file.exists():
            log.warning(
                "INITSCOPE_API_KEYS_FILE %s does not exist: it adds no key", settings.api_keys_file
            )
        if observer is not None:
            observer.keys_configured([name for _, name in self._digests])

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, token: str | None) -> Caller:
        """The caller a token names; :class:`Unauthorized` when keys are on and it names none."""
        if not self.enabled:
            return Caller(None)
        if token is None:
            self._refused("missing")
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for digest, name in self._digests:  # every key, no early exit
            if hmac.compare_digest(presented, digest):
                found = name
        if found is None:
            self._refused("invalid")
        return Caller(found)

    def _refused(self, reason: Literal["missing", "invalid"]) -> NoReturn:
        if self._observer is not None:
            self._observer.unauthorized(reason)
        raise Unauthorized(reason)

    def enter(self, caller: Caller) -> None:
        """Count the caller's request in, or refuse it (429) at the key's share."""
        if caller.key is None:
            return
        if self.in_flight[caller.key] >= self.limit:
            if self._observer is not None:
                self._observer.key_rejected(caller.key, "share")
            raise TooManyRequests(self.limit, self.retry_after)
        self.in_flight[caller.key] += 1
        if self._observer is not None:
            self._observer.key_request(caller.key)

    def leave(self, caller: Caller) -> None:
        if caller.key is None:
            return
        self.in_flight[caller.key] -= 1
        if not self.in_flight[caller.key]:
            del self.in_flight[caller.key]


def _gate(request: Request) -> Gate:
    gate: Gate = request.app.state.gate
    return gate


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller, or 401: a route dependency that runs before the body is validated."""
    return _gate(request).identify(credentials.credentials if credentials else None)


async def admitted(
    request: Request, caller: Annotated[Caller, Depends(authenticate)]
) -> AsyncIterator[Caller]:
    """The caller, holding one of its key's slots while the route works (429 when none is
    free)."""
    gate = _gate(request)
    gate.enter(caller)
    try:
        yield caller
    finally:
        gate.leave(caller)


Admitted = Annotated[Caller, Depends(admitted)]


def _challenge(reason: Literal["missing", "invalid"]) -> str:
    """RFC 6750 section 3: no error code when no credentials came, invalid_token otherwise."""
    if reason == "missing":
        return f'Bearer realm="{REALM}"'
    return f'Bearer realm="{REALM}", error="invalid_token"'


async def unauthorized(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unauthorized)
    return problems.problem(
        request.scope,
        exc.status,
        str(exc),
        type_=problems.TYPES + "unauthorized",
        title=exc.title,
        headers={"WWW-Authenticate": _challenge(exc.reason)},
    )


def responses() -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses=`` entries of a protected operation: 401 and 429."""
    content = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    return {
        status.HTTP_401_UNAUTHORIZED: {
            "description": "The server has API keys and none, or a wrong one, was sent.",
            "content": content,
            "headers": {
                "WWW-Authenticate": {
                    "description": 'The challenge: `Bearer realm="initscope"`, with '
                    '`error="invalid_token"` when the key was wrong (RFC 6750).',
                    "schema": {"type": "string"},
                }
            },
        },
        status.HTTP_429_TOO_MANY_REQUESTS: {
            "description": "This API key already holds its share of the pool.",
            "content": content,
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer"},
                }
            },
        },
    }


def install(app: FastAPI, settings: Settings, observer: KeyObserver | None = None) -> Gate:
    """Read the keys (``app.state.gate``) and answer 401 as RFC 9457 problem details."""
    gate = Gate(settings, observer)
    app.state.gate = gate
    app.add_exception_handler(Unauthorized, unauthorized)
    return gate
