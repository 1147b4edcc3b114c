"""The deployment files validate offline and start the proxy as the README says.

* `deploy/kubernetes.yaml`: every built-in kind against the Kubernetes JSON schemas that the
  `kubernetes-validate` package ships (strict: unknown fields fail), the ServiceMonitor
  (a Prometheus Operator CRD, not in those schemas) by shape; plus what the kubelet checks
  at start-up: `runAsNonRoot` needs a numeric user, and a `:latest` image needs a pull policy
  that does not pull an image that only exists locally.
* `docker-compose.yml`: against the Compose specification's JSON schema (vendored by
  `check-jsonschema`), and the environment it gives the container, built from
  `.env.example` as Compose would, starts a proxy that answers the image's HEALTHCHECK.
* `Dockerfile`: the final user is numeric and owns the working directory.

No Docker daemon or cluster is needed; these are the checks that run in CI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes.yaml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
KUBERNETES_VERSION = "1.30.0"


def _manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(KUBERNETES.read_text()) if doc]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


# ---------------------------------------------------------------- Kubernetes


def test_kubernetes_builtin_kinds_match_the_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kinds = []
    for doc in _manifests():
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        kinds.append(doc["kind"])
    assert sorted(kinds) == ["Deployment", "Service"]


def test_kubernetes_validation_catches_a_broken_manifest() -> None:
    """The schema check above is a real check: a misspelt field fails it."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = next(doc for doc in _manifests() if doc["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kubernetes_pod_can_start_as_non_root() -> None:
    deployment = next(doc for doc in _manifests() if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The kubelet refuses runAsNonRoot unless it can see a numeric, non-zero user: in the pod
    # spec or as the image's USER.
    image_user = _final_user()
    assert image_user.split(":")[0].isdigit() and int(image_user.split(":")[0]) > 0
    assert pod["securityContext"]["runAsUser"] == int(image_user.split(":")[0])
    (container,) = pod["containers"]
    assert container["image"].endswith(":latest")
    # `:latest` means "Always" pull by default, and the image is built locally, not pushed.
    assert container["imagePullPolicy"] in ("IfNotPresent", "Never")
    # The probes and the Service point at the port the proxy listens on.
    env = {item["name"]: item["value"] for item in container["env"]}
    assert container["ports"][0]["containerPort"] == int(env["PORT"])
    assert env["HOST"] == "0.0.0.0"


def test_kubernetes_service_monitor_selects_the_service() -> None:
    docs = _manifests()
    service = next(doc for doc in docs if doc["kind"] == "Service")
    monitor = next(doc for doc in docs if doc["kind"] == "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_kubernetes_documents_loading_the_local_image() -> None:
    text = KUBERNETES.read_text()
    assert "kind load docker-image claude-code-proxy:latest" in text
    assert "minikube image load claude-code-proxy:latest" in text


# ---------------------------------------------------------------- Dockerfile


def _final_user() -> str:
    users = [args.strip() for name, args in _dockerfile_instructions() if name == "USER"]
    assert users, "the Dockerfile sets no USER: the proxy would run as root"
    return users[-1]


def test_dockerfile_runs_as_a_numeric_user_in_a_directory_it_owns() -> None:
    instructions = _dockerfile_instructions()
    user = _final_user()
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), user
    uid = user.split(":")[0]
    after_user = instructions[[i for i, (n, _) in enumerate(instructions) if n == "USER"][-1] :]
    workdirs = [args.strip() for name, args in after_user if name == "WORKDIR"]
    assert workdirs, "no WORKDIR after USER: the process would work in a root-owned directory"
    workdir = workdirs[-1]
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert re.search(rf"chown\s+{uid}(:\d+)?\s+{re.escape(workdir)}\b", runs), runs


# ---------------------------------------------------------------- Compose


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_matches_the_compose_specification() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("check_jsonschema")
    schema_text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text(encoding="utf-8")
    )
    schema = json.loads(schema_text)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [e.message for e in validator.iter_errors(_compose())]
    assert errors == []
    broken = _compose()
    broken["services"]["claude-code-proxy"]["restart_policy"] = "always"
    assert list(validator.iter_errors(broken)), "the schema check must catch unknown keys"


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` / `${NAME}` interpolation (what this file uses)."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        found = variables.get(name, "")
        return found if found else (default or "")

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", substitute, value)


def _compose_container_env() -> dict[str, str]:
    """The container's environment for `cp .env.example .env && docker compose up`."""
    from dotenv import dotenv_values

    dotenv = {k: v for k, v in dotenv_values(ENV_EXAMPLE).items() if v is not None}
    service = _compose()["services"]["claude-code-proxy"]
    assert service["env_file"] == ".env"
    env = dict(dotenv)  # env_file first, then `environment:` wins
    for name, value in service["environment"].items():
        env[name] = _interpolate(str(value), dotenv)
    return env


def test_compose_quick_start_settings_are_accepted() -> None:
    """The crash loop of issue 16: HOST=0.0.0.0 with the example's upstream key and no client
    key used to be refused at every (re)start."""
    from claude_code_proxy.config import Settings

    env = _compose_container_env()
    assert env["HOST"] == "0.0.0.0"
    settings = Settings.from_env(env)
    assert not settings.dynamic_keys and settings.anthropic_api_key is None
    ports = _compose()["services"]["claude-code-proxy"]["ports"]
    # Accepted because the port is published on the host's loopback only.
    assert all(_interpolate(p, {}).startswith("127.0.0.1:") for p in ports), ports


def _serve(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "claude_code_proxy"],
        env={"PATH": os.environ.get("PATH", ""), **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_compose_quick_start_container_becomes_healthy(tmp_path: Path) -> None:
    """What the container runs, with the Compose environment (loopback here instead of
    0.0.0.0: tests listen on 127.0.0.1 only), answers the image's HEALTHCHECK request."""
    env = {**_compose_container_env(), "HOST": "127.0.0.1", "PORT": "0"}
    proc = _serve(env, tmp_path)
    try:
        port = None
        assert proc.stderr is not None
        for line in proc.stderr:
            match = re.search(r"listening on\s+http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "no banner"
        response = None
        deadline = time.monotonic() + 30
        while response is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.05)
        assert response is not None and response.status_code == 200
        assert response.json()["status"] == "healthy"
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_refused_start_says_why_on_stderr(tmp_path: Path) -> None:
    """What `docker compose logs` shows when the start is refused (no crash loop in silence)."""
    env = {**_compose_container_env(), "ALLOW_UNAUTHENTICATED": "false"}
    proc = _serve(env, tmp_path)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "HOST=0.0.0.0" in stderr and "ANTHROPIC_API_KEY" in stderr, stderr
    assert "Traceback" not in stderr


def test_the_banner_says_why_an_open_bind_was_accepted() -> None:
    from claude_code_proxy.cli import banner
    from claude_code_proxy.config import Settings

    text = banner(Settings.from_env(_compose_container_env()))
    line = next(line for line in text.splitlines() if "client key" in line)
    assert "ALLOW_UNAUTHENTICATED=true" in line and "HOST=0.0.0.0" in line, line
