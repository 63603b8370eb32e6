"""deploy/kubernetes/: every object valid against the Kubernetes schemas (offline, kubernetes-validate), and
the rules of our own that a schema cannot see (probes, headless balancing, drain timing, non-root)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from modelwire.settings import Settings
from tests.deploy.conftest import (
    KUBERNETES,
    KUBERNETES_VERSION,
    ROOT,
    Manifest,
    command_flags,
    load_manifests,
    manifest_files,
)

ALL = load_manifests(manifest_files())
NO_PROBES: dict[str, str] = {}
"""Containers allowed to have no probes, and why (none: a worker answers probes on its --ops-port)."""


def _validate(body: dict[str, Any]) -> None:
    kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("manifest", ALL, ids=str)
def test_valid_against_the_kubernetes_schema(manifest: Manifest) -> None:
    """Strict: a misspelt or misplaced field fails, not only a wrong type."""
    _validate(manifest.body)


def test_the_schema_check_catches_a_misplaced_field() -> None:
    deployment = next(m.body for m in ALL if m.kind == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {"grpc": {"port": 8001}}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken)


def test_kustomization_lists_every_file(kustomization: dict[str, Any]) -> None:
    top_level = {p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert set(kustomization["resources"]) == top_level
    assert kustomization["namespace"] == "modelwire"
    assert all(m.body["metadata"].get("namespace") in (None, "modelwire") for m in ALL)


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed"
)
def test_kustomize_renders_valid_objects(tmp_path: Path) -> None:
    """`kubectl kustomize` (offline) with the example Secret: the generated objects are valid too."""
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    shutil.copy(tree / "auth.env.example", tree / "auth.env")
    done = subprocess.run(
        ["kubectl", "kustomize", str(tree)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    rendered = [body for body in yaml.safe_load_all(done.stdout) if body]
    for body in rendered:
        _validate(body)
    secrets = [b for b in rendered if b["kind"] == "Secret"]
    assert [s["metadata"]["name"].startswith("modelwire-auth-") for s in secrets] == [True]
    assert len(rendered) == len(ALL) - len([m for m in ALL if m.path.parent.name == "optional"]) + 1


def _deployments(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {m.name: m.body for m in manifests if m.kind == "Deployment"}


def _containers(deployment: dict[str, Any], init: bool = False) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return list(spec["containers"]) + (list(spec.get("initContainers", [])) if init else [])


def _role(manifests: list[Manifest], component: str) -> dict[str, Any]:
    found = [
        body
        for body in _deployments(manifests).values()
        if body["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(found) == 1, f"one Deployment for {component}"
    return found[0]


def _env(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: its ConfigMaps' data, then its own env entries on top."""
    maps = {m.name: m.body.get("data", {}) for m in manifests if m.kind == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= maps[source["configMapRef"]["name"]]
    env |= {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    return env


def test_every_container_has_requests_and_a_memory_limit(manifests: list[Manifest]) -> None:
    for name, deployment in _deployments(manifests).items():
        for container in _containers(deployment, init=True):
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), (name, container["name"])
            assert "memory" in resources.get("limits", {}), (name, container["name"])


def test_every_listening_container_has_probes(manifests: list[Manifest]) -> None:
    for name, deployment in _deployments(manifests).items():
        for container in _containers(deployment):
            if not container.get("ports"):
                assert container["name"] in NO_PROBES, f"{name}/{container['name']}: no ports and no probes"
                continue
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{name}/{container['name']} has no {probe}"


def test_worker_probes_its_ops_port(manifests: list[Manifest]) -> None:
    (container,) = _containers(_role(manifests, "worker"))
    assert container["args"][container["args"].index("--ops-port") + 1] == "8002"
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "ops"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "ops"}


