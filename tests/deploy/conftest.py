"""Fixtures for the deployment files: the Kubernetes manifests (deploy/kubernetes/) and the Dockerfile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from modelwire.cli import app

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests promise to work on (docs/deploy.md); its schemas validate them."""


@dataclass(frozen=True)
class Manifest:
    path: Path
    index: int  # the document's place in its file
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.path.relative_to(KUBERNETES)}#{self.index}:{self.kind}/{self.name}"


def load_manifests(paths: list[Path]) -> list[Manifest]:
    out = []
    for path in paths:
        for index, body in enumerate(yaml.safe_load_all(path.read_text())):
            if body is not None:
                out.append(Manifest(path, index, body))
    return out


def manifest_files() -> list[Path]:
    """Every Kubernetes object file (optional ones too), without kustomization.yaml itself."""
    return sorted(p for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="session")
def manifests() -> list[Manifest]:
    """The objects `kubectl apply -k deploy/kubernetes` creates (optional/ left out), the Secret aside."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return load_manifests([KUBERNETES / name for name in kustomization["resources"]])


@pytest.fixture(scope="session")
def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return loaded


def command_flags(command: str) -> set[str]:
    """The long options ``modelwire COMMAND`` takes, from the CLI itself."""
    commands = getattr(typer.main.get_command(app), "commands", {})
    found = commands.get(command)
    assert found is not None, f"modelwire has no {command!r} command"
    return {opt for param in found.params for opt in param.opts if opt.startswith("--")}
