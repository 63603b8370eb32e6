from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelwire.settings import Settings
from tests.models import EchoModel, ErrorModel, SlowModel
from tests.serving import ThreadedServer


@pytest.fixture(scope="module")
def server(trained_data_dir: Path) -> Iterator[ThreadedServer]:
    """One real server per module: the default sentiment model plus echo, slow and failing models."""
    settings = Settings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        data_dir=trained_data_dir,
        limits={"request_timeout_s": 5.0, "shutdown_grace_s": 1.0},
    )
    running = ThreadedServer(
        settings, EchoModel("echo"), SlowModel("slow", delay_s=2.0), ErrorModel("broken")
    ).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(params=["rest", "grpc"])
def url(request: pytest.FixtureRequest, server: ThreadedServer) -> str:
    """The same server, over each wire."""
    return server.http_url if request.param == "rest" else server.grpc_url


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that is bound but not listening: connecting to it is refused, deterministically."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
