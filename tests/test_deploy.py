"""The Dockerfile and the Kubernetes manifests: linted and schema-checked offline, and consistent
with the app (probe paths, port, pool size against the CPU request, memory per worker)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import APIRoute
from initscope.config import Settings
from initscope.http.api import create_app

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
DOCUMENTS = [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text())]
BIN = Path(sys.executable).parent  # the dev venv's tools: hadolint, yamllint, kubernetes-validate
BACKSTOP_S = 2  # python -m initscope: uvicorn's graceful-shutdown timeout is the drain bound + 2


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / args[0], *args[1:]], cwd=ROOT, capture_output=True, text=True, check=False
    )


def load(kind: str) -> dict[str, Any]:
    (document,) = (doc for doc in DOCUMENTS if doc["kind"] == kind)
    return document  # type: ignore[no-any-return]


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (``"2"``, ``"500m"``, ``"3500Mi"``, ``"4G"``) as a plain number."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match is not None, value
    number, suffix = match.groups()
    scale = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return float(number) * scale[suffix]


@pytest.fixture(scope="module")
def container() -> dict[str, Any]:
    (only,) = load("Deployment")["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def test_dockerfile_passes_hadolint() -> None:
    result = run_tool("hadolint", "Dockerfile")  # rules ignored in .hadolint.yaml, with reasons
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_yaml_passes_yamllint() -> None:
    result = run_tool("yamllint", "--strict", "deploy", ".yamllint", ".hadolint.yaml")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_manifest_matches_the_kubernetes_schema(manifest: Path) -> None:
    """Bundled schemas, no cluster; ``--strict`` also rejects fields the API does not have."""
    result = run_tool("kubernetes-validate", "--strict", "--no-warn", manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


def test_manifests_cover_the_deployment_kinds() -> None:
    assert sorted(doc["kind"] for doc in DOCUMENTS) == sorted(
        [
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",  # initscope.http.auth's manifests: tests/test_auth.py
        ]
    )


def test_probes_and_port_are_the_apps(container: dict[str, Any]) -> None:
    app = create_app(Settings(workers=1))
    paths = {route.path for route in app.routes if isinstance(route, APIRoute)}
    (port,) = container["ports"]
    assert port["containerPort"] == Settings.model_fields["port"].default
    for probe, path in (
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": port["name"]}
        assert path in paths


def test_pool_is_sized_to_the_cpu_request(container: dict[str, Any]) -> None:
    env = {item["name"]: item["value"] for item in container["env"]}
    workers = int(env["INITSCOPE_WORKERS"])
    assert quantity(container["resources"]["requests"]["cpu"]) == workers
    # the jobs share the requested CPUs' BLAS threads, not the node's
    assert quantity(container["resources"]["requests"]["cpu"]) == int(env["INITSCOPE_CPUS"])


def test_memory_covers_one_simulation_per_worker(container: dict[str, Any]) -> None:
    env = {item["name"]: item["value"] for item in container["env"]}
    budget = env.get(
        "INITSCOPE_MEMORY_BUDGET_BYTES", Settings.model_fields["memory_budget_bytes"].default
    )
    resources = container["resources"]
    request = quantity(resources["requests"]["memory"])
    assert request == quantity(resources["limits"]["memory"])  # no overcommit, no surprise OOM
    assert request >= int(env["INITSCOPE_WORKERS"]) * int(budget) + 256 * 2**20


def test_pod_is_locked_down(container: dict[str, Any]) -> None:
    pod = load("Deployment")["spec"]["template"]["spec"]
    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert dockerfile_user is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == dockerfile_user[1]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    env = {item["name"]: item["value"] for item in container["env"]}
    drain = float(env["INITSCOPE_SHUTDOWN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > pause + drain + BACKSTOP_S
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # MPLCONFIGDIR and temp files, writable


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    deployment = load("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert load("Service")["spec"]["selector"].items() <= labels.items()
    assert load("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = load("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["minReplicas"] >= 2  # with the PDB's minAvailable 1, a drain keeps one pod


def test_manifest_environment_is_valid_settings(container: dict[str, Any]) -> None:
    env = {item["name"]: item["value"] for item in container["env"]}
    ours = {
        name.removeprefix("INITSCOPE_").lower(): value
        for name, value in env.items()
        if name.startswith("INITSCOPE_")
    }
    settings = Settings.model_validate(ours)
    assert settings.workers == int(env["INITSCOPE_WORKERS"])
    assert settings.request_timeout_s == float(env["INITSCOPE_REQUEST_TIMEOUT_S"])
