"""The event bus every push transport reads from: WebSocket, Server-Sent Events and gRPC ``Events``.

How it works. ``publish(topic, type, data)`` gives the event the next id, keeps it in a bounded replay ring
(unless it is ephemeral, like the per-second metrics snapshot), and offers it to every subscription whose
patterns match, without waiting. Each subscription owns a bounded queue; when it is full the subscription is
dropped at once (its queue freed, its next ``get()`` raising ``SlowConsumerError``), so a reader that stops
reading can neither grow memory nor slow the publisher or the other readers.

The ring is bounded twice: at most ``replay_size`` events and at most ``replay_max_bytes`` bytes (each
event counted as its JSON data plus topic and type, ``event_size``); the oldest go first, and an event
larger than the whole byte budget is delivered live but never kept.

``subscribe(topics, last_event_id=N)`` first replays the retained events after ``N`` (the replayed events
do not count against the queue bound, so a reader catching up is not dropped by the next live event). When
``N`` is older than the ring (events after it were evicted, or replay is off) or comes from before this bus
started, the subscription starts with ``reset = True`` and no replay: the adapter tells its client to re-read
the state instead. Once the bus is closed, new subscriptions start closed (their iteration ends at once).

Who sees what. A subscription belongs to the principal that made it (``current_principal()`` when
``subscribe`` is called: the request's, set by the ASGI middleware or the gRPC interceptor). An event
published with an ``owner`` (every ``jobs/<id>`` event carries its job's submitter) is delivered, live or
replayed, only to subscriptions whose principal ``owns`` it: ``jobs/*`` brings a caller their own jobs, and
``jobs/<someone else's id>`` brings nothing, as for an id that does not exist. The owner is not part of
the payload, so it is never shown to anyone. Every transport subscribes here, so this is the one check.
Subscribing (and ``Subscription.add``) also checks the topic's scope (``security.scopes.require_topics``:
``events``, or ``jobs:read`` for one job's topic) and raises ``PermissionDeniedError`` naming it.

Backends. ``EventBus`` is the interface adapters see. ``LocalEventBus`` fans out in process. A multi-replica
backend (Redis pub/sub) subclasses it: ``publish`` sends to the shared channel, and a reader task hands each
received event to ``deliver()``, the same fan-out; adapters do not change.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from modelwire.errors import SlowConsumerError
from modelwire.events.topics import matches, validate_topic
from modelwire.security.principal import Principal, current_principal
from modelwire.security.scopes import require_topics

__all__ = ["Event", "EventBus", "LocalEventBus", "Subscription", "event_size"]

logger = logging.getLogger("modelwire.events")

_EVENT_OVERHEAD = 64  # id, time, the envelope's keys: what every event costs besides its data


def event_size(event: Event) -> int:
    """The bytes ``event`` counts against the replay ring: about its size as sent (JSON)."""
    try:
        data = len(msgspec.json.encode(event.data))
    except (TypeError, ValueError, OverflowError):  # not JSON-able (an in-process listener's own types)
        data = len(repr(event.data))
    return data + len(event.topic) + len(event.type) + _EVENT_OVERHEAD


@dataclass(frozen=True, slots=True)
class Event:
    """One published event. ``id`` grows with each event on the bus; ``time`` is Unix seconds."""

    id: int
    topic: str
    type: str
    data: Mapping[str, Any]
    time: float = field(default_factory=time.time)
    owner: str | None = None
    """Only subscriptions whose principal ``owns`` it receive the event (``None``: everyone). Not shown."""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "topic": self.topic, "type": self.type, "time": self.time, "data": self.data}


class Subscription:
    """What one reader receives: an async iterator of ``Event``; ``close()`` (or ``async with``) ends it.

    >>> async with bus.subscribe(["models"]) as sub:    # doctest: +SKIP
    ...     async for event in sub:
    ...         print(event.type, event.data)
    """

    def __init__(
        self,
        bus: LocalEventBus,
        patterns: Iterable[str],
        queue_size: int,
        principal: Principal | None = None,
    ) -> None:
        self._bus = bus
        self.patterns: set[str] = set(patterns)
        self.principal = current_principal() if principal is None else principal
        self.queue_size = queue_size
        self._limit = queue_size  # grows by the replayed backlog in ``LocalEventBus.subscribe``
        self.reset = False
        self.dropped: SlowConsumerError | None = None
        self._items: collections.deque[Event] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closed = False

    def wants(self, topic: str) -> bool:
        return any(matches(pattern, topic) for pattern in self.patterns)

    def accepts(self, event: Event) -> bool:
        """Whether this reader receives ``event``: a pattern matches, and its principal may see it."""
        return self.wants(event.topic) and (event.owner is None or self.principal.owns(event.owner))

    def add(self, topic: str) -> None:
        """Start receiving ``topic`` (a topic or pattern) too, if the principal may (``require_topics``)."""
        validate_topic(topic)
        require_topics(self.principal, (topic,))
        self.patterns.add(topic)

    def remove(self, topic: str) -> None:
        self.patterns.discard(topic)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return len(self._items)

    def offer(self, event: Event, *, force: bool = False) -> None:
        """Queue ``event`` for this reader, or drop the reader if its queue is full. Never blocks."""
        if self._closed:
            return
        if len(self._items) >= self._limit and not force:
            self.dropped = SlowConsumerError(
                f"dropped: {len(self._items)} events were waiting unread (the limit is {self._limit}); "
                "read faster or subscribe to fewer topics, then reconnect with the last event id",
                details={"queued": len(self._items), "limit": self._limit},
            )
            self._items.clear()
            self._bus._forget(self)
            self._closed = True
        else:
            self._items.append(event)
        self._wakeup.set()

    async def get(self) -> Event:
        """The next event. Raises ``SlowConsumerError`` if dropped, ``StopAsyncIteration`` once closed."""
        while True:
            if self._items:
                return self._items.popleft()
            if self.dropped is not None:
                raise self.dropped
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def get_nowait(self) -> Event | None:
        return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Stop receiving. Events already queued can still be read; then iteration ends."""
        if not self._closed:
            self._closed = True
            self._bus._forget(self)
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class EventBus(abc.ABC):
    """Publish and subscribe by topic. Adapters depend on this interface only."""

    @abc.abstractmethod
    async def publish(
        self,
        topic: str,
        type: str,
        data: Mapping[str, Any],
        *,
        ephemeral: bool = False,
        owner: str | None = None,
    ) -> Event | None:
        """Publish; ``ephemeral`` events are delivered live but not kept for replay; an ``owner``'s events
        reach only subscriptions whose principal owns them."""

    @abc.abstractmethod
    def subscribe(
        self,
        topics: Iterable[str],
        *,
        last_event_id: int | None = None,
        queue_size: int | None = None,
        principal: Principal | None = None,
    ) -> Subscription:
        """A new subscription to ``topics`` (validated patterns), replaying after ``last_event_id``, for
        ``principal`` (default: ``current_principal()``)."""

    async def start(self) -> None:  # noqa: B027 - optional hook; the local bus needs nothing
        """Connect to whatever the backend needs."""

    shared: bool = False
    """True when events published by other processes arrive here too (a bus over Redis)."""

    def add_remote_listener(self, listener: Callable[[Event], None]) -> None:  # noqa: B027 - optional hook
        """Call ``listener`` with each event another process published (never, on an in-process bus)."""

    def add_publish_listener(self, listener: Callable[[Event], None]) -> None:  # noqa: B027 - optional hook
        """Call ``listener`` (synchronously: it must not block) with each event published by this process,
        once it is published; an event sink (``outbound/events.py``) sends them out from here, so an event
        leaves once however many processes share the bus."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End every subscription (readers see the end of their stream) and release the backend."""

    @property
    @abc.abstractmethod
    def subscriber_count(self) -> int: ...


