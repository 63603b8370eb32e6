"""What a message broker backend gives the queue adapter (``protocols/queues/``): deliveries in, answers out.

The interface every broker implements (``backends/rabbitmq``, ``backends/nats``, ``backends/redis/queue.py``),
so the adapter is written once. A broker hands out at most ``prefetch`` unacknowledged deliveries; the
adapter answers each (``reply``), or dead-letters it with a reason (``dead_letter``), and only then
acknowledges it (``ack``): at-least-once. ``deliveries`` counts how often the broker has handed this message
out, this time included, from the broker's own count where it keeps one (RabbitMQ quorum queues, JetStream,
Redis ``XPENDING``), so a message that keeps crashing consumers can be dead-lettered.

``EventTransport`` is the other direction: what an event sink (``outbound/events.py``) sends through, one
broker connection that publishes events (``backends/<broker>/publisher.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Delivery", "EventTransport", "QueueBroker"]


@dataclass(slots=True)
class Delivery:
    """One message as the broker handed it out. Header names are lower case."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    deliveries: int = 1
    source: str = ""
    """Where it came from (a queue, subject or stream name): the per-queue principal, logs."""
    handle: Any = None
    """The broker's own message object, for ``ack``."""


class QueueBroker(Protocol):
    """A connection to one broker, consuming the configured requests. No I/O before ``connect``."""

    kind: str
    """``rabbitmq``, ``nats`` or ``redis``: the metrics' protocol label is ``queue-<kind>``."""
    display: str
    """Where it connects and what it consumes, with no credential (for logs)."""

    async def connect(self) -> None:
        """Connect and declare what is consumed (queues, streams, groups); raise if unreachable."""

    def deliveries(self) -> AsyncIterator[Delivery]:
        """Deliveries until ``stop_fetching``; never more than ``prefetch`` unacknowledged at once."""
        ...

    async def reply(
        self, delivery: Delivery, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish an answer to the delivery's reply address (confirmed by the broker where it can), with
        the correlation id and ``headers`` (``model``, ``model-version``, ``x-request-id``,
        ``traceparent``)."""

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Put the message on the dead-letter destination with ``reason`` (``x-modelwire-error``)."""

    async def ack(self, delivery: Delivery) -> None:
        """Done with it: the broker forgets it (and frees a prefetch slot)."""

    async def retry(self, delivery: Delivery) -> None:
        """Give it back to be delivered again (its delivery count grows)."""

    def stop_fetching(self) -> None:
        """Take no new message; ``deliveries`` ends. Unacknowledged ones may still be answered and acked."""

    async def close(self) -> None:
        """Close the connection; what is still unacknowledged goes back to the broker."""


class EventTransport(Protocol):
    """One broker connection publishing events. No I/O before ``connect``; the caller reconnects."""

    kind: str
    display: str
    """Where it publishes, with no credential (for logs)."""

    async def connect(self) -> None:
        """Connect and declare the destination (the exchange, the stream); raise if unreachable."""

    async def send(self, subject: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Publish ``body`` (a CloudEvents JSON envelope) for the topic ``subject`` (its ``/`` as ``.``);
        return once the broker has it (confirmed or flushed); raise when it cannot."""

    async def close(self) -> None:
        """Close the connection (quietly: it may be broken already)."""
