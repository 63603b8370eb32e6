from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelwire.settings import Settings
from tests.models import EchoModel
from tests.serving import ThreadedServer


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """A runner in an empty folder (no stray modelwire.toml) with no MODELWIRE_* variables set."""
    for name in list(os.environ):
        if name.startswith("MODELWIRE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def server(trained_data_dir: Path) -> Iterator[ThreadedServer]:
    settings = Settings(host="127.0.0.1", http_port=0, grpc_port=0, data_dir=trained_data_dir)
    running = ThreadedServer(settings, EchoModel("echo")).start()
    try:
        yield running
    finally:
        running.stop()
