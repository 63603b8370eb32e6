"""RabbitMQ (AMQP 0-9-1, aio-pika): the durable queue ``modelwire.requests``, answers to ``reply_to``.

The queue is declared a quorum queue (durable, and it counts deliveries in ``x-delivery-count``, which is
how a poison message is recognised after it crashed consumers). A queue that already exists as a classic
queue is used as it is: its only counts are the ``redelivered`` flag and this process's own count of the
messages it gave back (lost when the process dies, so a message that kills consumers is seen delivered
twice at most there: quorum queues are the ones that recognise poison). Every publish
waits for the broker's confirm, so ``ack`` after ``reply`` is at-least-once. Prefetch bounds the
unacknowledged messages on this consumer's channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from modelwire.backends.queue import Delivery
from modelwire.backends.urls import with_credentials
from modelwire.settings import QueueSettings

__all__ = ["RabbitMQBroker"]

logger = logging.getLogger("modelwire.queues")

ERROR_HEADER = "x-modelwire-error"
_RETURNED = 10_000


class RabbitMQBroker:
    """One connection and channel consuming ``settings.queue_name``. No I/O before ``connect``."""

    kind = "rabbitmq"

    def __init__(self, settings: QueueSettings) -> None:
        self.settings = settings
        self.display = f"RabbitMQ {settings.url} queue {settings.queue_name}"
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._stopped = False
        self._cancelling: asyncio.Future[None] | None = None
        self._returned: dict[str, int] = {}  # classic queues: messages given back, by _key

    def _url(self) -> str:
        return with_credentials(self.settings.url, self.settings.username, self.settings.secret())

    async def connect(self) -> None:
        properties: dict[str, Any] = {"product": "modelwire"}
        self._connection = await aio_pika.connect_robust(
            self._url(), client_properties=properties, ssl_context=self.settings.tls_context()
        )
        await self._declare(self.settings.queue_name, {"x-queue-type": "quorum"})
        await self._declare(self.settings.dead_letter_name, {})
        channel = self._channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.settings.prefetch)
        self._queue = await channel.get_queue(self.settings.queue_name, ensure=False)
        self._tag = await self._queue.consume(self._inbox.put)

    async def _declare(self, name: str, arguments: dict[str, Any]) -> None:
        assert self._connection is not None
        try:
            async with self._connection.channel() as channel:
                await channel.declare_queue(name, durable=True, arguments=arguments)
        except aiormq.exceptions.ChannelPreconditionFailed:  # exists with other arguments: use it as it is
            logger.info("queue %s exists with other arguments; using it as declared", name)
            async with self._connection.channel() as channel:
                await channel.declare_queue(name, passive=True)

    async def deliveries(self) -> AsyncIterator[Delivery]:
        # after stop_fetching, what the broker already handed to this channel is still answered
        while not (self._stopped and self._inbox.empty()):
            message = await self._inbox.get()
            if message is not None:
                yield self._delivery(message)

    def _delivery(self, message: AbstractIncomingMessage) -> Delivery:
        headers = {k.lower(): _text(v) for k, v in (message.headers or {}).items()}
        count = message.headers.get("x-delivery-count") if message.headers else None
        if isinstance(count, int):
            deliveries = count + 1
        else:  # a classic queue: the redelivered flag, and what this process gave back itself
            deliveries = max(2 if message.redelivered else 1, 1 + self._returned.get(_key(message), 0))
        return Delivery(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            reply_to=message.reply_to,
            correlation_id=message.correlation_id,
            deliveries=deliveries,
            source=self.settings.queue_name,
            handle=message,
        )

    async def reply(
        self, delivery: Delivery, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        if not delivery.reply_to or self._channel is None:
            return
        message = aio_pika.Message(
            body,
            headers=dict(headers or {}),
            content_type=content_type,
            correlation_id=delivery.correlation_id,
        )
        # not mandatory: a requester that went away is not a reason to redeliver the request
        await self._channel.default_exchange.publish(message, delivery.reply_to, mandatory=False)

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        assert self._channel is not None
        original: AbstractIncomingMessage = delivery.handle
        headers: dict[str, Any] = dict(original.headers or {})
        headers[ERROR_HEADER] = reason
        headers["x-modelwire-deliveries"] = delivery.deliveries
        message = aio_pika.Message(
            delivery.body,
            headers=headers,
            content_type=delivery.content_type,
            correlation_id=delivery.correlation_id,
            reply_to=delivery.reply_to,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._channel.default_exchange.publish(message, self.settings.dead_letter_name)

    async def ack(self, delivery: Delivery) -> None:
        message: AbstractIncomingMessage = delivery.handle
        await message.ack()

    async def retry(self, delivery: Delivery) -> None:
        message: AbstractIncomingMessage = delivery.handle
        key = _key(message)
        self._returned[key] = self._returned.pop(key, 0) + 1
        if len(self._returned) > _RETURNED:
            del self._returned[next(iter(self._returned))]
        await message.nack(requeue=True)

    def stop_fetching(self) -> None:
        self._stopped = True
        self._inbox.put_nowait(None)
        if self._queue is not None and self._tag is not None:
            queue, tag = self._queue, self._tag
            self._tag = None
            self._cancelling = asyncio.ensure_future(_quietly(queue.cancel(tag)))

    async def close(self) -> None:
        if self._cancelling is not None:
            await self._cancelling
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()


async def _quietly(work: Any) -> None:
    with contextlib.suppress(Exception):
        await work


def _key(message: AbstractIncomingMessage) -> str:
    """What identifies a message across redeliveries on a classic queue (which counts none)."""
    return (
        message.message_id
        or f"{message.correlation_id}:{hashlib.blake2b(message.body, digest_size=8).hexdigest()}"
    )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
