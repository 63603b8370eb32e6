"""``modelwire gateway`` and ``modelwire model-service``: help and refusals (no process is started)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from modelwire.cli import app


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> CliRunner:
    for name in list(os.environ):
        if name.startswith("MODELWIRE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_the_roles_are_listed(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert "model-service" in result.stdout
    assert "gateway" in result.stdout


def test_gateway_help_names_its_settings(runner: CliRunner) -> None:
    result = runner.invoke(app, ["gateway", "--help"])
    assert result.exit_code == 0
    for text in (
        "--upstream",
        "dns:///",
        "MODELWIRE_GATEWAY__UPSTREAMS",
        "MODELWIRE_GATEWAY__RETRY_MAX_ATTEMPTS",
        "MODELWIRE_GATEWAY__KEEPALIVE_S",
        "MODELWIRE_GATEWAY__DISCOVERY_INTERVAL_S",
        "Request-Timeout",
    ):
        assert text in result.stdout, text


def test_model_service_help_says_grpc_only(runner: CliRunner) -> None:
    result = runner.invoke(app, ["model-service", "--help"])
    assert result.exit_code == 0
    assert "gRPC only" in result.stdout
    assert "--http-port" not in result.stdout


def test_worker_takes_upstreams(runner: CliRunner) -> None:
    result = runner.invoke(app, ["worker", "--help"])
    assert "--upstream" in result.stdout


def test_a_gateway_without_upstreams_says_how_to_name_them(runner: CliRunner) -> None:
    result = runner.invoke(app, ["gateway"])
    assert result.exit_code == 1
    assert "--upstream HOST:PORT" in result.output


def test_a_malformed_upstream_is_named(runner: CliRunner) -> None:
    result = runner.invoke(app, ["gateway", "--upstream", "models-without-port"])
    assert result.exit_code == 1
    assert "'models-without-port' is not HOST:PORT" in result.output
