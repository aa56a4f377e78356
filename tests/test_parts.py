"""A sweep or search split into parts (``part = {index, count}``) merges into exactly the unsplit
answer: in this process, against one live server, and against two live servers sharing the
parts through a round-robin transport (standing in for the Kubernetes Service)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from initscope import cli
from initscope import client as ic
from initscope.config import Settings
from initscope.operations import OPERATIONS, run_here
from initscope.schemas import SweepResponse
from initscope.train_schemas import SearchResponse
from pydantic import BaseModel

from tests.client_support import live_server

SWEEP_BOTH: dict[str, Any] = {  # sigma_w2 x sigma_b2: simulated, predicted, the edge of chaos
    "activation": "tanh",
    "depth": 3,
    "width": 16,
    "samples": 32,
    "x": {"param": "sigma_w2", "values": [0.5, 1.0, 2.0]},
    "y": {"param": "sigma_b2", "values": [0.0, 0.05, 0.1, 0.2]},
}
SWEEP_THEORY: dict[str, Any] = {  # depth rows: rows of growing cost; no curve
    "activation": "relu",
    "source": "theory",
    "metric": "last_std",
    "x": {"param": "sigma_w2", "values": [1.5, 2.0, 2.5]},
    "y": {"param": "depth", "values": [2, 3, 5, 8, 13]},
}
SEARCH: dict[str, Any] = {
    "network": {"input_dim": 2, "depth": 2, "width": 8, "activation": "relu", "init": "he_normal"},
    "task": {"name": "spirals", "samples": 100},
    "optimizer": {"name": "sgd"},
    "epochs": 2,
    "x": {"param": "learning_rate", "low": 1e-3, "high": 1.0},
    "y": {"param": "weight_decay", "low": 1e-6, "high": 1e-1},
    "trials": 5,
}


def here(kind: str, body: dict[str, Any]) -> Any:
    operation = OPERATIONS[kind]
    request = operation.request.model_validate(body)
    return operation.to_json(run_here(operation, operation.to_jobs(request, Settings())))


def same(merged: BaseModel, whole: BaseModel) -> None:
    """Equal in everything but the timings (a search's summed compute time)."""
    timing = {"elapsed_ms"} if isinstance(whole, SearchResponse) else set()
    assert merged.model_dump(exclude=timing) == whole.model_dump(exclude=timing)


# --- in this process ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [SWEEP_BOTH, SWEEP_THEORY], ids=["both", "theory"])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_sweep_parts_merge_into_the_whole_grid(body: dict[str, Any], k: int) -> None:
    whole = here("sweep", body)
    answers = [here("sweep", b) for b in ic.split(body, k)]
    rows = len(body["y"]["values"])
    for i, answer in enumerate(answers):  # strided: every k-th row, the parts within one row
        assert answer.part.holds == list(range(i, rows, k))
        grid = answer.simulation or answer.theory
        assert len(grid) == len(answer.part.holds)
        assert (answer.critical_note != "") == (i == 0)
    assert len({a.part.request for a in answers}) == 1
    merged = ic.merge_sweep(answers[::-1])  # in any order
    same(merged, whole)
    if body is SWEEP_BOTH:
        assert whole.critical_curve  # the part holding row 0 drew it
        assert merged.part is None


@pytest.mark.parametrize("k", [2, 5])
def test_search_parts_merge_into_the_whole_ranking(k: int) -> None:
    whole = here("search", SEARCH)
    answers = [here("search", b) for b in ic.split(SEARCH, k)]
    for i, answer in enumerate(answers):
        assert sorted(t.index for t in answer.trials) == list(range(i, SEARCH["trials"], k))
    merged = ic.merge_search(answers)
    same(merged, whole)
    assert sorted(t.index for t in whole.trials) == list(range(SEARCH["trials"]))
    assert merged.elapsed_ms == pytest.approx(sum(a.elapsed_ms for a in answers), abs=1e-2)


def test_merging_refuses_parts_of_different_jobs() -> None:
    answers = [here("sweep", b) for b in ic.split(SWEEP_THEORY, 3)]
    with pytest.raises(ic.MergeError, match="parts 0 to 2 once each"):
        ic.merge_sweep(answers[:2])  # one missing
    with pytest.raises(ic.MergeError, match="once each"):
        ic.merge_sweep([answers[0], answers[1], answers[1]])  # one twice
    other = here("sweep", {**SWEEP_THEORY, "part": {"index": 2, "count": 3}, "metric": "chi_1"})
    with pytest.raises(ic.MergeError, match="different requests"):
        ic.merge_sweep([*answers[:2], other])
    with pytest.raises(ic.MergeError, match="not a part"):
        ic.merge_sweep([here("sweep", SWEEP_THEORY)])
    with pytest.raises(ValueError, match="already names a part"):
        ic.split({**SWEEP_THEORY, "part": {"index": 0, "count": 2}}, 2)


@pytest.mark.parametrize(
    ("kind", "body", "part", "loc", "needle"),
    [
        ("sweep", SWEEP_THEORY, {"index": 3, "count": 3}, ["body", "part"], "part.index"),
        ("sweep", SWEEP_THEORY, {"index": 0, "count": 6}, ["body", "part", "count"], "(5)"),
        ("search", SEARCH, {"index": 0, "count": 6}, ["body", "part", "count"], "trials (5)"),
        ("search", SEARCH, {"index": -1, "count": 2}, ["body", "part", "index"], "0"),
    ],
)
def test_a_part_out_of_range_is_a_422_naming_it(
    client: TestClient,
    kind: str,
    body: dict[str, Any],
    part: dict[str, int],
    loc: list[str],
    needle: str,
) -> None:
    response = client.post(f"/{kind}", json={**body, "part": part})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(e["loc"] == loc and needle in e["msg"] for e in errors), errors


def test_a_part_has_no_figure(client: TestClient) -> None:
    body = {**SWEEP_THEORY, "part": {"index": 1, "count": 2}}
    response = client.post("/sweep", json=body, headers={"accept": "image/png"})
    assert response.status_code == 406
    assert "JSON only" in response.json()["detail"]
    with pytest.raises(ValueError, match="parts=1"):
        ic.Client("http://initscope").sweep(SWEEP_THEORY, format="png", parts=2)  # type: ignore[call-overload]


def test_cli_parts_in_process_merge_into_the_whole(tmp_path: Path) -> None:
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps(SWEEP_THEORY))
    outputs = []
    for parts in ("1", "3"):
        out = tmp_path / f"out{parts}.json"
        status = cli.run(["sweep", str(spec), "--parts", parts, "-o", str(out), "--json"])
        assert status == cli.OK
        outputs.append(SweepResponse.model_validate_json(out.read_text()))
    same(outputs[1], outputs[0])


