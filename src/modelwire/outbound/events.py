"""Events out: chosen topics of the event bus published to a broker (``[[event_sinks]]``; docs/queues.md).

How it works. The sink is a publish listener of the bus (``EventBus.add_publish_listener``): each event
this process publishes on a chosen topic is rendered as a CloudEvents 1.0 JSON envelope (``cloudevent``)
and put in a bounded buffer, synchronously and without I/O, so publishing an event never waits for a
broker. One task sends the buffer in order through the broker's ``EventTransport``
(``backends/<broker>/publisher.py``), removing an event once the broker has it. When the broker cannot
be reached (at start, or it goes away) the task reconnects with a growing delay (0.1 s to 5 s) and the
buffer fills; past ``buffer`` events the oldest is dropped and counted
(``modelwire_events_out_total{outcome="dropped"}``). The first failure is logged once, and the return
with how many were dropped meanwhile. ``stop`` sends what is left for a moment, then closes.

Events come from this process only, so with a bus shared over Redis each event leaves once, from the
process that published it (a job's events from the worker that runs it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
import os
import socket
from collections.abc import Iterable
from typing import Any

import msgspec

from modelwire.backends.queue import EventTransport
from modelwire.errors import ConfigurationError, InvalidInputError
from modelwire.events.bus import Event, EventBus
from modelwire.events.topics import matches, validate_topic
from modelwire.observability.metrics import Metrics

__all__ = ["EventSink", "cloudevent", "subject_of"]

logger = logging.getLogger("modelwire.events")

_SEND_TIMEOUT_S = 5.0
_RETRY_MIN_S = 0.1
_RETRY_MAX_S = 5.0
_STOP_FLUSH_S = 2.0


def subject_of(topic: str) -> str:
    """The broker-side name of a topic: ``/`` as ``.`` (``jobs/ab12`` → ``jobs.ab12``), so a topic
    exchange binding or a NATS wildcard (``jobs.*``) selects topics as ``jobs/*`` does on ``/v1/events``."""
    return topic.replace("/", ".")


def cloudevent(event: Event, source: str) -> dict[str, Any]:
    """The CloudEvents 1.0 (structured JSON) envelope of ``event``: ``id``, ``type``, ``data`` as the
    SSE/WebSocket event has them, ``subject`` and the extension ``topic`` its topic, ``time`` RFC 3339."""
    stamp = datetime.datetime.fromtimestamp(event.time, tz=datetime.UTC)
    return {
        "specversion": "1.0",
        "id": str(event.id),
        "source": source,
        "type": event.type,
        "subject": event.topic,
        "topic": event.topic,
        "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": event.data,
    }


class EventSink:
    """One ``[[event_sinks]]`` entry: the chosen topics of the bus, sent through one broker transport."""

    def __init__(
        self,
        transport: EventTransport,
        topics: Iterable[str],
        *,
        buffer: int,
        metrics: Metrics,
        source: str | None = None,
    ) -> None:
        try:
            self.topics = tuple(validate_topic(topic, field="event_sinks.topics") for topic in topics)
        except InvalidInputError as exc:
            raise ConfigurationError(f"[[event_sinks]] {transport.display}: {exc.message}") from None
        self.transport = transport
        self.limit = buffer
        self.source = source or f"modelwire://{socket.gethostname()}/{os.getpid()}"
        self._published = metrics.events_out.labels(transport.kind, "published")
        self._dropped = metrics.events_out.labels(transport.kind, "dropped")
        self._buffer: collections.deque[tuple[str, bytes, dict[str, str]]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = False
        self._sending = False
        self.sent = 0
        self.dropped = 0
        self._dropped_at_failure = 0

    def attach(self, bus: EventBus) -> None:
        """Receive the events ``bus`` publishes in this process (no I/O; ``start`` sends them)."""
        bus.add_publish_listener(self.offer)

    def offer(self, event: Event) -> None:
        """Buffer ``event`` if its topic is chosen; when full, drop (and count) the oldest. Never blocks."""
        if not any(matches(pattern, event.topic) for pattern in self.topics):
            return
        envelope = cloudevent(event, self.source)
        try:
            body = msgspec.json.encode(envelope)
        except (TypeError, ValueError, OverflowError):  # an in-process listener's own types: not for a broker
            self._drop()
            return
        headers = {"ce-id": envelope["id"], "ce-type": event.type, "ce-subject": event.topic}
        if len(self._buffer) >= self.limit:
            if self._sending and len(self._buffer) > 1:
                del self._buffer[1]  # the head is with the broker now: the next oldest goes
            else:
                self._buffer.popleft()
            self._drop()
        self._buffer.append((subject_of(event.topic), body, headers))
        self._wakeup.set()

    def _drop(self) -> None:
        self.dropped += 1
        self._dropped.inc()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        """Start sending (connecting in the background: an unreachable broker never delays the start)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"event-sink-{self.transport.kind}")

    async def stop(self) -> None:
        """Send what is buffered (for at most a moment, if connected), then close."""
        self._stopping = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_FLUSH_S):
                    await asyncio.shield(task)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.transport.close()
        if self._buffer:
            logger.info(
                "%d event(s) for %s were not sent before stopping", len(self._buffer), self.transport.display
            )

    async def _run(self) -> None:
        delay = _RETRY_MIN_S
        while True:
            if not self.connected:
                if self._stopping:
                    return
                try:
                    async with asyncio.timeout(_SEND_TIMEOUT_S):
                        await self.transport.connect()
                except Exception as exc:  # noqa: BLE001 - any failure means: not reachable now
                    self._failed(exc)
                    await self.transport.close()
                    await self._pause(delay)
                    delay = min(_RETRY_MAX_S, delay * 2)
                    continue
                self._reconnected()
                delay = _RETRY_MIN_S
            if not self._buffer:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            subject, body, headers = self._buffer[0]
            self._sending = True
            try:
                async with asyncio.timeout(_SEND_TIMEOUT_S):
                    await self.transport.send(subject, body, headers)
            except Exception as exc:  # noqa: BLE001 - the connection is gone: reconnect, keep the event
                self.connected = False
                self._failed(exc)
                await self.transport.close()
                continue
            finally:
                self._sending = False
            if self._buffer and self._buffer[0][1] is body:  # not dropped as the oldest meanwhile
                self._buffer.popleft()
            self.sent += 1
            self._published.inc()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self._stopping:
                    self._wakeup.clear()
                    await self._wakeup.wait()

    def _failed(self, exc: BaseException) -> None:
        if self._dropped_at_failure < 0:
            return  # logged once already for this outage
        self._dropped_at_failure = -1 - self.dropped
        logger.warning(
            "cannot publish events to %s (%s); buffering up to %d, dropping the oldest beyond, reconnecting",
            self.transport.display,
            exc or type(exc).__name__,
            self.limit,
        )

    def _reconnected(self) -> None:
        self.connected = True
        if self._dropped_at_failure < 0:
            lost = self.dropped - (-1 - self._dropped_at_failure)
            logger.info("publishing events to %s again (%d dropped meanwhile)", self.transport.display, lost)
        else:
            logger.info("publishing events %s to %s", ", ".join(self.topics), self.transport.display)
        self._dropped_at_failure = 0
