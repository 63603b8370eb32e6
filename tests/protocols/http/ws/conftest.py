"""A real server (granian + the WebSocket adapter) on 127.0.0.1:0 in a thread, and a gate model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import pytest

from modelwire import Datatype, Model, TensorSpec
from modelwire.settings import (
    BatchingSettings,
    EventsSettings,
    LimitsSettings,
    Settings,
    WebSocketSettings,
)
from tests.models import EchoModel, ErrorModel, SlowModel
from tests.serving import ThreadedServer

MAX_INFLIGHT = 8
MAX_MESSAGE = 64 * 1024


class GateModel(Model):
    """Echoes, but holds every batch until ``gate`` is set: a model busy for as long as a test likes."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def __init__(self, name: str = "gate", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.gate = threading.Event()

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        while not self.gate.is_set():
            await asyncio.sleep(0.005)
        return [{"echo": item} for item in batch]


def ws_url(server: ThreadedServer, path: str = "/v1/ws") -> str:
    return server.http_url.replace("http://", "ws://") + path


class UnencodableModel(Model):
    """Answers with an object no wire format can carry: rendering the reply fails inside the server."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        return [{"value": object()} for _ in batch]


@pytest.fixture
def gate() -> GateModel:
    return GateModel()


@pytest.fixture
def start_server(
    make_settings: Callable[..., Settings], gate: GateModel
) -> Iterator[Callable[..., ThreadedServer]]:
    """Start a server whose ``ws`` (and ``events``) settings the test may override; stopped at the end."""
    started: list[ThreadedServer] = []

    def start(events: dict[str, Any] | None = None, **ws: Any) -> ThreadedServer:
        ws_values = {"max_message_bytes": MAX_MESSAGE, "max_inflight": MAX_INFLIGHT, "echo": True} | ws
        settings = make_settings(
            limits=LimitsSettings(max_text_chars=2000, request_timeout_s=10, shutdown_grace_s=10),
            batching=BatchingSettings(max_batch_size=64, max_delay_ms=2),
            ws=WebSocketSettings(**ws_values),
            events=EventsSettings(**({"metrics_interval_s": 0.1} | (events or {}))),
        )
        models = [
            EchoModel(),
            ErrorModel("broken"),
            SlowModel("slow", delay_s=0.3),
            gate,
            UnencodableModel("odd"),
        ]
        running = ThreadedServer(settings, *models)
        started.append(running)  # before start(): a half-started server is still stopped
        return running.start()

    try:
        yield start
    finally:
        gate.gate.set()
        for running in started:
            running.stop()


@pytest.fixture
def server(start_server: Callable[..., ThreadedServer]) -> ThreadedServer:
    return start_server()
