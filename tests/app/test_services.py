"""Services on the event bus: start() announces the models and readiness; begin_shutdown() ends streams."""

from __future__ import annotations

from collections.abc import Callable

from modelwire.app.lifecycle import begin_shutdown, start_services, stop_services
from modelwire.app.services import Services
from tests.models import EchoModel, SumModel


async def test_start_publishes_every_loaded_model_then_ready(make_services: Callable[..., Services]) -> None:
    services = make_services(EchoModel(), SumModel("sum"), default=False)
    sub = services.events.subscribe(["models", "server"])
    await start_services(services)
    try:
        seen = []
        while (event := sub.get_nowait()) is not None:
            seen.append((event.topic, event.type, dict(event.data)))
    finally:
        await stop_services(services)
    assert seen == [
        ("models", "model.loaded", {"name": "echo", "version": "1", "ready": True}),
        ("models", "model.loaded", {"name": "sum", "version": "1", "ready": True}),
        ("server", "server.ready", {"ready": True}),
    ]


async def test_begin_shutdown_says_stopping_then_ends_every_subscription(
    make_services: Callable[..., Services],
) -> None:
    services = make_services(EchoModel(), default=False)
    await start_services(services)
    try:
        sub = services.events.subscribe(["server"])
        assert not services.closing.is_set()
        await begin_shutdown(services)
        assert services.closing.is_set()
        assert [(e.type, dict(e.data)) async for e in sub] == [("server.stopping", {"ready": False})]
        assert services.events.subscriber_count == 0
        late = services.events.subscribe(["*"])  # a stream opened during shutdown ends at once
        assert [e async for e in late] == []
        await begin_shutdown(services)  # idempotent: no second "stopping"
    finally:
        await stop_services(services)
