"""Identical requests in flight are computed once: the later ones wait for the first's answer.

The app runs in this test's event loop (httpx's ASGI transport, no lifespan) with a runner
whose jobs wait for a gate the test opens, so the requests are provably in flight together;
no timing is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from initscope.config import Settings
from initscope.errors import DeadlineExceeded, FieldError, InvalidRequest
from initscope.http.api import create_app
from initscope.http.cache import ResponseCache
from prometheus_client.parser import text_string_to_metric_families

SMALL: dict[str, Any] = {
    "network": {"input_dim": 8, "depth": 2, "width": 8, "activation": "tanh", "init": "he_normal"},
    "input": {"samples": 64},
    "histogram": {"bins": 5},
}
NO_CACHE = {"cache-control": "no-cache"}


class GatedRunner:
    """Runs each job in this process once ``gate`` is open; ``failures`` are raised instead
    of the first results."""

    draining, ready = False, True

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.failures = failures or []

    @contextlib.asynccontextmanager
    async def admit(self, work: object = None) -> AsyncIterator[None]:
        yield

    async def run(self, fn: Callable[..., Any], *args: object, cost: int | None = None) -> Any:
        self.calls.append(fn.__name__)
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        return fn(*args)


async def until(condition: Callable[[], bool]) -> None:
    """Lets the other tasks run until ``condition()`` holds (bounded: a hang fails)."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0)


