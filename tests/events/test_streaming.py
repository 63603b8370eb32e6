"""What push adapters share: last-event-id parsing, closing at shutdown, rendering once per event."""

from __future__ import annotations

import asyncio

import pytest

from modelwire.events.bus import Event, LocalEventBus
from modelwire.events.streaming import FOREIGN_ID, RenderCache, close_when, parse_event_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("1764000000123", 1764000000123),
        (" 42 ", 42),
        ("abc", FOREIGN_ID),
        ("-5", FOREIGN_ID),
        ("1.5", FOREIGN_ID),
        ("١٢٣", FOREIGN_ID),  # Arabic-Indic digits are digits to str.isdigit, not to an id
        ("9" * 40, FOREIGN_ID),
    ],
)
def test_parse_event_id(value: str | None, expected: int | None) -> None:
    assert parse_event_id(value) == expected


async def test_a_foreign_id_means_a_reset_on_the_bus() -> None:
    bus = LocalEventBus()
    await bus.publish("models", "a", {})
    assert bus.subscribe(["models"], last_event_id=parse_event_id("not-an-id")).reset


async def test_close_when_ends_the_subscription_once_the_signal_is_set() -> None:
    bus = LocalEventBus()
    sub = bus.subscribe(["models"])
    closing = asyncio.Event()
    task = close_when(sub, closing)
    await bus.publish("models", "before", {})
    await asyncio.sleep(0)
    assert not sub.closed
    closing.set()
    await task
    assert sub.closed
    assert [e.type async for e in sub] == ["before"]  # what was queued is still delivered


async def test_render_cache_renders_each_event_once_and_forgets_the_oldest() -> None:
    calls: list[int] = []

    def render(event: Event) -> str:
        calls.append(event.id)
        return f"<{event.id}>"

    cache = RenderCache(render, size=2)
    one, two, three = (Event(i, "models", "t", {}) for i in (1, 2, 3))
    assert [cache(one), cache(one), cache(two), cache(one)] == ["<1>", "<1>", "<2>", "<1>"]
    assert calls == [1, 2]
    cache(three)  # evicts 1, the oldest rendered
    cache(one)
    assert calls == [1, 2, 3, 1]
