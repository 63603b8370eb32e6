"""Sending requests to modelwire over a broker and waiting for the answers (``modelwire queue send``).

Uses each broker's own client, as a producer in another service would (docs/queues.md shows the same in ten
lines per broker): RabbitMQ publishes to the queue with ``reply_to`` (an exclusive queue of its own) and a
``correlation_id``; NATS asks on the subject (core request-reply) or, ``durable``, publishes to JetStream
with a ``Reply-To`` header; Redis ``XADD``s to the stream with ``reply_to`` (a stream key of its own) and
``correlation_id``. Answers are matched by correlation id; one that arrives twice (at-least-once) is
counted in ``duplicates``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

from modelwire.settings import QueueSettings

__all__ = ["QueueSender"]

_PUBLISHING = 64


class QueueSender:
    """A producer that waits for answers.

    >>> async with QueueSender("amqp://guest:guest@127.0.0.1:5672/") as sender:
    ...     answer = await sender.request(b'{"text": "I love this product"}')
    """

    def __init__(
        self,
        url: str | QueueSettings,
        *,
        name: str | None = None,
        durable: bool = False,
        timeout: float = 30.0,
        publishing: int = _PUBLISHING,
    ) -> None:
        """``url`` is the broker's, or a whole ``QueueSettings`` (names the consumer was given).
        ``publishing``: requests being published at once (core NATS: in flight, a request is one call)."""
        self.queue = url if isinstance(url, QueueSettings) else QueueSettings(url=url, name=name)
        self.durable = durable
        self.timeout = timeout
        self.duplicates = 0
        self.last_headers: dict[str, str] = {}
        """The headers (Redis: the fields) of the latest answer: ``x-request-id``, ``model``..."""
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._answered: set[str] = set()
        self._close: list[Any] = []
        self._send: Any = None
        self._publishing = asyncio.Semaphore(publishing)

    async def __aenter__(self) -> QueueSender:
        kind = self.queue.kind
        if kind == "rabbitmq":
            await self._open_rabbitmq()
        elif kind == "nats":
            await self._open_nats()
        elif kind == "redis":
            await self._open_redis()
        else:
            raise ValueError(f"{kind} is not supported: use amqp://, nats:// or redis://")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for close in reversed(self._close):
            with contextlib.suppress(Exception):
                await close()

    async def request(
        self, body: bytes, *, content_type: str = "application/json", headers: Mapping[str, str] | None = None
    ) -> bytes:
        """Send one request and wait (``timeout``) for its answer's body."""
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            async with self._publishing:  # a burst must not open a connection per message
                await self._send(body, correlation_id, content_type, dict(headers or {}))
            async with asyncio.timeout(self.timeout):
                return await future
        finally:
            self._pending.pop(correlation_id, None)

    def _answer(self, correlation_id: str | None, body: bytes, headers: Mapping[Any, Any] | None) -> None:
        if correlation_id is None:
            return
        self.last_headers = {_str(k).lower(): _str(v) for k, v in (headers or {}).items()}
        if correlation_id in self._answered:
            self.duplicates += 1
            return
        future = self._pending.get(correlation_id)
        if future is not None and not future.done():
            self._answered.add(correlation_id)
            future.set_result(body)

    # -- RabbitMQ --------------------------------------------------------------------------------------

    async def _open_rabbitmq(self) -> None:
        import aio_pika
        from yarl import URL

        url = URL(self.queue.url)
        if self.queue.username is not None:
            url = url.with_user(self.queue.username)
        if (secret := self.queue.secret()) is not None:
            url = url.with_password(secret)
        connection = await aio_pika.connect(str(url), ssl_context=self.queue.tls_context())
        self._close.append(connection.close)
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            self._answer(message.correlation_id, message.body, message.headers)
            await message.ack()

        await replies.consume(on_reply)

        async def send(body: bytes, correlation_id: str, content_type: str, headers: dict[str, Any]) -> None:
            message = aio_pika.Message(
                body,
                headers=headers,
                content_type=content_type,
                correlation_id=correlation_id,
                reply_to=replies.name,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await channel.default_exchange.publish(message, self.queue.queue_name)

        self._send = send

    # -- NATS ------------------------------------------------------------------------------------------

    async def _open_nats(self) -> None:
        import nats

        nc = await nats.connect(
            self.queue.url,
            user=self.queue.username,
            password=self.queue.secret(),
            tls=self.queue.tls_context(),
        )
        self._close.append(nc.drain)
        inbox = nc.new_inbox()
        js = nc.jetstream()

        async def on_reply(msg: Any) -> None:
            self._answer((msg.headers or {}).get("Correlation-Id"), msg.data, msg.headers)

        await nc.subscribe(inbox, cb=on_reply)
        durable_subject = self.queue.jetstream_subjects.replace(">", "requests").replace("*", "requests")

        async def send(body: bytes, correlation_id: str, content_type: str, headers: dict[str, Any]) -> None:
            headers = {**headers, "Content-Type": content_type, "Correlation-Id": correlation_id}
            if self.durable:
                await js.publish(durable_subject, body, headers={**headers, "Reply-To": inbox})
                return
            msg = await nc.request(self.queue.queue_name, body, timeout=self.timeout, headers=headers)
            self._answer(correlation_id, msg.data, msg.headers)

        self._send = send

    # -- Redis -----------------------------------------------------------------------------------------

    async def _open_redis(self) -> None:
        from redis.asyncio import Redis

        redis = Redis.from_url(
            self.queue.url,
            username=self.queue.username,
            password=self.queue.secret(),
            **self.queue.redis_tls(),
        )
        reply_to = f"{self.queue.queue_name}:replies:{uuid.uuid4().hex}"

        stopping = asyncio.Event()

        async def read() -> None:
            last = "0-0"
            while not stopping.is_set():  # not cancelled: redis-py can hang cancelling a blocked XREAD
                batches: Any = await redis.xread({reply_to: last}, count=512, block=200)
                for _key, entries in batches or ():
                    for entry_id, fields in entries:
                        last = entry_id
                        cid = fields.get(b"correlation_id")
                        body = fields.pop(b"body", b"")
                        self._answer(cid.decode() if cid else None, body, fields)

        reader = asyncio.create_task(read())

        async def close() -> None:
            stopping.set()
            await asyncio.wait_for(reader, 5)
            await redis.delete(reply_to)
            await redis.aclose()

        self._close.append(close)

        async def send(body: bytes, correlation_id: str, content_type: str, headers: dict[str, Any]) -> None:
            fields: dict[Any, Any] = {
                **headers,
                "body": body,
                "reply_to": reply_to,
                "correlation_id": correlation_id,
            }
            fields["content_type"] = content_type
            await redis.xadd(self.queue.queue_name, fields)

        self._send = send


def _str(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