class LocalEventBus(EventBus):
    """In-process fan-out with bounded per-subscriber queues and a bounded replay ring."""

    def __init__(
        self, *, queue_size: int = 1024, replay_size: int = 4096, replay_max_bytes: int = 8 * 1024 * 1024
    ) -> None:
        self.queue_size = queue_size
        self._ring: collections.deque[tuple[Event, int]] = collections.deque()
        self._replay_size = replay_size
        self._replay_max_bytes = replay_max_bytes
        self.replay_bytes = 0
        """What the events kept for replay count now (``event_size``), never over ``replay_max_bytes``."""
        self._evicted_upto = 0
        # Ids start at the boot time in ms, so an id a client kept from an earlier run of the server is
        # (almost always) recognised as foreign and answered with a reset rather than a wrong replay.
        self._first_id = int(time.time() * 1000)
        self._last_id = self._first_id - 1
        self._subs: set[Subscription] = set()
        self._closed = False
        self.published = 0
        self.dropped = 0
        self._publish_listeners: list[Callable[[Event], None]] = []

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @property
    def last_id(self) -> int:
        return self._last_id

    async def publish(
        self,
        topic: str,
        type: str,
        data: Mapping[str, Any],
        *,
        ephemeral: bool = False,
        owner: str | None = None,
    ) -> Event | None:
        self._last_id += 1
        event = Event(self._last_id, topic, type, data, owner=owner)
        self.deliver(event, ephemeral=ephemeral)
        self.published_here(event)
        return event

    def add_publish_listener(self, listener: Callable[[Event], None]) -> None:
        self._publish_listeners.append(listener)

    def published_here(self, event: Event) -> None:
        """Hand ``event``, published by this process, to the publish listeners. Backends call this."""
        for listener in self._publish_listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("a publish listener failed on %s", event.type)

    def deliver(self, event: Event, *, ephemeral: bool = False) -> None:
        """Fan ``event`` out to local subscribers and keep it for replay. Backends call this."""
        self._last_id = max(self._last_id, event.id)
        self.published += 1
        if not ephemeral:
            self._keep(event)
        for sub in list(self._subs):
            if sub.accepts(event):
                sub.offer(event)

    def _keep(self, event: Event) -> None:
        size = event_size(event) if self._replay_size and self._replay_max_bytes else 0
        if not size or size > self._replay_max_bytes:
            self._evicted_upto = event.id  # not kept: resuming from before it needs a reset
            return
        while self._ring and (
            len(self._ring) >= self._replay_size or self.replay_bytes + size > self._replay_max_bytes
        ):
            evicted, evicted_size = self._ring.popleft()
            self.replay_bytes -= evicted_size
            self._evicted_upto = evicted.id
        self._ring.append((event, size))
        self.replay_bytes += size

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        last_event_id: int | None = None,
        queue_size: int | None = None,
        principal: Principal | None = None,
    ) -> Subscription:
        patterns = [validate_topic(t) for t in topics]
        require_topics(current_principal() if principal is None else principal, patterns)
        sub = Subscription(self, patterns, queue_size or self.queue_size, principal)
        if self._closed:
            sub.close()
            return sub
        if last_event_id is not None:
            foreign = last_event_id < self._first_id - 1 or last_event_id > self._last_id
            if foreign or last_event_id < self._evicted_upto:
                sub.reset = True
            else:
                for event, _ in self._ring:
                    if event.id > last_event_id and sub.accepts(event):
                        sub.offer(event, force=True)
                sub._limit += sub.pending
        self._subs.add(sub)
        return sub

    def _forget(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            if sub.dropped is not None:
                self.dropped += 1

    async def close(self) -> None:
        self._closed = True
        for sub in list(self._subs):
            sub.close()
