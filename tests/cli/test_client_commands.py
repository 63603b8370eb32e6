"""predict, models and health against a real server, over REST and gRPC."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from modelwire.cli import app
from tests.serving import ThreadedServer


@pytest.fixture(params=["rest", "grpc"])
def url(request: pytest.FixtureRequest, server: ThreadedServer) -> str:
    return server.http_url if request.param == "rest" else server.grpc_url


@pytest.fixture
def dead_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_predict_prints_the_seed_answer(runner: CliRunner, url: str) -> None:
    result = runner.invoke(app, ["predict", "I love this product", "--url", url])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert list(answer) == ["sentiment", "confidence"]
    assert answer["sentiment"] == "positive"
    assert answer["confidence"] > 0.8


def test_predict_json_batch(runner: CliRunner, url: str) -> None:
    result = runner.invoke(app, ["predict", "--json", "--url", url, "--model", "echo", "one", "two"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [{"echo": "one", "length": 3}, {"echo": "two", "length": 3}]


def test_predict_url_from_the_environment(runner: CliRunner, server: ThreadedServer) -> None:
    result = runner.invoke(app, ["predict", "I love this product"], env={"MODELWIRE_URL": server.grpc_url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sentiment"] == "positive"


def test_a_failed_batch_item_exits_1_after_the_others(runner: CliRunner, url: str) -> None:
    result = runner.invoke(app, ["predict", "--json", "--url", url, "--model", "echo", "fine", "bad"])
    assert result.exit_code == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {"echo": "fine", "length": 4}
    assert second["error"]["code"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["   "], "text must not be empty [INVALID_ARGUMENT]"),
        (["hi", "--model", "nope"], "[NOT_FOUND]"),
        (["hi", "--version", "99"], "[NOT_FOUND]"),
    ],
)
def test_predict_errors_are_one_line(runner: CliRunner, url: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["predict", "--url", url, *args])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["predict", "hello"], ["models"], ["health"]])
def test_unreachable_server(runner: CliRunner, dead_url: str, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--url", dead_url])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach {dead_url}")
    assert "[UNAVAILABLE]" in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_url_is_one_line(runner: CliRunner) -> None:
    result = runner.invoke(app, ["predict", "hello", "--url", "ftp://x"])
    assert result.exit_code == 1
    assert "unsupported URL scheme" in result.stderr


def test_models_table(runner: CliRunner, url: str) -> None:
    result = runner.invoke(app, ["models", "--url", url])
    assert result.exit_code == 0, result.output
    assert "sentiment" in result.stdout
    assert "numpy" in result.stdout
    assert "ready" in result.stdout


def test_models_json(runner: CliRunner, url: str) -> None:
    result = runner.invoke(app, ["models", "--json", "--url", url])
    assert result.exit_code == 0, result.output
    listed = {m["name"]: m for m in json.loads(result.stdout)}
    assert listed["sentiment"]["versions"] == [{"version": "1", "ready": True}]
    assert listed["echo"]["default_version"] == "1"


def test_health_ready_exits_0(runner: CliRunner, url: str) -> None:
    result = runner.invoke(app, ["health", "--url", url])
    assert result.exit_code == 0, result.output
    assert "live: yes" in result.stdout
    assert "ready: yes" in result.stdout
