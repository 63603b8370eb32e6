"""RedisEventBus against a real Redis: two buses stand for two processes (a gateway and a worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from modelwire.backends.redis.connection import RedisTarget
from modelwire.backends.redis.events import RedisEventBus
from modelwire.errors import UnavailableError
from modelwire.events.bus import Event, Subscription
from modelwire.security.principal import Principal, Scope

MakeBus = Callable[..., Awaitable[RedisEventBus]]


@pytest.fixture
async def make_bus(redis_backend: str) -> AsyncIterator[MakeBus]:
    """Started buses on this test's prefix (each one a process); all closed at the end."""
    buses: list[RedisEventBus] = []

    async def make(**options: int) -> RedisEventBus:
        bus = RedisEventBus(RedisTarget.parse(redis_backend), **options)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


async def next_event(sub: Subscription) -> Event:
    async with asyncio.timeout(10):
        return await sub.get()


async def test_job_events_reach_every_process_with_one_id(make_bus: MakeBus) -> None:
    gateway, worker = await make_bus(), await make_bus()
    async with gateway.subscribe(["jobs/*"]) as remote, worker.subscribe(["jobs/abc"]) as local:
        published = await worker.publish("jobs/abc", "job.running", {"id": "abc", "progress": [1, 2]})
        assert published is not None
        assert local.get_nowait() == published  # delivered here before publish returned
        seen = await next_event(remote)
        assert seen.to_dict() == published.to_dict() | {"data": {"id": "abc", "progress": [1, 2]}}
        later = await gateway.publish("jobs/xyz", "job.queued", {"id": "xyz"})
        assert later is not None
        assert later.id > published.id  # one sequence across processes
        assert (await next_event(remote)).id == later.id
        assert local.get_nowait() is None  # jobs/xyz is not jobs/abc
    assert gateway.last_id == worker.last_id == later.id


async def test_per_process_topics_stay_in_their_process(make_bus: MakeBus) -> None:
    gateway, worker = await make_bus(), await make_bus()
    async with gateway.subscribe(["*"]) as sub:
        assert await worker.publish("metrics", "metrics", {"inflight": 9}, ephemeral=True) is not None
        assert await worker.publish("server", "server.ready", {"ready": True}) is not None
        assert await worker.publish("models", "model.loaded", {"name": "w"}) is not None
        marker = await worker.publish("jobs/j1", "job.progress", {"id": "j1"})
        assert marker is not None
        assert (await next_event(sub)).id == marker.id  # nothing of the worker's own before it
        own = await gateway.publish("metrics", "metrics", {"inflight": 1}, ephemeral=True)
        assert own is not None
        assert sub.get_nowait() == own


async def test_a_reconnecting_client_resumes_on_another_process(make_bus: MakeBus) -> None:
    first, second = await make_bus(), await make_bus()
    async with second.subscribe(["jobs/*"]) as watch:
        kept = await first.publish("jobs/a", "job.running", {"id": "a"})
        missed = [await first.publish("jobs/a", "job.progress", {"id": "a", "n": n}) for n in range(3)]
        await first.publish("metrics", "metrics", {}, ephemeral=True)  # not in the replay
        for _ in range(4):
            await next_event(watch)  # second has them all now
    assert kept is not None
    async with second.subscribe(["jobs/a"], last_event_id=kept.id) as resumed:
        assert not resumed.reset
        replayed = [resumed.get_nowait() for _ in range(3)]
        assert [e.id for e in replayed if e] == [e.id for e in missed if e]
        assert resumed.get_nowait() is None
    async with second.subscribe(["jobs/a"], last_event_id=kept.id - 10**6) as foreign:
        assert foreign.reset  # from before this process started


async def test_a_lost_connection_is_reconnected_and_the_gap_is_a_reset(
    make_bus: MakeBus, redis_server: str
) -> None:
    gateway, worker = await make_bus(), await make_bus()
    async with gateway.subscribe(["jobs/*"]) as sub:
        before = await worker.publish("jobs/a", "job.running", {"id": "a"})
        assert before is not None
        assert (await next_event(sub)).id == before.id
    admin = aioredis.Redis.from_url(redis_server)
    try:
        clients = (await admin.execute_command("CLIENT", "LIST")).decode().splitlines()
        name = f"name=modelwire-events-{gateway.replica}"
        ids = [line.split()[0].removeprefix("id=") for line in clients if name in line.split()]
        assert ids
        for client_id in ids:
            await admin.execute_command("CLIENT", "KILL", "ID", client_id)
        lost = await worker.publish("jobs/a", "job.progress", {"id": "a"})  # the gateway is away
        assert lost is not None
        async with gateway.subscribe(["jobs/*"]) as sub:
            async with asyncio.timeout(15):
                while True:  # until the gateway's reader is back
                    after = await worker.publish("jobs/a", "job.progress", {"id": "a"})
                    assert after is not None
                    with_timeout = asyncio.wait_for(sub.get(), 0.5)
                    try:
                        event = await with_timeout
                    except TimeoutError:
                        continue
                    assert event.id > lost.id
                    break
    finally:
        await admin.aclose()
    async with gateway.subscribe(["jobs/a"], last_event_id=before.id) as resumed:
        assert resumed.reset  # the event published while away is gone: say so, never a silent gap


async def test_listeners_see_every_delivered_event(make_bus: MakeBus) -> None:
    gateway, worker = await make_bus(), await make_bus()
    seen: list[str] = []
    gateway.listeners.append(lambda event: seen.append(event.type))
    gateway.listeners.append(lambda event: 1 / 0)  # a failing listener harms nobody
    async with gateway.subscribe(["jobs/*"]) as sub:
        await worker.publish("jobs/q", "job.queued", {"id": "q"})
        await next_event(sub)
    assert seen == ["job.queued"]


async def test_close_ends_subscriptions_and_publish_is_a_no_op(make_bus: MakeBus) -> None:
    bus = await make_bus()
    sub = bus.subscribe(["jobs/*"])
    await bus.close()
    with pytest.raises(StopAsyncIteration):
        await sub.get()
    assert await bus.publish("jobs/a", "job.running", {"id": "a"}) is None
    assert bus.subscribe(["models"]).closed


async def test_an_unreachable_redis_fails_the_start_not_later() -> None:
    bus = RedisEventBus(RedisTarget.parse("redis://127.0.0.1:1/0"))
    assert await bus.publish("jobs/a", "x", {}) is None  # not started: nothing, no error
    with pytest.raises(UnavailableError, match="Redis is unreachable"):
        await bus.start()


async def test_a_job_events_owner_crosses_processes_and_filters_there(make_bus: MakeBus) -> None:
    gateway, worker = await make_bus(), await make_bus()
    bob = Principal(id="jwt:|bob", kind="jwt", authenticated=True, scopes=frozenset({Scope.EVENTS}))
    alice = Principal(id="jwt:|alice", kind="jwt", authenticated=True, scopes=frozenset({Scope.EVENTS}))
    async with (
        gateway.subscribe(["jobs/*"], principal=bob) as bobs,
        gateway.subscribe(["jobs/*"], principal=alice) as alices,
    ):
        await worker.publish("jobs/a", "job.running", {"id": "a"}, owner=alice.id)
        await worker.publish("jobs/b", "job.running", {"id": "b"}, owner=bob.id)
        seen = await next_event(bobs)
        assert seen.data == {"id": "b"}  # Alice's came first, and did not reach Bob
        assert seen.owner == bob.id
        assert "owner" not in seen.to_dict()
        assert (await next_event(alices)).data == {"id": "a"}
