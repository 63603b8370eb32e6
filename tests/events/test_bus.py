"""LocalEventBus: ids, fan-out by topic, bounded queues (slow readers dropped), replay and reset, close."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from modelwire.errors import ErrorCode, InvalidInputError, SlowConsumerError
from modelwire.events.bus import Event, EventBus, LocalEventBus, Subscription


async def drain(sub: Subscription) -> list[Event]:
    """Every event queued now, without waiting for more."""
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append(event)
    return out


async def test_ids_grow_and_events_carry_what_was_published(bus: LocalEventBus) -> None:
    first = await bus.publish("models", "model.loaded", {"name": "a"})
    second = await bus.publish("server", "server.ready", {"ready": True})
    assert first is not None
    assert second is not None
    assert second.id == first.id + 1
    assert bus.last_id == second.id
    assert first.to_dict() == {
        "id": first.id,
        "topic": "models",
        "type": "model.loaded",
        "time": first.time,
        "data": {"name": "a"},
    }
    assert first.time <= second.time


async def test_an_id_kept_from_an_earlier_run_gets_a_reset() -> None:
    # Ids start at the boot time in ms, so a restarted server recognises an old client's id as foreign.
    old = LocalEventBus()
    for _ in range(3):
        await old.publish("models", "x", {})
    await asyncio.sleep(0.01)
    new = LocalEventBus()
    await new.publish("models", "x", {})
    assert new.subscribe(["models"], last_event_id=old.last_id).reset


async def test_fan_out_by_topic_and_pattern(bus: LocalEventBus) -> None:
    models = bus.subscribe(["models"])
    jobs = bus.subscribe(["jobs/*"])
    everything = bus.subscribe(["*"])
    one_job = bus.subscribe(["jobs/7"])
    await bus.publish("models", "model.loaded", {})
    await bus.publish("jobs/7", "job.running", {})
    await bus.publish("jobs/8", "job.running", {})
    assert [e.type for e in await drain(models)] == ["model.loaded"]
    assert [e.topic for e in await drain(jobs)] == ["jobs/7", "jobs/8"]
    assert [e.topic for e in await drain(everything)] == ["models", "jobs/7", "jobs/8"]
    assert [e.topic for e in await drain(one_job)] == ["jobs/7"]
    assert bus.subscriber_count == 4


async def test_subscribe_validates_topics(bus: LocalEventBus) -> None:
    with pytest.raises(InvalidInputError):
        bus.subscribe(["metrics", "nope"])
    assert bus.subscriber_count == 0


async def test_add_and_remove_topics(bus: LocalEventBus) -> None:
    sub = bus.subscribe(["models"])
    sub.add("server")
    with pytest.raises(InvalidInputError):
        sub.add("bogus")
    await bus.publish("server", "server.ready", {})
    sub.remove("models")
    await bus.publish("models", "model.loaded", {})
    assert [e.type for e in await drain(sub)] == ["server.ready"]


async def test_a_reader_waiting_wakes_up_on_publish(bus: LocalEventBus) -> None:
    sub = bus.subscribe(["models"])
    reader = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not reader.done()
    await bus.publish("models", "model.loaded", {"n": 1})
    assert (await reader).data == {"n": 1}


async def test_a_slow_reader_is_dropped_while_others_keep_receiving(bus: LocalEventBus) -> None:
    slow = bus.subscribe(["models"])
    fast = bus.subscribe(["models"])
    received = []
    for i in range(10):
        await bus.publish("models", "tick", {"i": i})
        received.extend(await drain(fast))  # the fast reader keeps up
    assert [e.data["i"] for e in received] == list(range(10))
    assert slow.dropped is not None
    assert slow.closed
    assert slow.pending == 0  # its queue was freed at once
    with pytest.raises(SlowConsumerError) as dropped:
        await slow.get()
    assert dropped.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert "4 events were waiting unread" in dropped.value.message
    assert "last event id" in dropped.value.message
    assert dropped.value.details == {"queued": 4, "limit": 4}
    assert bus.subscriber_count == 1
    assert bus.dropped == 1
    with pytest.raises(SlowConsumerError):  # iteration says so too, every time
        await anext(slow)


async def test_publishing_never_waits_for_readers(bus: LocalEventBus) -> None:
    # publish() must complete without ever giving the loop a turn: a callback scheduled before it has not
    # run after thousands of publishes to readers that never read.
    for _ in range(10):
        bus.subscribe(["*"])
    ran = asyncio.Event()
    asyncio.get_running_loop().call_soon(ran.set)
    for i in range(5000):
        await bus.publish("jobs/1", "tick", {"i": i})
    assert not ran.is_set()
    assert bus.subscriber_count == 0
    assert bus.dropped == 10


async def test_memory_stays_bounded_under_a_publisher_flood(bus: LocalEventBus) -> None:
    never_reads = bus.subscribe(["*"])
    reads = bus.subscribe(["jobs/*"])
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(20_000):
            await bus.publish("jobs/1", "tick", {"payload": "x" * 1000, "i": i})
            if i % 2 == 0:
                await drain(reads)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # ~20 MB went through; what stays is the replay ring (8 events) and a few queued: well under 1 MB.
    assert after - before < 1_000_000
    assert never_reads.dropped is not None
    assert reads.dropped is None


async def test_replay_after_last_event_id_skips_ephemeral_events_and_other_topics(bus: LocalEventBus) -> None:
    first = await bus.publish("models", "a", {})
    await bus.publish("metrics", "metrics", {}, ephemeral=True)
    await bus.publish("server", "b", {})
    await bus.publish("models", "c", {})
    assert first is not None
    sub = bus.subscribe(["models", "metrics"], last_event_id=first.id)
    assert not sub.reset
    assert [e.type for e in await drain(sub)] == ["c"]


async def test_resuming_at_the_newest_id_replays_nothing_and_is_no_reset(bus: LocalEventBus) -> None:
    await bus.publish("models", "a", {})
    sub = bus.subscribe(["models"], last_event_id=bus.last_id)
    assert not sub.reset
    assert sub.pending == 0
    fresh = LocalEventBus()  # nothing published yet: the id "before the first" is valid too
    assert not fresh.subscribe(["models"], last_event_id=fresh.last_id).reset


async def test_reset_when_the_id_is_older_than_the_replay_ring(bus: LocalEventBus) -> None:
    first = await bus.publish("models", "a", {})
    for _ in range(20):
        await bus.publish("models", "b", {})
    assert first is not None
    sub = bus.subscribe(["models"], last_event_id=first.id)
    assert sub.reset
    assert sub.pending == 0
    recent = bus.subscribe(["models"], last_event_id=bus.last_id - 3)
    assert not recent.reset
    assert recent.pending == 3


async def test_reset_when_the_id_is_foreign(bus: LocalEventBus) -> None:
    await bus.publish("models", "a", {})
    for foreign in (-1, 0, 12345, bus.last_id + 1, bus.last_id + 10**9):
        assert bus.subscribe(["models"], last_event_id=foreign).reset, foreign


async def test_reset_when_replay_is_off() -> None:
    bus = LocalEventBus(queue_size=4, replay_size=0)
    first = await bus.publish("models", "a", {})
    await bus.publish("models", "b", {})
    assert first is not None
    assert bus.subscribe(["models"], last_event_id=first.id).reset
    assert not bus.subscribe(["models"], last_event_id=bus.last_id).reset


async def test_a_resumed_reader_is_not_dropped_for_its_replayed_backlog(bus: LocalEventBus) -> None:
    first = await bus.publish("models", "a", {})
    for i in range(7):
        await bus.publish("models", "b", {"i": i})
    assert first is not None
    sub = bus.subscribe(["models"], last_event_id=first.id)
    assert sub.pending == 7  # more than the queue bound of 4
    await bus.publish("models", "live", {})
    assert sub.dropped is None
    assert [e.type for e in await drain(sub)] == ["b"] * 7 + ["live"]


async def test_close_ends_iteration_after_what_is_queued(bus: LocalEventBus) -> None:
    sub = bus.subscribe(["models"])
    await bus.publish("models", "a", {})
    sub.close()
    sub.close()  # idempotent
    await bus.publish("models", "after", {})
    assert [e.type async for e in sub] == ["a"]
    assert bus.subscriber_count == 0
    assert bus.dropped == 0  # closing is not being dropped


async def test_close_wakes_a_waiting_reader(bus: LocalEventBus) -> None:
    sub = bus.subscribe(["models"])

    async def read_all() -> list[Event]:
        return [e async for e in sub]

    reader = asyncio.create_task(read_all())
    await asyncio.sleep(0)
    async with sub:
        pass  # leaving the block closes it
    assert await reader == []


async def test_bus_close_ends_every_subscription_and_later_ones_at_once(bus: LocalEventBus) -> None:
    subs = [bus.subscribe(["*"]) for _ in range(3)]
    readers = [asyncio.create_task(anext(sub, None)) for sub in subs]
    await asyncio.sleep(0)
    await bus.close()
    assert await asyncio.gather(*readers) == [None, None, None]
    assert bus.subscriber_count == 0
    late = bus.subscribe(["models"])
    assert late.closed
    assert [e async for e in late] == []


def test_the_local_bus_is_an_event_bus() -> None:
    assert isinstance(LocalEventBus(), EventBus)


async def test_the_replay_ring_is_bounded_in_bytes_too() -> None:
    from modelwire.events.bus import event_size

    bus = LocalEventBus(replay_size=1000, replay_max_bytes=4096)
    start = bus.last_id
    for n in range(50):
        await bus.publish("jobs/a", "job.progress", {"id": "a", "blob": "x" * 200, "n": n})
    assert 0 < bus.replay_bytes <= 4096
    kept = bus.subscribe(["jobs/*"], last_event_id=bus.last_id - 10)  # the newest ten fit
    replayed = await drain(kept)
    assert [e.data["n"] for e in replayed] == list(range(40, 50))
    assert sum(event_size(e) for e in replayed) <= 4096
    assert bus.subscribe(["jobs/*"], last_event_id=start).reset  # the oldest were evicted for bytes
    # one event larger than the whole budget is delivered live but never kept
    live = bus.subscribe(["jobs/*"])
    huge = await bus.publish("jobs/a", "job.progress", {"id": "a", "blob": "x" * 8192})
    assert huge is not None
    assert [e.id for e in await drain(live)] == [huge.id]
    assert bus.replay_bytes <= 4096
    assert bus.subscribe(["jobs/*"], last_event_id=huge.id - 1).reset