# --- live servers on loopback ------------------------------------------------------------------


class RoundRobin(httpx.BaseTransport):
    """Each request to the next replica in turn: what a Kubernetes Service's kube-proxy does
    (it picks at random or round-robin; either spreads k concurrent parts)."""

    def __init__(self, urls: list[str]) -> None:
        self.replicas = [httpx.URL(u) for u in urls]
        self.turn = itertools.count()
        self.lock = threading.Lock()
        self.inner = httpx.HTTPTransport()

    def pick(self, request: httpx.Request) -> None:
        with self.lock:
            replica = self.replicas[next(self.turn) % len(self.replicas)]
        request.url = request.url.copy_with(host=replica.host, port=replica.port)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.pick(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class AsyncRoundRobin(httpx.AsyncBaseTransport):
    def __init__(self, urls: list[str]) -> None:
        self.picker = RoundRobin(urls)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.picker.pick(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
        self.picker.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[list[str]]:
    """Two ``initscope serve`` processes, one worker each: two replicas."""
    with ExitStack() as stack:
        yield [stack.enter_context(live_server()) for _ in range(2)]


def posts(url: str, route: str) -> float:
    """The POSTs to ``route`` this server answered 200, from its /metrics."""
    wanted = ('method="POST"', f'route="{route}"', 'status="200"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in httpx.get(f"{url}/metrics").text.splitlines()
        if line.startswith("initscope_http_requests_total{") and all(w in line for w in wanted)
    )


def test_one_server_answers_the_parts_and_they_merge_into_its_whole(servers: list[str]) -> None:
    with ic.Client(servers[0], timeout=120) as service:
        whole_sweep = service.sweep(SWEEP_BOTH)
        for k in (2, 3):  # at most one worker's slot and queue at once
            same(service.sweep(SWEEP_BOTH, parts=k), whole_sweep)
        whole_search = service.search(SEARCH)
        assert isinstance(whole_search, SearchResponse)
        merged = service.search(SEARCH, parts=3)
        assert isinstance(merged, SearchResponse)
        same(merged, whole_search)


def test_two_servers_share_the_parts_through_a_round_robin(servers: list[str]) -> None:
    before = [posts(url, "/sweep") + posts(url, "/search") for url in servers]
    with ic.Client(servers[0], timeout=120, retries=0) as one:
        whole_sweep = one.sweep(SWEEP_THEORY)
        whole_search = one.search(SEARCH)
    after_whole = [posts(url, "/sweep") + posts(url, "/search") for url in servers]
    with ic.Client("http://initscope", timeout=120, transport=RoundRobin(servers)) as spread:
        same(spread.sweep(SWEEP_THEORY, parts=2), whole_sweep)
        merged = spread.search(SEARCH, parts=2)
        assert isinstance(merged, SearchResponse)
        same(merged, whole_search)
    after = [posts(url, "/sweep") + posts(url, "/search") for url in servers]
    # each replica answered one part of the sweep and one of the search
    assert [b - a for a, b in zip(after_whole, after, strict=True)] == [2.0, 2.0]
    assert after_whole[0] - before[0] == 2.0  # the unsplit answers came from servers[0] alone

    async def split_async() -> tuple[SweepResponse, SearchResponse]:
        transport = AsyncRoundRobin(servers)
        async with ic.AsyncClient("http://initscope", timeout=120, transport=transport) as spread:
            sweep = await spread.sweep(SWEEP_THEORY, parts=4)
            search = await spread.search(SEARCH, parts=4)
            assert isinstance(search, SearchResponse)
            return sweep, search

    sweep, search = asyncio.run(split_async())
    same(sweep, whole_sweep)
    same(search, whole_search)
    final = [posts(url, "/sweep") + posts(url, "/search") for url in servers]
    # 4 + 4 parts alternate over the two replicas: 4 each, 2 at a time (within one worker's
    # slot and queue, so no 503 is retried elsewhere)
    assert [b - a for a, b in zip(after, final, strict=True)] == [4.0, 4.0]
