"""Who may call: API keys (401 with the RFC 6750 challenge), the keys' file, the endpoints that
stay open, each key's share of the pool (429 with Retry-After), keys kept out of logs and
metrics, and the bearer scheme in the OpenAPI document."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from initscope.client import Client, ProblemError
from initscope.config import Settings
from initscope.http import auth
from initscope.http.api import create_app
from pydantic import ValidationError

from tests.client_support import AppTransport
from tests.test_cache import SMALL, CountingRunner
from tests.test_metrics import scrape, value

ALPHA = "alpha-0123456789abcdef"
BETA = "beta+/~_.-XYZ=="
TINY = {"input_dim": 2, "depth": 2, "width": 8, "activation": "relu", "init": "he_normal"}
POSTS: dict[str, dict[str, Any]] = {
    "/analyze": SMALL,
    "/compare": {
        "base": SMALL["network"],
        "variants": [{"name": "he"}, {"name": "xavier", "init": "xavier_normal"}],
        "input": {"samples": 64},
    },
    "/sweep": {
        "activation": "tanh",
        "depth": 3,
        "width": 8,
        "samples": 32,
        "x": {"param": "sigma_w2", "values": [0.5, 1.5]},
        "y": {"param": "sigma_b2", "values": [0.0, 0.1]},
    },
    "/train": {
        "network": {
            "input_dim": 2,
            "depth": 2,
            "width": 8,
            "activation": "relu",
            "init": "he_normal",
        },
        "task": {"name": "spirals", "samples": 60},
        "epochs": 1,
    },
    "/search": {
        "network": {
            "input_dim": 2,
            "depth": 2,
            "width": 8,
            "activation": "relu",
            "init": "he_normal",
        },
        "task": {"name": "spirals", "samples": 60},
        "epochs": 1,
        "trials": 2,
    },
}
OPEN = ("/livez", "/readyz", "/docs", "/redoc", "/openapi.json", "/metrics")
CATALOGUE = ("/activations", "/initializers")


def keyed(settings: Settings, **changes: Any) -> Settings:
    """The session's small settings with API keys (or other changes)."""
    fields = settings.model_dump(exclude={"api_keys", "api_keys_file"})
    return Settings(**{**fields, "api_keys": f" {ALPHA} ,, {BETA} ", **changes})


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(keyed(settings))


@pytest.fixture
def client(app: FastAPI, caplog: pytest.LogCaptureFixture) -> Iterator[TestClient]:
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as test_client:
        app.state.runner = CountingRunner()
        yield test_client


