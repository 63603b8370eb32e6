"""``modelwire watch``: rendering, each wire against a real server, errors, and Ctrl-C in a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from modelwire import Client, Event
from modelwire.cli import app
from modelwire.cli.watch import render_event, render_metrics
from tests.serving import ServeModule, ThreadedServer


def plain(markup: str) -> str:
    console = Console(width=300, no_color=True)
    with console.capture() as captured:
        console.print(markup, highlight=False, soft_wrap=True)
    return captured.get().strip()


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    """Metrics five times a second, so a few events take well under a second."""
    return serve_module(events={"metrics_interval_s": 0.2}, limits={"shutdown_grace_s": 1.0})


@pytest.fixture
def dead_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


# -- rendering -------------------------------------------------------------------------------------


def test_metrics_line_names_only_busy_protocols() -> None:
    idle = {"requests_per_s": 0, "errors_per_s": 0, "p50_ms": None, "p99_ms": None}
    data = {
        "protocols": {
            "rest": {"requests_per_s": 812.4, "errors_per_s": 0, "p50_ms": 0.41, "p99_ms": 1.9},
            "grpc": {**idle, "connections": 0},
            "ws": {**idle, "connections": 3},
            "sse": {"requests_per_s": 2, "errors_per_s": 1, "p50_ms": 3, "p99_ms": 7.25, "connections": 1},
        },
        "inflight": 2,
    }
    line = plain(render_metrics(data))
    assert line == (
        "rest 812/s p50 0.41 ms p99 1.9 ms · ws 3 open · "
        "sse 2/s p50 3 ms p99 7.25 ms 1 err/s 1 open · inflight 2"
    )
    assert "grpc" not in line


def test_idle_metrics_say_so() -> None:
    assert plain(render_metrics({"protocols": {"rest": {"requests_per_s": 0}}})) == "idle"
    assert plain(render_metrics({})) == "idle"


def test_event_lines() -> None:
    loaded = Event(5, "models", "model.loaded", 0.0, {"name": "sentiment", "version": "2", "ready": False})
    assert plain(render_event(loaded)).endswith("model.loaded    sentiment v2 (not ready)")
    reset = Event(None, "", "reset", 0.0, {"reason": "too old"})
    assert "events were missed" in plain(render_event(reset))
    other = Event(9, "jobs/abc", "job.progress", 0.0, {"progress": 0.5, "note": "[bold]x[/]"})
    line = plain(render_event(other))
    assert line.endswith('job.progress    {"progress":0.5,"note":"[bold]x[/]"}')  # markup in data is escaped


# -- against a server ------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["sse", "ws", "grpc"])
def test_watch_prints_events_over_each_wire(runner: CliRunner, server: ThreadedServer, via: str) -> None:
    url = server.grpc_url if via == "grpc" else server.http_url
    result = runner.invoke(app, ["watch", "metrics", "--url", url, "--via", via, "--count", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(" metrics " in line for line in lines)


@pytest.mark.parametrize("via", ["sse", "ws", "grpc"])
def test_watch_json(runner: CliRunner, server: ThreadedServer, via: str) -> None:
    url = server.grpc_url if via == "grpc" else server.http_url
    result = runner.invoke(app, ["watch", "--json", "--url", url, "--via", via, "--count", "2"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == ["metrics", "metrics"]
    assert events[0]["id"] < events[1]["id"]
    assert set(events[0]["data"]["protocols"]) >= {"rest", "grpc", "ws", "sse"}


def test_watch_unreachable_server_exits_1_with_a_message(runner: CliRunner, dead_url: str) -> None:
    result = runner.invoke(app, ["watch", "--url", dead_url, "--count", "1"])
    assert result.exit_code == 1
    assert "cannot reach" in result.stderr
    assert "UNAVAILABLE" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("via", ["sse", "ws", "grpc"])
def test_watch_jobs_means_every_job(runner: CliRunner, server: ThreadedServer, via: str) -> None:
    """``modelwire watch jobs`` is ``jobs/*``: a job submitted while it watches shows up."""
    url = server.grpc_url if via == "grpc" else server.http_url
    result: list[Any] = []

    def watch() -> None:
        result.append(
            runner.invoke(app, ["watch", "jobs", "--json", "--url", url, "--via", via, "--count", "1"])
        )

    watcher = threading.Thread(target=watch)
    watcher.start()
    with Client(server.http_url) as client:
        deadline = time.monotonic() + 30
        while watcher.is_alive() and time.monotonic() < deadline:
            client.submit_job(["hello"]).wait(timeout=30)
            watcher.join(0.2)
    watcher.join(30)
    assert not watcher.is_alive(), "no job event reached `modelwire watch jobs`"
    assert result[0].exit_code == 0, result[0].output
    event = json.loads(result[0].stdout.splitlines()[0])
    assert event["topic"].startswith("jobs/")


def test_watch_unknown_topic_exits_1(runner: CliRunner, server: ThreadedServer) -> None:
    result = runner.invoke(app, ["watch", "nope", "--url", server.http_url])
    assert result.exit_code == 1
    assert "unknown topic 'nope'" in result.stderr


def test_watch_via_grpc_needs_a_grpc_url(runner: CliRunner, server: ThreadedServer) -> None:
    result = runner.invoke(app, ["watch", "--url", server.http_url, "--via", "grpc"])
    assert result.exit_code == 1
    assert "grpc://" in result.stderr


def test_ctrl_c_exits_0(server: ThreadedServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWIRE_")}
    env.update({"NO_COLOR": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    process = subprocess.Popen(
        [sys.executable, "-m", "modelwire", "watch", "metrics", "--url", server.http_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # an event arrived: the watch is running
        assert " metrics " in first
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
