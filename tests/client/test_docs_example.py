"""docs/examples/client_streams.py, the client code docs/streaming.md shows, against a real server."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from types import ModuleType

import pytest

from modelwire import Client
from tests.serving import ThreadedServer

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "client_streams.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("client_streams", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("wire", ["http", "grpc"])
def test_classify(server: ThreadedServer, wire: str, capsys: pytest.CaptureFixture[str]) -> None:
    example = load_example()
    url = server.grpc_url if wire == "grpc" else server.http_url
    labels = example.classify(url, ["I love this product", "", "Terrible, a waste of money"])
    assert labels[0].startswith("positive (")
    assert labels[1].startswith("error: ")
    assert labels[2].startswith("negative (")
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(f"{i} {labels[i]}" for i in range(3))


@pytest.mark.parametrize("wire", ["http", "grpc"])
async def test_busiest_protocol(server: ThreadedServer, wire: str) -> None:
    example = load_example()
    stop = threading.Event()
    started = threading.Event()

    def load() -> None:
        with Client(server.http_url) as client:
            while not stop.is_set():
                client.predict("fine")
                started.set()

    loader = threading.Thread(target=load)
    loader.start()
    try:
        assert started.wait(30)
        url = server.grpc_url if wire == "grpc" else server.http_url
        # A gRPC subscription counts as an open connection, not as requests: REST stays the busiest.
        name, rate = await example.busiest_protocol(url, snapshots=2)
        assert name == "rest"
        assert rate > 0
    finally:
        stop.set()
        loader.join(30)
