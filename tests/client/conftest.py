from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.models import EchoModel, ErrorModel, SlowModel
from tests.serving import ServeModule, ThreadedServer


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    """One real server per module: the default sentiment model plus echo, slow and failing models."""
    return serve_module(
        EchoModel("echo"),
        SlowModel("slow", delay_s=2.0),
        ErrorModel("broken"),
        limits={"request_timeout_s": 5.0, "shutdown_grace_s": 1.0},
    )


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
