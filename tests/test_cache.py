"""Repeat requests: ETags, 304s and the LRU of results, through apps of their own."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from initscope.config import Settings
from initscope.errors import FieldError, InvalidRequest, Overloaded
from initscope.http.api import create_app
from initscope.http.cache import CacheConfig, ResponseCache, Stored, etag
from initscope.jobs import FigureOptions
from initscope.schemas import AnalyzeRequest
from prometheus_client.parser import text_string_to_metric_families

SMALL: dict[str, Any] = {
    "network": {"input_dim": 8, "depth": 2, "width": 8, "activation": "tanh", "init": "he_normal"},
    "input": {"samples": 64},
    "histogram": {"bins": 5},
}
COMPARE: dict[str, Any] = {
    "base": SMALL["network"],
    "variants": [{"name": "he"}, {"name": "xavier", "init": "xavier_normal"}],
    "input": {"samples": 64},
}
SWEEP: dict[str, Any] = {
    "activation": "tanh",
    "depth": 3,
    "width": 8,
    "samples": 32,
    "x": {"param": "sigma_w2", "values": [0.5, 1.5]},
    "y": {"param": "sigma_b2", "values": [0.0, 0.1]},
}


class CountingRunner:
    """Runs each job in this process and records it: what the cache skips is not recorded."""

    draining, ready = False, True

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[str] = []
        self.failures = failures

    @contextlib.asynccontextmanager
    async def admit(self, work: object = None) -> AsyncIterator[None]:
        yield

    async def run(self, fn: Callable[..., Any], *args: object, cost: int | None = None) -> Any:
        self.calls.append(fn.__name__)
        if self.failures:
            self.failures -= 1
            raise InvalidRequest([FieldError(("body", "network"), "refused once", "test")])
        return fn(*args)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def runner() -> CountingRunner:
    return CountingRunner()


@pytest.fixture
def fresh(app: FastAPI, runner: CountingRunner) -> Iterator[TestClient]:
    with TestClient(app) as client:
        app.state.runner = runner
        yield client


def cache_counts(client: TestClient) -> dict[str, float]:
    families = text_string_to_metric_families(client.get("/metrics").text)
    (family,) = (f for f in families if f.name == "initscope_cache_requests")
    return {s.labels["result"]: s.value for s in family.samples if s.name.endswith("_total")}


@pytest.mark.parametrize(
    ("path", "body", "tasks"),
    [
        ("/analyze", SMALL, ["analyze"]),
        ("/compare", COMPARE, ["analyze", "analyze"]),
        ("/sweep", SWEEP, ["run_sweep_row", "run_sweep_row"]),
        ("/analyze?format=png", SMALL, ["analyze", "render_analysis"]),
    ],
)
def test_repeat_request_is_served_without_recomputation(
    fresh: TestClient, runner: CountingRunner, path: str, body: dict[str, Any], tasks: list[str]
) -> None:
    first = fresh.post(path, json=body)
    assert first.status_code == 200, first.text
    second = fresh.post(path, json=body)
    assert second.status_code == 200
    assert runner.calls == tasks  # the second answer cost nothing
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    tag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{64}"', tag)  # strong (no W/), a SHA-256
    for response in (first, second):
        assert response.headers["etag"] == tag
        assert response.headers["cache-control"] == "public, max-age=86400"
        assert response.headers["vary"] == "Accept"
    assert cache_counts(fresh) == {"hit": 1, "miss": 1, "not_modified": 0, "coalesced": 0}


def test_json_body_is_what_the_response_model_gives(fresh: TestClient) -> None:
    body = fresh.post("/analyze", json=SMALL).json()
    assert body["meta"]["seed"] == 0
    assert len(body["layers"]) == 2
    assert set(body["layers"][0]["activations"]["histogram"]) == {
        "edges",
        "counts",
        "underflow",
        "overflow",
        "non_finite",
    }


def test_the_key_is_the_validated_request_not_its_spelling(
    fresh: TestClient, runner: CountingRunner
) -> None:
    first = fresh.post("/analyze", json=SMALL)
    reordered = {"histogram": {"bins": 5}, "seed": 0, **{k: SMALL[k] for k in reversed(SMALL)}}
    spelled = {**reordered, "network": {**SMALL["network"], "init": {"scheme": "he_normal"}}}
    second = fresh.post("/analyze", json=spelled)
    assert second.headers["etag"] == first.headers["etag"]
    assert runner.calls == ["analyze"]


@pytest.mark.parametrize(
    "variant",
    [
        {"json": {**SMALL, "seed": 1}},
        {"json": SMALL, "params": {"format": "png"}},
        {"json": SMALL, "params": {"format": "svg"}},
        {"json": SMALL, "params": {"format": "png", "dpi": 60}},
        {"json": SMALL, "headers": {"accept": "image/svg+xml"}},
    ],
)
def test_another_seed_or_representation_is_a_miss(
    fresh: TestClient, runner: CountingRunner, variant: dict[str, Any]
) -> None:
    first = fresh.post("/analyze", json=SMALL)
    other = fresh.post("/analyze", **variant)
    assert other.status_code == 200
    assert other.headers["etag"] != first.headers["etag"]
    assert runner.calls.count("analyze") == 2
    assert cache_counts(fresh)["miss"] == 2


def test_figure_options_do_not_split_json(fresh: TestClient, runner: CountingRunner) -> None:
    first = fresh.post("/analyze", json=SMALL)
    sized = fresh.post("/analyze", json=SMALL, params={"width": 900, "dpi": 60})
    assert sized.headers["etag"] == first.headers["etag"]
    assert runner.calls == ["analyze"]


def test_if_none_match_is_304_without_work_even_in_another_app(
    settings: Settings, fresh: TestClient
) -> None:
    tag = fresh.post("/analyze", json=SMALL).headers["etag"]
    other_runner = CountingRunner()
    other = create_app(settings)  # nothing cached here
    with TestClient(other) as client:
        other.state.runner = other_runner
        for header in (tag, f"W/{tag}", f'"abc", {tag}', "*"):
            response = client.post("/analyze", json=SMALL, headers={"if-none-match": header})
            assert response.status_code == 304
            assert response.content == b""
            assert response.headers["etag"] == tag
            assert response.headers["vary"] == "Accept"
        assert other_runner.calls == []
        stale = client.post("/analyze", json=SMALL, headers={"if-none-match": '"abc"'})
        assert stale.status_code == 200
        assert other_runner.calls == ["analyze"]
        assert cache_counts(client) == {"hit": 0, "miss": 1, "not_modified": 4, "coalesced": 0}


def test_if_none_match_still_validates_the_request(fresh: TestClient) -> None:
    """A tag never answers for a request the service would refuse (here: over the budget)."""
    big = {**SMALL, "network": {**SMALL["network"], "width": 512, "depth": 20}}
    big["input"] = {"samples": 4096}
    tag = etag("/analyze", AnalyzeRequest.model_validate(big), "json", FigureOptions())
    response = fresh.post("/analyze", json=big, headers={"if-none-match": tag})
    assert response.status_code == 422
    assert "etag" not in response.headers


def test_only_successes_are_stored(settings: Settings) -> None:
    app = create_app(settings)
    runner = CountingRunner(failures=1)
    with TestClient(app) as client:
        app.state.runner = runner
        refused = client.post("/analyze", json=SMALL)
        assert refused.status_code == 422
        assert "etag" not in refused.headers
        assert len(app.state.cache) == 0
        assert client.post("/analyze", json=SMALL).status_code == 200
        assert client.post("/analyze", json=SMALL).status_code == 200
    assert runner.calls == ["analyze", "analyze"]  # the refusal, then one computation


def test_no_cache_recomputes_and_stores_again(fresh: TestClient, runner: CountingRunner) -> None:
    first = fresh.post("/analyze", json=SMALL)
    again = fresh.post("/analyze", json=SMALL, headers={"cache-control": "no-cache"})
    assert again.headers["etag"] == first.headers["etag"]
    assert runner.calls == ["analyze", "analyze"]
    fresh.post("/analyze", json=SMALL)
    assert runner.calls == ["analyze", "analyze"]


def test_apps_do_not_share_a_cache(settings: Settings) -> None:
    assert create_app(settings).state.cache is not create_app(settings).state.cache


def test_app_evicts_the_least_recently_used(app: FastAPI, fresh: TestClient) -> None:
    app.state.cache = ResponseCache(CacheConfig(max_entries=1))
    for seed in (0, 1, 0):
        assert fresh.post("/analyze", json={**SMALL, "seed": seed}).status_code == 200
    assert app.state.runner.calls == ["analyze"] * 3
    assert len(app.state.cache) == 1
    assert cache_counts(fresh) == {"hit": 0, "miss": 3, "not_modified": 0, "coalesced": 0}


def stored(size: int) -> Stored:
    return Stored(b"x" * size, "application/json")


def test_lru_bounded_by_entries() -> None:
    cache = ResponseCache(CacheConfig(max_entries=2, max_bytes=1000))
    cache.put("a", stored(1))
    cache.put("b", stored(1))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", stored(1))
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    assert (len(cache), cache.size, cache.evictions) == (2, 2, 1)
    assert (cache.hits, cache.misses) == (3, 1)


def test_lru_bounded_by_bytes() -> None:
    cache = ResponseCache(CacheConfig(max_entries=100, max_bytes=10))
    for key in "abc":
        cache.put(key, stored(4))
    assert cache.get("a") is None
    assert (len(cache), cache.size) == (2, 8)
    cache.put("big", stored(11))  # larger than the whole cache: not kept, nothing evicted
    assert cache.get("big") is None
    assert (len(cache), cache.size) == (2, 8)
    cache.put("b", stored(10))  # replacing an entry frees its bytes first
    assert cache.get("c") is None
    assert (len(cache), cache.size) == (1, 10)


def test_zero_entries_disables_the_store() -> None:
    cache = ResponseCache(CacheConfig(max_entries=0))
    cache.put("a", stored(1))
    assert cache.get("a") is None
    assert len(cache) == 0


def test_config_reads_settings() -> None:
    assert CacheConfig.from_settings(Settings(cache_max_entries=3)) == CacheConfig(max_entries=3)
    assert CacheConfig.from_settings(Settings()) == CacheConfig()


def test_etag_is_the_same_in_another_process() -> None:
    """A content hash of the canonical request: no id(), no hash() (salted per process)."""
    here = etag("/analyze", AnalyzeRequest.model_validate(SMALL), "png", FigureOptions("png"))
    code = (
        "import json, sys\n"
        "from initscope.http.cache import etag\n"
        "from initscope.jobs import FigureOptions\n"
        "from initscope.schemas import AnalyzeRequest\n"
        "body = AnalyzeRequest.model_validate(json.loads(sys.argv[1]))\n"
        "print(etag('/analyze', body, 'png', FigureOptions('png')))\n"
    )
    there = subprocess.run(
        [sys.executable, "-c", code, json.dumps(SMALL)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "random"},
    ).stdout.strip()
    assert there == here


def test_real_pool_answers_304_on_its_own_tag(client: TestClient) -> None:
    body = {**SMALL, "seed": 424242}
    first = client.post("/analyze", json=body)
    assert first.status_code == 200
    again = client.post("/analyze", json=body, headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304


class FullRunner(CountingRunner):
    """Every slot and the queue taken: admission refuses at once."""

    @contextlib.asynccontextmanager
    async def admit(self, work: object = None) -> AsyncIterator[None]:
        raise Overloaded(retry_after=1)
        yield  # pragma: no cover


def test_a_cached_answer_needs_no_slot(app: FastAPI, fresh: TestClient) -> None:
    assert fresh.post("/analyze", json=SMALL).status_code == 200
    app.state.runner = FullRunner()
    assert fresh.post("/analyze", json=SMALL).status_code == 200  # from the cache
    refused = fresh.post("/analyze", json={**SMALL, "seed": 12345})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
