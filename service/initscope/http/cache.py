"""Repeat requests: results are deterministic, so a response is named by its request.

The entity tag is a SHA-256 of the canonical request -- route, validated body
(``model_dump(mode="json")``, sorted keys, no spaces), representation, figure options (images
only) and the service version -- so it is the same in every process and replica, and a matching
``If-None-Match`` is answered 304 before any work. The bodies of 200 responses are kept in an
LRU bounded by entries and bytes, owned by the app (``app.state.cache``).

The endpoints are POSTs, but safe ones (a computation, like the proposed HTTP QUERY method):
a matching ``If-None-Match`` gets 304 as for a GET, not the 412 RFC 9110 prescribes for
state-changing methods. ``Cache-Control: no-cache`` on a request skips the stored copy
(the result is recomputed and stored again).

Single flight: while a request computes a tag's response (the leader), identical requests
(same tag) wait for it instead of computing and get its bytes and headers (``coalesced``); they
hold no slot of the pool. When the leader fails they raise its exception (the same 4xx/5xx
problem); when it is cancelled (client gone, server stopping) one of them leads instead. A
``no-cache`` request never joins a computation in flight: it asks to see the result computed
for it (``bench_cache.py`` and clients that distrust a stored copy send it), so it computes
its own, while requests without the header may join it. Waiters share the leader's deadline,
not their own: a leader that timed out answers its waiters 504 too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from initscope import __version__
from initscope.config import Settings
from initscope.http.media import Representation
from initscope.jobs import FigureOptions


@dataclass(frozen=True)
class CacheConfig:
    """``Settings.cache_max_entries``, ``cache_max_bytes`` and ``cache_max_age``; 0 entries or
    bytes turns the store off (ETags and 304s remain)."""

    max_entries: int = 256
    max_bytes: int = 64 * 2**20
    max_age: int = 86_400  # seconds a client may reuse a result before revalidating

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheConfig:
        return cls(settings.cache_max_entries, settings.cache_max_bytes, settings.cache_max_age)


@dataclass(frozen=True)
class Stored:
    body: bytes
    media_type: str


@dataclass(frozen=True)
class Answer:
    """A leader's response, as each of its waiters is answered: status, body, raw headers."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def of(cls, response: Response) -> Answer:
        return cls(response.status_code, bytes(response.body), tuple(response.raw_headers))

    def response(self) -> Response:
        response = Response(self.body, status_code=self.status)
        response.raw_headers = list(self.headers)
        return response


# What a flight resolves to: the leader's answer, or None when it was cancelled (retry).
Flight = asyncio.Future[Answer | None]


class ResponseCache:
    """Least-recently-used bodies, at most ``max_entries`` of them and ``max_bytes`` in all,
    and the computations in flight by tag."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self._entries: OrderedDict[str, Stored] = OrderedDict()
        self.flights: dict[str, Flight] = {}
        self.size = 0  # bytes of the stored bodies
        self.hits = self.misses = self.not_modified = self.evictions = self.coalesced = 0

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, key: str) -> Stored | None:
        """The stored body (now the most recently used), not counted as a lookup."""
        stored = self._entries.get(key)
        if stored is not None:
            self._entries.move_to_end(key)
        return stored

    def get(self, key: str) -> Stored | None:
        stored = self.find(key)
        if stored is None:
            self.misses += 1
        else:
            self.hits += 1
        return stored

    def put(self, key: str, stored: Stored) -> None:
        if len(stored.body) > self.config.max_bytes or self.config.max_entries == 0:
            return
        if (old := self._entries.pop(key, None)) is not None:
            self.size -= len(old.body)
        self._entries[key] = stored
        self.size += len(stored.body)
        while len(self._entries) > self.config.max_entries or self.size > self.config.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted.body)
            self.evictions += 1


def etag(
    route: str,
    body: BaseModel,
    representation: Representation,
    options: FigureOptions,
    version: str = __version__,
) -> str:
    """The strong entity tag of a request's 200 response (a quoted hex SHA-256)."""
    canonical = {
        "route": route,
        "request": body.model_dump(mode="json"),
        "representation": representation,
        "figure": None if representation == "json" else dataclasses.asdict(options),
        "version": version,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return f'"{hashlib.sha256(text.encode()).hexdigest()}"'


def _matches(if_none_match: str | None, tag: str) -> bool:
    """Weak comparison against each tag in the header, as RFC 9110 asks for If-None-Match."""
    if not if_none_match:
        return False
    candidates = (t.strip().removeprefix("W/") for t in if_none_match.split(","))
    return any(candidate in ("*", tag) for candidate in candidates)


async def respond(
    request: Request,
    body: BaseModel,
    wanted: tuple[Representation, FigureOptions],
    compute: Callable[[], Awaitable[Response]],
) -> Response:
    """304, the stored body, the answer of an identical request in flight, or ``compute()``
    (stored when it is a 200), each with the tag."""
    cache: ResponseCache = request.app.state.cache
    route = getattr(request.scope.get("route"), "path", request.url.path)
    tag = etag(route, body, *wanted)
    headers = {
        "ETag": tag,
        "Cache-Control": f"public, max-age={cache.config.max_age}",
        "Vary": "Accept",
    }
    if _matches(request.headers.get("if-none-match"), tag):
        cache.not_modified += 1
        return Response(status_code=304, headers=headers)
    no_cache = "no-cache" in request.headers.get("cache-control", "").lower()
    if not no_cache:
        if (stored := cache.find(tag)) is not None:
            cache.hits += 1
            return Response(stored.body, media_type=stored.media_type, headers=headers)
        if tag in cache.flights:
            cache.coalesced += 1
            while (flight := cache.flights.get(tag)) is not None:
                # shielded: a waiter that goes away does not cancel the leader's flight
                if (answer := await asyncio.shield(flight)) is not None:
                    return answer.response()
            # the leader was cancelled and no other waiter leads yet: this one does
            return await _lead(cache, tag, headers, compute)
    cache.misses += 1
    return await _lead(cache, tag, headers, compute)


async def _lead(
    cache: ResponseCache,
    tag: str,
    headers: dict[str, str],
    compute: Callable[[], Awaitable[Response]],
) -> Response:
    """``compute()``, its answer (or its exception) handed to the requests that wait for it;
    a ``no-cache`` request that finds another in flight computes alone."""
    flight: Flight | None = None
    if tag not in cache.flights:
        flight = asyncio.get_running_loop().create_future()
        flight.add_done_callback(_retrieved)
        cache.flights[tag] = flight
    try:
        response = await compute()
        if response.status_code == 200:
            response.headers.update(headers)
            cache.put(tag, Stored(bytes(response.body), response.media_type or ""))
    except Exception as exc:
        if flight is not None:
            flight.set_exception(exc)
        raise
    except BaseException:  # cancelled: a waiter computes instead
        if flight is not None:
            flight.set_result(None)
        raise
    finally:
        if flight is not None and cache.flights.get(tag) is flight:
            del cache.flights[tag]
    if flight is not None:
        flight.set_result(Answer.of(response))
    return response


def _retrieved(flight: Flight) -> None:
    """Marks a leader's exception as seen, so a flight nobody joined logs nothing."""
    if not flight.cancelled():
        flight.exception()


def install(app: FastAPI, settings: Settings) -> ResponseCache:
    cache = ResponseCache(CacheConfig.from_settings(settings))
    app.state.cache = cache
    return cache
