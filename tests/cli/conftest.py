from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """A runner in an empty folder (no stray modelwire.toml) with no MODELWIRE_* variables set."""
    for name in list(os.environ):
        if name.startswith("MODELWIRE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    return serve_module(EchoModel("echo"))
