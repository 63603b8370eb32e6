"""MetricsPublisher: a live snapshot on ``metrics`` every interval, never replayed, robust to failures."""

from __future__ import annotations

import logging

import pytest

from modelwire.events.bus import LocalEventBus
from modelwire.events.publishers import MetricsPublisher
from modelwire.observability.live import PROTOCOLS, LiveStats


async def test_publishes_snapshots_with_the_extra_gauges() -> None:
    bus = LocalEventBus()
    stats = LiveStats()
    publisher = MetricsPublisher(bus, stats, 0.01, lambda: {"inflight": 3})
    sub = bus.subscribe(["metrics"])
    stats.observe("rest", 0.002, True)  # before start: not in any window (start opens the first)
    publisher.start()
    publisher.start()  # a second start does not start a second task
    stats.observe("rest", 0.002, True)
    try:
        first = await sub.get()
        second = await sub.get()
    finally:
        await publisher.stop()
    assert first.topic == "metrics"
    assert first.type == "metrics"
    assert second.id > first.id
    for event in (first, second):
        assert set(PROTOCOLS) <= set(event.data["protocols"])
        assert event.data["inflight"] == 3
        assert event.data["interval_s"] > 0
    assert first.data["protocols"]["rest"]["requests_per_s"] > 0
    assert second.data["protocols"]["rest"]["requests_per_s"] == 0  # a new window each time


async def test_snapshots_are_ephemeral() -> None:
    bus = LocalEventBus()
    marker = await bus.publish("models", "marker", {})
    assert marker is not None
    publisher = MetricsPublisher(bus, LiveStats(), 0.01)
    watcher = bus.subscribe(["metrics"])
    publisher.start()
    try:
        await watcher.get()
    finally:
        await publisher.stop()
    resumed = bus.subscribe(["metrics"], last_event_id=marker.id)
    assert not resumed.reset
    assert resumed.pending == 0  # published, but not kept for replay


async def test_a_failing_snapshot_is_logged_and_the_next_one_still_goes_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = LocalEventBus()
    calls = 0

    def extra() -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("gauge broke")
        return {"calls": calls}

    publisher = MetricsPublisher(bus, LiveStats(), 0.01, extra)
    sub = bus.subscribe(["metrics"])
    with caplog.at_level(logging.ERROR, logger="modelwire.events"):
        publisher.start()
        try:
            event = await sub.get()
        finally:
            await publisher.stop()
    assert event.data["calls"] == 2
    assert "publishing the metrics snapshot failed" in caplog.text


async def test_stop_ends_publishing() -> None:
    bus = LocalEventBus()
    publisher = MetricsPublisher(bus, LiveStats(), 0.01)
    await publisher.stop()  # stopping a publisher never started is fine
    publisher.start()
    sub = bus.subscribe(["metrics"])
    await sub.get()
    await publisher.stop()
    published = bus.published
    sub.close()
    later = bus.subscribe(["metrics"])
    publisher_task_gone = publisher._task is None
    assert publisher_task_gone
    assert later.get_nowait() is None
    assert bus.published == published
