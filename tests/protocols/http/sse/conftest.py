"""A real modelwire Server (granian + grpc.aio on 127.0.0.1, port 0) on the test's event loop, so tests can
publish on its bus and watch its subscribers while talking to it over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from modelwire import Datatype, Model, TensorSpec
from modelwire.app.lifecycle import Server
from modelwire.app.services import Services
from modelwire.events.bus import LocalEventBus
from modelwire.settings import BatchingSettings, EventsSettings, LimitsSettings, Settings
from tests.models import EchoModel, SlowModel, SumModel

RETRY_MS = 1234


class GateModel(Model):
    """Answers every item at once, except ``"wait"``, which waits until the test opens ``gate``."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def __init__(self, name: str = "gate", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.gate = asyncio.Event()

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        if "wait" in batch:
            await self.gate.wait()
        return [{"text": item} for item in batch]


@pytest.fixture
async def live(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> AsyncIterator[Server]:
    settings = make_settings(
        limits=LimitsSettings(max_batch_items=16, max_text_chars=1000, request_timeout_s=10),
        # one predict call per item, so the gate model holds back only the item it waits on
        batching=BatchingSettings(enabled=False),
        events=EventsSettings(
            queue_size=8, replay_size=16, metrics_interval_s=0.2, sse_heartbeat_s=0.2, sse_retry_ms=RETRY_MS
        ),
    )
    models = (EchoModel(), SumModel("sum"), SlowModel("slow", delay_s=30.0), GateModel())
    server = Server(settings, services=make_services(*models, settings=settings))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def services(live: Server) -> Services:
    assert live.services is not None
    return live.services


@pytest.fixture
def bus(services: Services) -> LocalEventBus:
    assert isinstance(services.events, LocalEventBus)
    return services.events


@pytest.fixture
async def client(live: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.http_port}", timeout=10) as client:
        yield client


def decoded(sse: ServerSentEvent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sse.data)
    return data


async def sse_events(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> AsyncIterator[ServerSentEvent]:
    """The events a real SSE client sees (httpx-sse), without the ``retry:``-only block at the start."""
    async with aconnect_sse(client, method, url, **kwargs) as source:
        source.response.raise_for_status()
        async for sse in source.aiter_sse():
            if sse.event == "message" and not sse.data:
                continue
            yield sse


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a server-side effect of a client action) for up to 10 s."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")