Post = Callable[..., Coroutine[Any, Any, httpx.Response]]


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, runner: GatedRunner
) -> AsyncIterator[tuple[FastAPI, ResponseCache, Post]]:
    app = create_app(settings)
    app.state.runner = runner
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def post(headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
            return await client.post("/analyze", json={**SMALL, **body}, headers=headers)

        yield app, app.state.cache, post


def run(test: Coroutine[Any, Any, None]) -> None:
    asyncio.run(test)


def test_four_identical_requests_compute_once(settings: Settings) -> None:
    async def main() -> None:
        runner = GatedRunner()
        async with serving(settings, runner) as (app, cache, post):
            leader = asyncio.create_task(post())
            await until(lambda: runner.calls == ["analyze"])
            waiters = [asyncio.create_task(post()) for _ in range(3)]
            await until(lambda: cache.coalesced == 3)
            other = asyncio.create_task(post(seed=7))  # another request: computed on its own
            await until(lambda: len(runner.calls) == 2)
            runner.gate.set()
            first, *rest = await asyncio.gather(leader, *waiters)
            assert (await other).status_code == 200
            assert runner.calls == ["analyze", "analyze"]
            assert first.status_code == 200
            for response in rest:
                assert response.status_code == 200
                assert response.content == first.content  # the same bytes (elapsed_ms too)
                assert response.headers["etag"] == first.headers["etag"]
                assert response.headers["cache-control"] == first.headers["cache-control"]
                assert response.headers["content-type"] == "application/json"
                assert response.headers["x-request-id"] != first.headers["x-request-id"]
            assert (cache.misses, cache.coalesced, cache.hits) == (2, 3, 0)
            assert cache.flights == {}
            assert (await post()).content == first.content  # stored: a hit
            assert cache.hits == 1
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                families = text_string_to_metric_families((await client.get("/metrics")).text)
            (family,) = (f for f in families if f.name == "initscope_cache_requests")
            counts = {
                s.labels["result"]: s.value for s in family.samples if s.name.endswith("_total")
            }
            assert counts == {"hit": 1, "miss": 2, "not_modified": 0, "coalesced": 3}

    run(main())


def test_waiters_get_the_leaders_error(settings: Settings) -> None:
    refusal = InvalidRequest([FieldError(("body", "network"), "refused once", "test")])

    async def main() -> None:
        runner = GatedRunner(failures=[refusal])
        async with serving(settings, runner) as (_, cache, post):
            leader = asyncio.create_task(post())
            await until(lambda: runner.calls == ["analyze"])
            waiters = [asyncio.create_task(post()) for _ in range(2)]
            await until(lambda: cache.coalesced == 2)
            runner.gate.set()
            responses = await asyncio.gather(leader, *waiters)
            assert runner.calls == ["analyze"]
            for response in responses:
                assert response.status_code == 422
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["errors"][0]["msg"] == "refused once"
            assert len(cache) == 0
            assert cache.flights == {}
            assert (await post()).status_code == 200  # not remembered: computed again
            assert runner.calls == ["analyze", "analyze"]

    run(main())


def test_waiters_get_the_leaders_timeout(settings: Settings) -> None:
    async def main() -> None:
        runner = GatedRunner(failures=[DeadlineExceeded(1.5)])
        async with serving(settings, runner) as (_, cache, post):
            leader = asyncio.create_task(post())
            await until(lambda: runner.calls == ["analyze"])
            waiter = asyncio.create_task(post())
            await until(lambda: cache.coalesced == 1)
            runner.gate.set()
            statuses = [r.status_code for r in await asyncio.gather(leader, waiter)]
            assert statuses == [504, 504]
            assert runner.calls == ["analyze"]

    run(main())


def test_a_cancelled_leader_hands_over_to_a_waiter(settings: Settings) -> None:
    async def main() -> None:
        runner = GatedRunner()
        async with serving(settings, runner) as (_, cache, post):
            leader = asyncio.create_task(post())
            await until(lambda: runner.calls == ["analyze"])
            waiters = [asyncio.create_task(post()) for _ in range(3)]
            await until(lambda: cache.coalesced == 3)
            leader.cancel()  # the client went away
            # one waiter leads: its own computation starts, the other two wait for it
            await until(lambda: runner.calls == ["analyze", "analyze"])
            runner.gate.set()
            responses = await asyncio.gather(*waiters)
            assert leader.cancelled()
            assert runner.calls == ["analyze", "analyze"]
            assert [r.status_code for r in responses] == [200, 200, 200]
            assert len({r.content for r in responses}) == 1
            assert cache.flights == {}

    run(main())


def test_a_waiter_that_goes_away_leaves_the_leader_alone(settings: Settings) -> None:
    async def main() -> None:
        runner = GatedRunner()
        async with serving(settings, runner) as (_, cache, post):
            leader = asyncio.create_task(post())
            await until(lambda: runner.calls == ["analyze"])
            waiter = asyncio.create_task(post())
            await until(lambda: cache.coalesced == 1)
            waiter.cancel()
            await until(waiter.done)
            runner.gate.set()
            assert (await leader).status_code == 200
            assert runner.calls == ["analyze"]

    run(main())


def test_no_cache_computes_its_own_and_can_be_joined(settings: Settings) -> None:
    async def main() -> None:
        runner = GatedRunner()
        async with serving(settings, runner) as (_, cache, post):
            fresh = asyncio.create_task(post(NO_CACHE))
            await until(lambda: runner.calls == ["analyze"])
            joined = asyncio.create_task(post())  # joins the no-cache computation
            await until(lambda: cache.coalesced == 1)
            forced = asyncio.create_task(post(NO_CACHE))  # never joins: computes again
            await until(lambda: len(runner.calls) == 2)
            runner.gate.set()
            first, second, third = await asyncio.gather(fresh, joined, forced)
            assert runner.calls == ["analyze", "analyze"]
            assert second.content == first.content
            assert json.loads(third.content)["layers"] == json.loads(first.content)["layers"]
            assert third.headers["etag"] == first.headers["etag"]

    run(main())


def test_figures_are_coalesced_too(settings: Settings) -> None:
    async def main() -> None:
        runner = GatedRunner()
        app = create_app(settings)
        app.state.runner = runner
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            def svg() -> Coroutine[Any, Any, httpx.Response]:
                return client.post("/analyze?format=svg", json=SMALL)

            first = asyncio.create_task(svg())
            await until(lambda: runner.calls == ["analyze"])
            second = asyncio.create_task(svg())
            await until(lambda: app.state.cache.coalesced == 1)
            runner.gate.set()
            a, b = await asyncio.gather(first, second)
            assert runner.calls == ["analyze", "render_analysis"]
            assert a.headers["content-type"] == b.headers["content-type"] == "image/svg+xml"
            assert a.content == b.content

    run(main())


@pytest.mark.parametrize("field", ["network", "seed"])
def test_a_bad_request_is_refused_before_any_flight(settings: Settings, field: str) -> None:
    async def main() -> None:
        runner = GatedRunner()
        async with serving(settings, runner) as (_, cache, post):
            refused = await post(**{field: "not this"})
            assert refused.status_code == 422
            assert field in json.dumps(refused.json()["errors"])
            assert runner.calls == []
            assert cache.flights == {}

    run(main())
