"""``modelwire serve --ws-echo``: the flag, its environment twin, and ``modelwire.run(ws_echo=...)``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import modelwire
from modelwire.app import main
from modelwire.cli import app
from modelwire.settings import Settings


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    calls: list[Settings] = []
    monkeypatch.setattr(main, "run", calls.append)
    return calls


@pytest.mark.parametrize(
    ("args", "env", "echo"),
    [
        ([], {}, False),
        (["--ws-echo"], {}, True),
        ([], {"MODELWIRE_WS__ECHO": "true"}, True),
        (["--ws-echo"], {"MODELWIRE_WS__MAX_INFLIGHT": "8"}, True),
    ],
)
def test_ws_echo_flag(
    runner: CliRunner, served: list[Settings], args: list[str], env: dict[str, str], echo: bool
) -> None:
    result = runner.invoke(app, ["serve", *args], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = served
    assert settings.ws.echo is echo
    if "MODELWIRE_WS__MAX_INFLIGHT" in env:
        assert settings.ws.max_inflight == 8  # the flag sets one key; the section's others still apply


def test_help_names_the_environment_twin(runner: CliRunner) -> None:
    help_text = runner.invoke(app, ["serve", "--help"]).stdout
    (line,) = [line for line in help_text.splitlines() if "--ws-echo" in line]
    assert "MODELWIRE_WS__ECHO" in line


def test_run_takes_ws_echo(served: list[Settings]) -> None:
    modelwire.run(ws_echo=True)
    assert served[0].ws.echo
