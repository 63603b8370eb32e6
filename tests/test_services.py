"""Services on the event bus: start() announces the models and readiness; begin_shutdown() ends streams."""

from __future__ import annotations

from collections.abc import Callable

from modelwire.services import Services
from tests.models import EchoModel, SumModel


async def test_start_publishes_every_loaded_model_then_ready(make_services: Callable[..., Services]) -> None:
    services = make_services(EchoModel(), SumModel("sum"), default=False)
    sub = services.events.subscribe(["models", "server"])
    await services.start()
    try:
        seen = []
        while (event := sub.get_nowait()) is not None:
            seen.append((event.topic, event.type, dict(event.data)))
    finally:
        await services.stop()
    assert seen == [
        ("models", "model.loaded", {"name": "echo", "version": "1", "ready": True}),
        ("models", "model.loaded", {"name": "sum", "version": "1", "ready": True}),
        ("server", "server.ready", {"ready": True}),
    ]


async def test_begin_shutdown_says_stopping_then_ends_every_subscription(
    make_services: Callable[..., Services],
) -> None:
    services = make_services(EchoModel(), default=False)
    await services.start()
    try:
        sub = services.events.subscribe(["server"])
        assert not services.closing.is_set()
        await services.begin_shutdown()
        assert services.closing.is_set()
        assert [(e.type, dict(e.data)) async for e in sub] == [("server.stopping", {"ready": False})]
        assert services.events.subscriber_count == 0
        late = services.events.subscribe(["*"])  # a stream opened during shutdown ends at once
        assert [e async for e in late] == []
        await services.begin_shutdown()  # idempotent: no second "stopping"
    finally:
        await services.stop()
