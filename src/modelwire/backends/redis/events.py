"""The event bus across processes: Redis pub/sub under ``LocalEventBus``, for gateways and workers anywhere.

How it works. ``publish`` runs one Lua script that takes the next id from a global counter (``INCR``) and
``PUBLISH``es the event with it, so ids grow across every process and each subscriber receives events in
id order (a script runs alone; Redis queues its messages to every subscriber in that order). A reader task
per process receives them and hands each to ``deliver()``: the local fan-out, bounded queues and replay
ring of ``LocalEventBus``, unchanged. ``publish`` returns once its own event came back and was delivered
here, so a publisher's local subscribers have it when ``publish`` returns, as with the local bus.

What is shared. ``jobs/<id>`` events go to every process: a job runs in one worker and its events reach
the WebSocket, SSE and gRPC subscribers of every gateway. ``metrics``, ``models`` and ``server`` describe
one process (its per-second stats, its loaded models, its start and stop), so they go to that process's
own channel only: every replica's ``metrics`` snapshot stays its own, as on the local bus. They still take
their id from the global counter, so a process's stream of ids keeps growing in one order.

Resuming. Shared events carry the same id in every process, so a client that reconnects to another gateway
with ``Last-Event-ID`` is replayed the ``jobs/*`` events it missed, from that gateway's ring, when the id is
not older than the ring. Pub/sub keeps nothing for a reader that is away: when the reader loses its
connection it reconnects, and the ids published in between are marked as lost (a client resuming from
before them gets a reset, never a silent gap).

Failure. When Redis cannot be reached ``publish`` logs and returns ``None`` (nothing is delivered); it
never raises, so a job or a shutdown is not failed by its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from modelwire.backends.redis.connection import RedisTarget, map_redis_errors
from modelwire.errors import ModelwireError
from modelwire.events.bus import Event, LocalEventBus
from modelwire.events.topics import matches

__all__ = ["SHARED_TOPICS", "RedisEventBus"]

logger = logging.getLogger("modelwire.events")

SHARED_TOPICS = ("jobs/*",)
"""Topic patterns delivered to every process; the others stay in the process that published them."""

_PUBLISH = """
local id = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[1])
return id
"""
_DELIVERY_WAIT_S = 2.0
_RECONNECT_MAX_S = 5.0


class _Wire(msgspec.Struct, array_like=True):
    topic: str
    type: str
    data: dict[str, Any]
    time: float
    ephemeral: bool
    owner: str | None = None  # last, with a default: a message from an older replica still decodes


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Wire).decode


class RedisEventBus(LocalEventBus):
    """``LocalEventBus`` fed by Redis pub/sub: ``jobs/*`` events reach every process sharing the Redis.

    >>> bus = RedisEventBus(RedisTarget.parse("redis://127.0.0.1:6379/0"))   # doctest: +SKIP
    >>> await bus.start()                 # connect, subscribe, start the reader
    >>> await bus.publish("jobs/abc", "job.running", {"id": "abc"})   # every process's subscribers get it
    """

    shared = True

    def __init__(
        self,
        target: RedisTarget,
        *,
        queue_size: int = 1024,
        replay_size: int = 4096,
        replay_max_bytes: int = 8 * 1024 * 1024,
        shared: Iterable[str] = SHARED_TOPICS,
    ) -> None:
        super().__init__(queue_size=queue_size, replay_size=replay_size, replay_max_bytes=replay_max_bytes)
        self.target = target
        self.replica = uuid.uuid4().hex[:12]
        self.shared_topics = tuple(shared)
        self.counter = target.prefix + "events:id"
        self.channel = target.prefix + "events"
        self.own_channel = f"{target.prefix}events:{self.replica}"
        self.listeners: list[Callable[[Event], None]] = []
        """Called (synchronously, in the reader) with every event delivered here, after the fan-out."""
        self._redis: Redis | None = None
        self._listener: Redis | None = None
        self._pubsub: PubSub | None = None
        self._script: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._warned_at = 0.0

    def is_shared(self, topic: str) -> bool:
        return any(matches(pattern, topic) for pattern in self.shared_topics)

    # -- lifecycle ----------------------------------------------------------------------------------

    def add_remote_listener(self, listener: Callable[[Event], None]) -> None:
        self.listeners.append(listener)

    async def start(self) -> None:
        if self._redis is not None:
            return
        name = f"modelwire-events-{self.replica}"
        redis = self.target.connect(name)
        # The reader's client does not retry by itself: a lost connection must surface, to mark the gap.
        listener = self.target.connect(name, retries=0)
        try:
            with map_redis_errors("the event bus"):
                # Ids continue the global sequence; a fresh Redis starts it at the time in ms, as the local
                # bus does, so an id kept from before a Redis wipe is (almost always) seen as foreign.
                await redis.set(self.counter, int(time.time() * 1000), nx=True)
                pubsub = listener.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel, self.own_channel)
                current = int(await redis.get(self.counter) or 0)
        except BaseException:
            await redis.aclose()
            await listener.aclose()
            raise
        self._redis, self._listener, self._pubsub = redis, listener, pubsub
        self._script = redis.register_script(_PUBLISH)
        self._first_id, self._last_id = current + 1, current
        self._reader = asyncio.create_task(self._read(), name="redis-event-reader")

    async def close(self) -> None:
        await super().close()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._wake_waiters(force=True)
        pubsub, self._pubsub = self._pubsub, None
        clients = (self._redis, self._listener)
        self._redis = self._listener = None
        with contextlib.suppress(redis_errors.RedisError, OSError):
            if pubsub is not None:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            for client in clients:
                if client is not None:
                    await client.aclose()

    # -- publish ------------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        type: str,
        data: Mapping[str, Any],
        *,
        ephemeral: bool = False,
        owner: str | None = None,
    ) -> Event | None:
        if self._closed or self._redis is None:
            return None
        event_time = time.time()
        body = _encode(_Wire(topic, type, dict(data), event_time, ephemeral, owner))
        channel = self.channel if self.is_shared(topic) else self.own_channel
        try:
            with map_redis_errors("the event bus"):
                event_id = int(
                    await self._script(keys=[self.counter, channel], args=[body], client=self._redis)
                )
        except ModelwireError as exc:
            self._warn(f"publishing {type} on {topic} failed: {exc.message}")
            return None
        await self._delivered(event_id)
        event = Event(event_id, topic, type, data, event_time, owner)
        self.published_here(event)
        return event

    async def _delivered(self, event_id: int) -> None:
        """Wait (a bounded time) until the reader delivered ``event_id`` here."""
        if self._last_id >= event_id or self._reader is None:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((event_id, future))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DELIVERY_WAIT_S):
                await future

    def _wake_waiters(self, *, force: bool = False) -> None:
        if not self._waiters:
            return
        keep = []
        for event_id, future in self._waiters:
            if force or event_id <= self._last_id:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((event_id, future))
        self._waiters = keep

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 10:  # once per 10 s: a Redis outage must not flood the log
            self._warned_at = now
            logger.warning("%s (events are not delivered while Redis is unreachable)", message)

    # -- the reader ---------------------------------------------------------------------------------

    async def _read(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except (redis_errors.RedisError, OSError) as exc:
                self._warn(f"the event reader lost Redis: {exc}")
                await self._reconnect(pubsub)
                continue
            if message is not None and message.get("type") == "message":
                self._receive(message["data"])

    async def _reconnect(self, pubsub: PubSub) -> None:
        """Subscribe again, then mark every id published while away as lost (a resume from before them
        gets a reset). In that order: an event published after the mark is received."""
        delay = 0.1
        while True:
            await asyncio.sleep(delay)
            delay = min(_RECONNECT_MAX_S, delay * 2)
            assert self._redis is not None
            try:
                await pubsub.ping()  # reconnects, and redis-py subscribes the channels again
                current = int(await self._redis.get(self.counter) or 0)
            except (redis_errors.RedisError, OSError) as exc:
                self._warn(f"the event reader cannot reach Redis: {exc}")
                continue
            if current > self._last_id:
                self._evicted_upto = current
                self._last_id = current
                self._wake_waiters()
            logger.info("the event reader is connected to Redis again")
            return

    def _receive(self, payload: bytes) -> None:
        head, _, body = payload.partition(b"\n")
        try:
            event_id = int(head)
            wire = _decode(body)
        except (ValueError, msgspec.DecodeError):
            logger.warning("ignored a malformed event on %s", self.channel)
            return
        if event_id <= self._last_id:
            return  # already counted as lost after a reconnect
        event = Event(event_id, wire.topic, wire.type, wire.data, wire.time, wire.owner)
        self.deliver(event, ephemeral=wire.ephemeral)
        self._wake_waiters()
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("an event listener failed on %s", event.type)