def test_gateway_probes_its_health_endpoints(manifests: list[Manifest]) -> None:
    (container,) = _containers(_role(manifests, "gateway"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_model_service_probes_grpc_health_on_its_port(manifests: list[Manifest]) -> None:
    (container,) = _containers(_role(manifests, "model-service"))
    port = _flag(container["args"], "--grpc-port")
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": int(port)}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == int(port)


def _flag(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def _selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in selector.items())


def test_upstreams_name_the_headless_model_service(manifests: list[Manifest]) -> None:
    """Gateways and workers balance over dns:///<headless Service>:<port>, which selects the model pods."""
    model = _role(manifests, "model-service")
    (model_container,) = _containers(model)
    services = [
        m.body for m in manifests if m.kind == "Service" and _selects(m.body["spec"]["selector"], model)
    ]
    assert len(services) == 1
    service = services[0]
    assert service["spec"]["clusterIP"] == "None", "the model Service must be headless for round_robin"
    assert not service["spec"].get("publishNotReadyAddresses", False)
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in ("grpc", int(_flag(model_container["args"], "--grpc-port")))
    expected = f"dns:///{service['metadata']['name']}:{port['port']}"
    for role in ("gateway", "worker"):
        (container,) = _containers(_role(manifests, role))
        assert _flag(container["args"], "--upstream") == expected, role


def test_every_selector_and_target_names_something_real(manifests: list[Manifest]) -> None:
    deployments = _deployments(manifests)
    for m in manifests:
        if m.kind == "Service":
            assert any(_selects(m.body["spec"]["selector"], d) for d in deployments.values()), str(m)
            for port in m.body["spec"]["ports"]:
                named = {
                    p["name"]
                    for d in deployments.values()
                    if _selects(m.body["spec"]["selector"], d)
                    for c in _containers(d)
                    for p in c.get("ports", [])
                }
                assert port["targetPort"] in named, str(m)
        if m.kind == "PodDisruptionBudget":
            assert any(_selects(m.body["spec"]["selector"]["matchLabels"], d) for d in deployments.values())
        if m.kind == "HorizontalPodAutoscaler":
            target = m.body["spec"]["scaleTargetRef"]
            assert target["kind"] == "Deployment", str(m)
            assert target["name"] in deployments, str(m)
    scaled = {
        m.body["spec"]["scaleTargetRef"]["name"] for m in manifests if m.kind == "HorizontalPodAutoscaler"
    }
    roles = {role: _role(manifests, role) for role in ("gateway", "model-service")}
    assert {d["metadata"]["name"] for d in roles.values()} <= scaled
    budgets = [m.body for m in manifests if m.kind == "PodDisruptionBudget"]
    for deployment in roles.values():
        assert any(_selects(b["spec"]["selector"]["matchLabels"], deployment) for b in budgets)


def _pre_stop_sleep(container: dict[str, Any]) -> float:
    pre_stop = container.get("lifecycle", {}).get("preStop")
    if pre_stop is None:
        return 0.0
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    return float(command[1])


def test_termination_grace_outlasts_prestop_and_drain(manifests: list[Manifest]) -> None:
    for name, deployment in _deployments(manifests).items():
        period = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        for container in _containers(deployment):
            env = _env(manifests, container)
            if "MODELWIRE_LIMITS__SHUTDOWN_GRACE_S" not in env:
                continue  # not a modelwire container (Redis)
            drain = float(env["MODELWIRE_LIMITS__SHUTDOWN_GRACE_S"])
            assert period > drain + _pre_stop_sleep(container), name
    for role in ("gateway", "model-service"):
        (container,) = _containers(_role(manifests, role))
        assert _pre_stop_sleep(container) > 0, f"{role}: endpoints need a moment to drop a terminating pod"


def test_pods_run_as_non_root_on_a_read_only_root(manifests: list[Manifest]) -> None:
    for name, deployment in _deployments(manifests).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in _containers(deployment, init=True):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert context.get("runAsUser", 1) != 0, (name, container["name"])


def test_images_are_pinned_and_rewritten_by_kustomize(
    manifests: list[Manifest], kustomization: dict[str, Any]
) -> None:
    ours = {entry["name"] for entry in kustomization["images"]}
    for name, deployment in _deployments(manifests).items():
        for container in _containers(deployment, init=True):
            image = container["image"]
            repository, _, tag = image.rpartition(":")
            assert repository, image
            assert tag not in ("", "latest"), f"{name}: {image} needs a fixed tag"
            if name != "modelwire-redis":
                assert repository in ours, f"{name}: {image} is not the image kustomization.yaml sets"


def test_modelwire_pods_run_the_dockerfiles_user(manifests: list[Manifest]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name, deployment in _deployments(manifests).items():
        if name == "modelwire-redis":
            continue
        uid = deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
        assert f"USER {uid}:" in dockerfile, f"{name} runs as {uid}, not the image's user"


def _secret_keys() -> set[str]:
    """The variables auth.env.example offers (as commented ``# MODELWIRE_…=`` lines)."""
    text = (KUBERNETES / "auth.env.example").read_text()
    return set(re.findall(r"^# (MODELWIRE_[A-Z_]+)=$", text, re.MULTILINE))


def test_settings_in_the_manifests_are_real_settings(
    manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every MODELWIRE_* variable given to a modelwire container (and the Secret's example) is understood."""
    example = dict.fromkeys(_secret_keys(), "x" * 48)
    for name, deployment in _deployments(manifests).items():
        if name == "modelwire-redis":
            continue
        for container in _containers(deployment):
            for key in list(os.environ):
                if key.startswith("MODELWIRE_"):
                    monkeypatch.delenv(key)
            env = _env(manifests, container) | example
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            settings = Settings()  # extra="forbid": an unknown MODELWIRE_SECTION__KEY raises
            assert settings.limits.shutdown_grace_s == float(env["MODELWIRE_LIMITS__SHUTDOWN_GRACE_S"])
            assert settings.host == "0.0.0.0"
            if container["args"][0] == "model-service":  # the gateways authenticate and rate-limit
                assert settings.auth.mode == "off"
                assert settings.rate_limits.enabled is False


def test_no_secret_is_committed(manifests: list[Manifest], kustomization: dict[str, Any]) -> None:
    assert not [m for m in ALL if m.kind == "Secret"], "Secrets come from auth.env via secretGenerator"
    (generator,) = kustomization["secretGenerator"]
    assert generator["envs"] == ["auth.env"]
    assert "deploy/kubernetes/auth.env" in (ROOT / ".gitignore").read_text().splitlines()
    lines = (KUBERNETES / "auth.env.example").read_text().splitlines()
    assert all(line.startswith("#") for line in lines if line), "the example sets no value, not even a dummy"
    assert _secret_keys() == {"MODELWIRE_AUTH__JWT_SECRET", "MODELWIRE_JOBS__WEBHOOK_SECRET"}


def test_manifest_args_are_real_cli_flags(manifests: list[Manifest]) -> None:
    for name, deployment in _deployments(manifests).items():
        for container in _containers(deployment):
            args = container.get("args", [])
            if name == "modelwire-redis" or not args:
                continue
            flags = {arg for arg in args[1:] if arg.startswith("--")}
            missing = flags - command_flags(args[0])
            assert not missing, f"{name}: `modelwire {args[0]}` has no {sorted(missing)}"
