"""The ``initscope`` command: in-process and against the app, tables, JSON, figures, errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from initscope import cli
from initscope.config import Settings
from initscope.engine.sweep import run_sweep
from initscope.operations import SWEEP, run_here
from initscope.schemas import SweepRequest
from rich.console import Console

from tests.client_support import PNG, SMALL, AppTransport

EXAMPLES = Path(cli.__file__).resolve().parent / "examples"


class Run:
    """One invocation: exit status, stdout (text and bytes) and stderr."""

    def __init__(self, argv: list[str], *, terminal: bool, transport: Any = None) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.binary = io.BytesIO()
        streams = cli.Streams(
            Console(file=self.out, force_terminal=terminal, width=160, color_system=None),
            Console(file=self.err, force_terminal=terminal, width=160, color_system=None),
            self.binary,
        )
        self.status = cli.run(argv, streams, transport)

    def json(self) -> Any:
        return json.loads(self.out.getvalue())


def _spec(tmp_path: Path, body: dict[str, Any], name: str = "spec.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return str(path)


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "meta": {**body["meta"], "elapsed_ms": 0.0}}


def test_piped_analyze_prints_the_apis_json(default_client: TestClient) -> None:
    spec = EXAMPLES / "analyze-sigmoid-std1.json"
    run = Run(["analyze", str(spec)], terminal=False)
    assert run.status == cli.FINDINGS  # saturation
    api = default_client.post("/analyze", json=json.loads(spec.read_text())).json()
    assert _stable(run.json()) == _stable(api)
    assert run.err.getvalue() == ""


def test_healthy_network_exits_0(tmp_path: Path) -> None:
    run = Run(["analyze", _spec(tmp_path, SMALL)], terminal=False)
    assert run.status == cli.OK
    assert run.json()["diagnosis"]["verdict"] == "healthy"


def test_terminal_gets_a_table(tmp_path: Path) -> None:
    run = Run(["analyze", str(EXAMPLES / "analyze-sigmoid-std1.json")], terminal=True)
    text = run.out.getvalue()
    assert run.status == cli.FINDINGS
    assert "E[phi'^2]" in text
    assert "5 layers of sigmoid, normal(mean=0.0, std=1.0)" in text
    rows = [line for line in text.splitlines() if line.startswith("│")]
    layers, simulated = rows[:5], rows[5:]
    assert [row.split("│")[1].strip() for row in layers] == ["1", "2", "3", "4", "5"]
    assert "patches simulated, best first" in text
    assert simulated  # the recommendation and its alternatives, one row each
    assert "healthy" in simulated[0]  # the recommended patch, verified
    rows = layers
    assert "0.459" in rows[0]  # layer 1's std (0.45867 in float32 and float64 alike)
    assert "saturation (layers 1-5): 66% of layer 1's values" in text
    assert "verdict: saturation" in text
    # 0.875 in float32 as in float64 (issue 12: float32 used to draw another network, 0.823)
    assert "gradient RMS, layer 1 / last layer: 0.875" in text


def test_json_flag_wins_over_the_terminal(tmp_path: Path) -> None:
    run = Run(["analyze", _spec(tmp_path, SMALL), "--json"], terminal=True)
    assert run.json()["diagnosis"]["verdict"] == "healthy"


def test_stdin_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(SMALL)))
    run = Run(["analyze", "-"], terminal=False)
    assert run.status == cli.OK
    assert len(run.json()["layers"]) == 3


def test_compare_on_a_terminal_shows_progress_and_the_table() -> None:
    run = Run(["compare", str(EXAMPLES / "compare-relu.json")], terminal=True)
    assert run.status == cli.FINDINGS  # std=0.01 vanishes
    assert "analysing variants" in run.err.getvalue()
    assert "3/3" in run.err.getvalue()
    table = run.out.getvalue()
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if "│" in line}
    assert "vanishing_gradients" in rows["std=0.01"]
    assert "healthy" in rows["He (sqrt(2/n))"]


def test_piped_compare_has_no_progress_bar(default_client: TestClient) -> None:
    spec = EXAMPLES / "compare-relu.json"
    run = Run(["compare", str(spec)], terminal=False)
    assert run.err.getvalue() == ""
    api = default_client.post("/compare", json=json.loads(spec.read_text())).json()
    assert run.json()["table"] == api["table"]


def test_a_sweep_run_here_is_run_sweep_with_a_tick_per_row() -> None:
    body = json.loads((EXAMPLES / "sweep-tanh.json").read_text())
    body.update(depth=6, width=32, samples=64)
    jobs = SWEEP.to_jobs(SweepRequest.model_validate(body), Settings())
    ticks: list[None] = []
    assert run_here(SWEEP, jobs, lambda: ticks.append(None)) == run_sweep(jobs[0][1].job)
    assert len(ticks) == SWEEP.total(jobs) == len(jobs[0][1].job.y_values)


def test_sweep_table(tmp_path: Path) -> None:
    body = {
        "activation": "tanh",
        "depth": 4,
        "width": 16,
        "samples": 64,
        "x": {"param": "sigma_w2", "values": [1.0, 2.0]},
        "y": {"param": "sigma_b2", "values": [0.0, 0.05]},
        "metric": "chi_1",
    }
    run = Run(["sweep", _spec(tmp_path, body)], terminal=True)
    text = run.out.getvalue()
    assert run.status == cli.OK
    assert "chi_1 from simulation, tanh" in text
    assert "chi_1 from theory, tanh" in text
    assert "edge of chaos, (sigma_w2, sigma_b2): (1, 0)" in text
    assert "sweeping rows" in run.err.getvalue()


def test_figure_to_a_file_and_to_a_pipe(tmp_path: Path) -> None:
    target = tmp_path / "figure.png"
    spec = _spec(tmp_path, SMALL)
    to_file = Run(
        ["analyze", spec, "--format", "png", "-o", str(target), "--width", "500"], terminal=True
    )
    assert to_file.status == cli.OK
    assert target.read_bytes().startswith(PNG)
    assert int.from_bytes(target.read_bytes()[16:20], "big") == 500
    piped = Run(["analyze", spec, "--format", "svg"], terminal=False)
    assert piped.binary.getvalue().lstrip().startswith(b"<?xml")


def test_no_figure_on_a_terminal(tmp_path: Path) -> None:
    run = Run(["analyze", _spec(tmp_path, SMALL), "--format", "png"], terminal=True)
    assert run.status == cli.INPUT_ERROR
    assert "give -o FILE or redirect" in run.err.getvalue()


def test_json_to_a_file_and_the_table_on_the_terminal(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    run = Run(["analyze", _spec(tmp_path, SMALL), "-o", str(target)], terminal=True)
    assert json.loads(target.read_text())["diagnosis"]["verdict"] == "healthy"
    assert "verdict: healthy" in run.out.getvalue()


@pytest.mark.parametrize("where", ["in-process", "--url"])
def test_validation_errors_read_like_the_422(
    client: TestClient, tmp_path: Path, where: str
) -> None:
    body = {**SMALL, "network": {**SMALL["network"], "init": {"scheme": "kaiming"}}}
    api = client.post("/analyze", json=body).json()
    expected = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in api["errors"]]
    argv = ["analyze", _spec(tmp_path, body)]
    if where == "--url":
        argv += ["--url", "http://initscope"]
    run = Run(argv, terminal=False, transport=AppTransport(client))
    assert run.status == cli.INPUT_ERROR
    lines = run.err.getvalue().splitlines()
    assert lines[0] == f"initscope: {api['title']} (422): {api['detail']}"
    assert lines[1:] == expected


@pytest.mark.parametrize("where", ["in-process", "--url"])
def test_limits_read_like_the_422(client: TestClient, tmp_path: Path, where: str) -> None:
    """The in-process command enforces the INITSCOPE_* limits as the service does."""
    body = {**SMALL, "network": {**SMALL["network"], "depth": 100}}
    argv = ["analyze", _spec(tmp_path, body)]
    if where == "--url":
        argv += ["--url", "http://initscope"]
    run = Run(argv, terminal=False, transport=AppTransport(client))
    assert run.status == cli.INPUT_ERROR
    limit = 20 if where == "--url" else Settings().max_layers  # the test app's small limits
    assert f"  body.network.depth: depth must be at most {limit}, got 100" in run.err.getvalue()


def test_with_url_the_answer_is_the_services(default_client: TestClient) -> None:
    spec = EXAMPLES / "analyze-relu-he.json"
    remote = Run(
        ["analyze", str(spec), "--url", "http://initscope"],
        terminal=False,
        transport=AppTransport(default_client),
    )
    local = Run(["analyze", str(spec)], terminal=False)
    assert remote.status == local.status == cli.OK
    assert _stable(remote.json()) == _stable(local.json())


def test_unreachable_service_exits_3(tmp_path: Path) -> None:
    from tests.client_support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    run = Run(["analyze", _spec(tmp_path, SMALL), "--url", url, "--retries", "0"], terminal=False)
    assert run.status == cli.SERVICE_ERROR
    assert run.err.getvalue().startswith(f"initscope: POST {url}/analyze:")


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not valid JSON: Expecting property name"), (None, "cannot read")],
)
def test_unreadable_specs_exit_2(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    run = Run(["analyze", str(path)], terminal=False)
    assert run.status == cli.INPUT_ERROR
    assert message in run.err.getvalue()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["analyze"]) == cli.INPUT_ERROR
    assert "the following arguments are required: SPEC.json" in capsys.readouterr().err
    assert cli.run(["list", "optimizers"]) == cli.INPUT_ERROR
    assert cli.run(["serve", "--port", "0"]) == cli.INPUT_ERROR


@pytest.mark.parametrize("what", ["initializers", "activations"])
def test_list_matches_the_catalogue_endpoints(client: TestClient, what: str) -> None:
    local = Run(["list", what], terminal=False)
    remote = Run(
        ["list", what, "--url", "http://initscope"], terminal=False, transport=AppTransport(client)
    )
    assert local.status == remote.status == cli.OK
    assert local.json() == remote.json() == client.get(f"/{what}").json()


def test_list_table() -> None:
    text = Run(["list", "initializers"], terminal=True).out.getvalue()
    assert "he_normal" in text
    assert "kaiming_normal" in text


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("initscope")
    done = subprocess.run(
        [str(script), "analyze", str(EXAMPLES / "analyze-relu-he.json")],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["diagnosis"]["verdict"] == "healthy"
    assert done.stderr == b""  # piped: no progress, no colour


def test_the_table_says_which_layers_add_batch_norm_or_dropout(tmp_path: Path) -> None:
    layer = {"units": 8, "activation": "relu", "init": "he_normal"}
    body = {
        "network": {
            "input_dim": 8,
            "layers": [{**layer, "batch_norm": {}}, {**layer, "dropout": 0.5}, layer],
        },
        "input": {"samples": 50},
    }
    run = Run(["analyze", _spec(tmp_path, body)], terminal=True)
    rows = [line for line in run.out.getvalue().splitlines() if line.startswith("│")]
    assert [row.split("│")[3].strip() for row in rows] == ["BN", "drop 0.5", "-"]
