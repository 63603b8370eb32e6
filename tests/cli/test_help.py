from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from modelwire import __version__
from modelwire.cli import app


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"modelwire {__version__}"


def test_no_command_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    for command in ("serve", "predict", "models", "health", "train", "watch", "worker", "jobs"):
        assert command in result.output


@pytest.mark.parametrize(
    "command", ["serve", "predict", "models", "health", "train", "watch", "worker", "jobs", "jobs submit"]
)
def test_every_command_has_help(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.stdout


def test_serve_help_names_every_environment_twin(runner: CliRunner) -> None:
    result = runner.invoke(app, ["serve", "--help"])
    twins = {
        "--host": "MODELWIRE_HOST",
        "--http-port": "MODELWIRE_HTTP_PORT",
        "--grpc-port": "MODELWIRE_GRPC_PORT",
        "--data-dir": "MODELWIRE_DATA_DIR",
        "--config": "MODELWIRE_CONFIG",
        "--workers": "MODELWIRE_WORKERS",
        "--log-level": "MODELWIRE_LOG_LEVEL",
        "--max-batch-size": "MODELWIRE_BATCHING__MAX_BATCH_SIZE",
        "--max-delay-ms": "MODELWIRE_BATCHING__MAX_DELAY_MS",
        "--batching": "MODELWIRE_BATCHING__ENABLED",
        "--request-timeout": "MODELWIRE_LIMITS__REQUEST_TIMEOUT_S",
    }
    lines = result.stdout.splitlines()
    for flag, env in twins.items():
        (line,) = [line for line in lines if re.search(rf"{re.escape(flag)}\b(?!-)", line)]
        assert env in line, f"{flag} does not name {env}: {line}"
