from __future__ import annotations

import re
from typing import Any

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


def _command_paths() -> list[str]:
    """Every command and command group of the CLI, as typed after ``modelwire``."""
    import typer
    from typer.core import TyperGroup

    paths: list[str] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(" ".join(path))
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


# typer's type markers: <bool>, <int range>, <list[str]>, <file>, <auto|on|off> (not help text's jobs/<id>).
_TYPE_MARKER = re.compile(
    r"<(?:(?:bool|str|int|float|file|dir|path|datetime|uuid|bytes)(?: range)?"
    r"|list\[[^\]]*\]|[a-z]+(?:\|[a-z]+)+)>"
)


@pytest.mark.parametrize("command", _command_paths())
def test_help_names_values_not_python_types(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    markers = _TYPE_MARKER.findall(result.stdout)
    assert not markers, f"modelwire {command} --help shows {markers}"


def test_help_shows_value_names_and_nothing_after_a_flag(runner: CliRunner) -> None:
    lines = runner.invoke(app, ["serve", "--help"], terminal_width=200).stdout.splitlines()

    def row(flag: str) -> list[str]:
        (line,) = [line for line in lines if re.search(rf"│ {re.escape(flag)}\b(?!-)", line)]
        return line.strip("│ ").split()

    assert row("--http-port")[:2] == ["--http-port", "PORT"]
    assert row("--config")[:2] == ["--config", "FILE"]
    assert row("--workers")[:2] == ["--workers", "N"]
    assert row("--request-timeout")[:2] == ["--request-timeout", "SECONDS"]
    assert row("--auth")[:2] == ["--auth", "auto|on|off"]
    assert row("--ws-echo")[:2] == ["--ws-echo", "Serve"]  # a flag: its help follows at once
    assert row("--batching")[:3] == ["--batching", "--no-batching", "Adaptive"]
    assert "MODELWIRE_WS__ECHO" in " ".join(row("--ws-echo"))