def assert_challenge(response: httpx.Response, header: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == header
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "https://initscope.dev/problems/unauthorized"
    assert problem["status"] == 401
    assert problem["instance"] == response.request.url.path


# --- off by default -------------------------------------------------------------------------


def test_without_keys_every_operation_is_open(settings: Settings) -> None:
    assert settings.bearer_keys == ()
    app = create_app(settings)
    with TestClient(app) as client:
        app.state.runner = CountingRunner()
        for path, body in POSTS.items():
            response = client.post(path, json=body)
            assert response.status_code == 200, (path, response.text)
        # a key sent anyway is ignored, not refused
        assert client.post("/analyze", json=SMALL, headers=bearer("anything")).status_code == 200
    assert app.state.gate.in_flight == {}


# --- 401 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(POSTS))
def test_a_computing_operation_without_a_key_is_401(client: TestClient, path: str) -> None:
    response = client.post(path, json=POSTS[path])
    assert_challenge(response, 'Bearer realm="initscope"')
    assert "needs an API key" in response.json()["detail"]
    assert client.app.state.runner.calls == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", sorted(POSTS))
def test_a_wrong_key_is_401_invalid_token(client: TestClient, path: str) -> None:
    response = client.post(path, json=POSTS[path], headers=bearer(ALPHA + "x"))
    assert_challenge(response, 'Bearer realm="initscope", error="invalid_token"')


@pytest.mark.parametrize(
    "authorization",
    [f"Basic {ALPHA}", ALPHA, "Bearer", "Bearer ", f"Token {ALPHA}"],
)
def test_anything_but_a_bearer_credential_counts_as_no_key(
    client: TestClient, authorization: str
) -> None:
    response = client.post("/analyze", json=SMALL, headers={"authorization": authorization})
    assert_challenge(response, 'Bearer realm="initscope"')


def test_the_key_is_checked_before_the_body(client: TestClient) -> None:
    """Without a key nothing about the body is said: 401, not 415 or 422."""
    wrong_type = client.post("/analyze", content=b"x=1", headers={"content-type": "text/plain"})
    assert_challenge(wrong_type, 'Bearer realm="initscope"')
    invalid = client.post("/analyze", json={"network": {"depth": True}})
    assert_challenge(invalid, 'Bearer realm="initscope"')
    with_key = client.post("/analyze", json={"network": {"depth": True}}, headers=bearer(ALPHA))
    assert with_key.status_code == 422


@pytest.mark.parametrize("key", [ALPHA, BETA])
@pytest.mark.parametrize("path", sorted(POSTS))
def test_every_configured_key_is_admitted(client: TestClient, path: str, key: str) -> None:
    response = client.post(path, json=POSTS[path], headers=bearer(key))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", OPEN + CATALOGUE)
def test_probes_docs_metrics_and_catalogue_stay_open(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, (path, response.text)


def test_a_token_is_compared_with_every_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No early exit: the time does not say which key matched, the first or the last."""
    gate = auth.Gate(keyed(settings, api_keys=",".join(f"key-{i}" for i in range(5))))
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare)
    for token in ("key-0", "key-4", "nope"):
        compared.clear()
        try:
            caller: auth.Caller | None = gate.identify(token)
        except auth.Unauthorized:
            caller = None
        assert len(compared) == 5
        # fixed-length digests are compared, never the token itself (whose length could leak)
        assert all(len(a) == len(b) == 32 for a, b in compared)
        assert caller == (None if token == "nope" else auth.Caller(auth.key_id(token)))


# --- the keys' file -------------------------------------------------------------------------


def test_keys_file_one_per_line_blank_lines_and_whitespace_ignored(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "api-keys"
    path.write_text(f"\n  {ALPHA}  \n\n\t{BETA}\r\n{ALPHA}\n")
    from_file = keyed(settings, api_keys="", api_keys_file=path)
    assert from_file.bearer_keys == (ALPHA, BETA)
    both = keyed(settings, api_keys="gamma", api_keys_file=path)
    assert both.bearer_keys == ("gamma", ALPHA, BETA)
    app = create_app(from_file)
    with TestClient(app) as client:
        app.state.runner = CountingRunner()
        assert client.post("/analyze", json=SMALL, headers=bearer(BETA)).status_code == 200
        assert client.post("/analyze", json=SMALL).status_code == 401


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INITSCOPE_API_KEYS", f"{ALPHA},{BETA}")
    assert Settings(workers=1).bearer_keys == (ALPHA, BETA)
    path = tmp_path / "keys"
    path.write_text(BETA + "\n")
    monkeypatch.delenv("INITSCOPE_API_KEYS")
    monkeypatch.setenv("INITSCOPE_API_KEYS_FILE", str(path))
    assert Settings(workers=1).bearer_keys == (BETA,)


@pytest.mark.parametrize(
    ("write", "says"),
    [
        (lambda p: p.mkdir(), "cannot read"),  # a folder: IsADirectoryError
        (lambda p: p.write_bytes(b"\xff\xfe key"), "cannot read"),  # not UTF-8
        (lambda p: p.write_text("\n  \n"), "holds no key"),
        (lambda p: p.write_text(f"{ALPHA}\nsecret with spaces\n"), "line 2"),
    ],
)
def test_a_keys_file_that_cannot_serve_stops_the_server(
    settings: Settings, tmp_path: Path, write: Callable[[Path], Any], says: str
) -> None:
    path = tmp_path / "api-keys"
    write(path)
    with pytest.raises(ValidationError) as raised:
        keyed(settings, api_keys="", api_keys_file=path)
    message = str(raised.value)
    assert "INITSCOPE_API_KEYS_FILE" in message
    assert says in message
    assert "secret with spaces" not in message
    assert ALPHA not in message


def test_a_missing_keys_file_adds_no_key_and_says_so(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An optional Secret that does not exist is an empty volume: the file is absent."""
    path = tmp_path / "absent" / "api-keys"
    caplog.set_level(logging.WARNING, logger="initscope.auth")
    app = create_app(keyed(settings, api_keys="", api_keys_file=path))
    assert not app.state.gate.enabled
    assert any(str(path) in r.getMessage() for r in caplog.records)


def test_a_key_no_bearer_header_can_carry_is_refused_without_echoing_it(
    settings: Settings,
) -> None:
    with pytest.raises(ValidationError) as raised:
        keyed(settings, api_keys=f"{ALPHA},s3cret key")
    message = str(raised.value)
    assert "INITSCOPE_API_KEYS: key 2" in message
    assert "s3cret" not in message
    assert ALPHA not in message


def test_settings_never_show_the_keys(settings: Settings) -> None:
    shown = repr(keyed(settings)) + str(keyed(settings))
    assert ALPHA not in shown
    assert BETA not in shown


# --- each key's share -----------------------------------------------------------------------


def test_the_share_is_a_fraction_of_what_the_pool_admits(settings: Settings) -> None:
    admitted = 3 * settings.workers  # 6 with the test settings
    assert keyed(settings).key_limit == admitted // 2
    assert keyed(settings, key_share=1.0).key_limit == admitted
    assert keyed(settings, key_share=0.01).key_limit == 1
    with pytest.raises(ValidationError):
        keyed(settings, key_share=0)


def test_beyond_its_share_a_key_gets_429_and_other_keys_do_not(
    app: FastAPI, client: TestClient
) -> None:
    gate: auth.Gate = app.state.gate
    alpha = auth.Caller(auth.key_id(ALPHA))
    for _ in range(gate.limit):  # the key's requests in flight
        gate.enter(alpha)
    refused = client.post("/analyze", json=SMALL, headers=bearer(ALPHA))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(app.state.settings.retry_after_s)
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"] == "https://initscope.dev/problems/too-many-requests"
    assert f"{gate.limit} requests in flight" in problem["detail"]
    assert client.post("/analyze", json=SMALL, headers=bearer(BETA)).status_code == 200
    gate.leave(alpha)
    assert client.post("/analyze", json=SMALL, headers=bearer(ALPHA)).status_code == 200
    assert gate.in_flight == {alpha.key: gate.limit - 1}  # the answered request left


def test_a_slot_is_given_back_whatever_the_answer(client: TestClient, app: FastAPI) -> None:
    for response in (
        client.post("/analyze", json=SMALL, headers=bearer(ALPHA)),
        client.post("/analyze", json={"network": {}}, headers=bearer(ALPHA)),
        client.post("/analyze", content=b"x", headers={**bearer(ALPHA), "content-type": "a/b"}),
        client.post("/analyze?format=gif", json=SMALL, headers=bearer(ALPHA)),
    ):
        assert response.status_code in (200, 415, 422), response.text
    assert app.state.gate.in_flight == {}


class BlockingRunner(CountingRunner):
    """Holds every job until ``release`` is set; ``started`` is set once one is running."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, fn: Callable[..., Any], *args: object, cost: int | None = None) -> Any:
        self.started.set()
        await self.release.wait()
        return await super().run(fn, *args, cost=cost)


def test_requests_in_flight_hold_the_keys_share(settings: Settings) -> None:
    """Two real concurrent requests with a share of one: the second is refused while the first
    runs, and admitted once it has finished."""
    app = create_app(keyed(settings, key_share=0.01))
    runner = BlockingRunner()
    app.state.runner = runner

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = asyncio.create_task(client.post("/analyze", json=SMALL, headers=bearer(ALPHA)))
            await runner.started.wait()
            second = await client.post("/analyze", json=SMALL, headers=bearer(ALPHA))
            other = asyncio.create_task(client.post("/analyze", json=SMALL, headers=bearer(BETA)))
            runner.release.set()
            done = await first
            third = await client.post("/analyze", json=SMALL, headers=bearer(ALPHA))
            return [
                done.status_code,
                second.status_code,
                (await other).status_code,
                third.status_code,
            ]

    assert asyncio.run(scenario()) == [200, 429, 200, 200]
    assert app.state.gate.in_flight == {}


def test_the_client_sends_its_key_and_retries_a_429(client: TestClient, app: FastAPI) -> None:
    """``Client(api_key=...)`` is admitted; a 429 is retried after ``Retry-After``."""
    waits: list[float] = []
    alpha = auth.Caller(auth.key_id(ALPHA))
    gate: auth.Gate = app.state.gate
    for _ in range(gate.limit):
        gate.enter(alpha)

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        gate.leave(alpha)  # one of the key's requests finishes meanwhile

    mock = AppTransport(client)
    with Client("http://test", api_key=ALPHA, transport=mock, sleep=sleep, jitter=0) as service:
        result = service.analyze(SMALL)
    assert result.diagnosis.verdict
    assert waits == [1.0]  # Retry-After: 1, above the first backoff (0.5 s)
    with Client("http://test", transport=mock) as anonymous, pytest.raises(ProblemError) as raised:
        anonymous.analyze(SMALL)
    assert raised.value.status == 401


def test_the_command_line_sends_api_key_or_initscope_api_key(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import Run

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SMALL))
    argv = ["analyze", str(spec), "--url", "http://initscope", "--retries", "0"]
    monkeypatch.delenv("INITSCOPE_API_KEY", raising=False)
    refused = Run(argv, terminal=False, transport=AppTransport(client))
    assert refused.status == 3  # the service refused
    assert "401" in refused.err.getvalue()
    given = Run([*argv, "--api-key", BETA], terminal=False, transport=AppTransport(client))
    assert given.status == 0, given.err.getvalue()
    monkeypatch.setenv("INITSCOPE_API_KEY", ALPHA)
    from_env = Run(argv, terminal=False, transport=AppTransport(client))
    assert from_env.status == 0, from_env.err.getvalue()
    assert from_env.json() == given.json() | {"meta": from_env.json()["meta"]}


# --- logs, metrics, OpenAPI -----------------------------------------------------------------


def test_keys_never_reach_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    client.post("/analyze", json=SMALL, headers=bearer(ALPHA))
    client.post("/analyze", json=SMALL, headers=bearer(BETA + "wrong"))
    client.post("/analyze", json=SMALL, headers={"authorization": f"Basic {ALPHA}"})
    records = [r for r in caplog.records if r.name == "initscope.access"]
    assert len(records) == 3
    for record in caplog.records:
        text = record.getMessage() + json.dumps(vars(record), default=str)
        assert ALPHA not in text
        assert BETA not in text


def test_metrics_count_requests_and_refusals_per_hashed_key(
    client: TestClient, app: FastAPI
) -> None:
    alpha, beta = auth.key_id(ALPHA), auth.key_id(BETA)
    assert alpha == hashlib.sha256(ALPHA.encode()).hexdigest()[:12]
    before = scrape(client)
    assert value(before, "initscope_key_requests_total", key=beta) == 0  # listed from the start
    client.post("/analyze", json=SMALL, headers=bearer(ALPHA))
    client.post("/analyze", json=SMALL, headers=bearer(ALPHA))
    client.post("/analyze", json=SMALL)
    client.post("/analyze", json=SMALL, headers=bearer("not-a-key-at-all"))
    gate: auth.Gate = app.state.gate
    for _ in range(gate.limit):
        gate.enter(auth.Caller(beta))
    assert client.post("/analyze", json=SMALL, headers=bearer(BETA)).status_code == 429
    samples = scrape(client)
    assert value(samples, "initscope_key_requests_total", key=alpha) == 2
    assert value(samples, "initscope_key_requests_total", key=beta) == gate.limit
    assert value(samples, "initscope_key_rejections_total", key=beta, reason="share") == 1
    assert value(samples, "initscope_key_rejections_total", key=alpha, reason="share") == 0
    assert value(samples, "initscope_unauthorized_total", reason="missing") == 1
    assert value(samples, "initscope_unauthorized_total", reason="invalid") == 1
    exposition = client.get("/metrics").text
    assert ALPHA not in exposition
    assert BETA not in exposition
    assert "not-a-key-at-all" not in exposition


def _security(document: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{method.upper()} {path}": operation.get("security")
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def test_openapi_declares_the_bearer_scheme_on_the_computing_operations(app: FastAPI) -> None:
    document = app.openapi()
    scheme = document["components"]["securitySchemes"][auth.SCHEME]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert document["security"] == []  # nothing else needs a key
    security = _security(document)
    assert {op: s for op, s in security.items() if s} == {
        f"POST {path}": [{auth.SCHEME: []}] for path in POSTS
    }
    for path in POSTS:
        responses = document["paths"][path]["post"]["responses"]
        assert "WWW-Authenticate" in responses["401"]["headers"]
        assert "Retry-After" in responses["429"]["headers"]


def test_without_keys_the_document_says_a_key_is_optional(settings: Settings) -> None:
    """The committed document (no keys): the bearer scheme or nothing."""
    committed = json.loads((Path(__file__).parent.parent / "openapi/openapi.json").read_text())
    for document in (create_app(settings).openapi(), committed):
        assert auth.SCHEME in document["components"]["securitySchemes"]
        security = {op: s for op, s in _security(document).items() if s}
        assert security == {f"POST {path}": [{auth.SCHEME: []}, {}] for path in POSTS}


# --- deploy/kubernetes ----------------------------------------------------------------------


def test_the_deployment_reads_keys_from_an_optional_secret() -> None:
    from tests.test_deploy import load

    pod = load("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    keys_file = Path(env["INITSCOPE_API_KEYS_FILE"])
    (mount,) = (m for m in container["volumeMounts"] if m["name"] == "api-keys")
    assert mount["readOnly"] is True
    assert keys_file.parent == Path(mount["mountPath"])
    (volume,) = (v for v in pod["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["optional"] is True  # deploys without the Secret
    assert volume["secret"]["defaultMode"] & 0o004  # readable by uid 10001
    # without the Secret the file is absent: the settings still load, with no key
    assert Settings(workers=1, api_keys_file=keys_file).bearer_keys == ()


def test_the_network_policy_admits_named_namespaces_and_prometheus_to_the_pods() -> None:
    from tests.test_deploy import load

    policy = load("NetworkPolicy")["spec"]
    deployment = load("Deployment")
    assert policy["podSelector"] == deployment["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"] for port in container["ports"]}
    selectors = []
    for rule in policy["ingress"]:
        assert {port["port"] for port in rule["ports"]} <= ports
        (peer,) = rule["from"]
        assert list(peer) == ["namespaceSelector"]  # whole namespaces, by label, nothing else
        selectors.append(peer["namespaceSelector"]["matchLabels"])
    assert selectors == [
        {"initscope.dev/client": "true"},
        {"kubernetes.io/metadata.name": "monitoring"},
    ]
