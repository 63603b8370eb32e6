"""Redis Streams: the stream ``modelwire:requests`` read by the consumer group ``modelwire``.

An entry's fields are ``body`` (the request), ``reply_to`` (a stream key), ``correlation_id``, and any
headers (``model``, ``content_type``, ``authorization``, ``idempotency-key``...). The answer is ``XADD``-ed
to ``reply_to`` with ``body`` and ``correlation_id``. An entry is acknowledged and deleted once answered
(the stream is a work queue: it does not grow with what was done).

Each process reads as its own consumer (``XREADGROUP ... COUNT <room>``, never more than ``prefetch``
unacknowledged). Entries left pending by a consumer that died are claimed with ``XAUTOCLAIM`` once idle
for ``ack_wait_s``; their delivery count is ``XPENDING``'s. Dead letters go to ``modelwire:requests:dlq``
with the reason in the field ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from modelwire.backends.queue import Delivery
from modelwire.backends.redis.connection import RedisTarget
from modelwire.backends.urls import with_credentials
from modelwire.settings import QueueSettings

__all__ = ["RedisStreamBroker"]

logger = logging.getLogger("modelwire.queues")

_BLOCK_MS = 1000
_CONNECTIONS = 32
_RESERVED = {b"body", b"reply_to", b"correlation_id", b"content_type"}


class RedisStreamBroker:
    """One consumer of the group. No I/O before ``connect``."""

    kind = "redis"

    def __init__(self, settings: QueueSettings) -> None:
        self.settings = settings
        self.stream = settings.queue_name
        self.display = f"Redis {settings.url} stream {self.stream} group {settings.group}"
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._redis: Redis | None = None
        self._inbox: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._fetcher: asyncio.Task[None] | None = None
        self._outstanding = 0
        self._room = asyncio.Event()
        self._io = asyncio.Semaphore(_CONNECTIONS)  # redis-py's pool holds 100; the reader takes one
        self._stopped = False
        self._claimed_at = 0.0

    def _url(self) -> str:
        return with_credentials(self.settings.url, self.settings.username, self.settings.secret())

    async def connect(self) -> None:
        tls = self.settings.redis_tls()
        self._redis = redis = RedisTarget.parse(self._url()).connect("modelwire-queue", tls=tls)
        try:
            await redis.xgroup_create(self.stream, self.settings.group, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._fetcher = asyncio.create_task(self._fetch(redis), name="redis-stream-fetch")

    async def _fetch(self, redis: Redis) -> None:
        clock = asyncio.get_running_loop().time
        while not self._stopped:
            room = self.settings.prefetch - self._outstanding
            if room <= 0:
                self._room.clear()
                await self._room.wait()  # every outstanding entry is being answered
                continue
            try:
                if clock() - self._claimed_at >= min(self.settings.ack_wait_s / 2, 5.0):
                    self._claimed_at = clock()
                    if await self._claim(redis, room):
                        continue
                reply: Any = await redis.xreadgroup(
                    self.settings.group, self.consumer, {self.stream: ">"}, count=room, block=_BLOCK_MS
                )
            except (redis_errors.RedisError, OSError) as exc:
                if self._stopped:
                    return
                logger.warning("reading stream %s failed (%s); retrying", self.stream, exc)
                await asyncio.sleep(1.0)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._take(entry_id, fields, 1)  # after stop too: read means pending on us

    async def _claim(self, redis: Redis, room: int) -> bool:
        """Entries another (dead) consumer left pending for ``ack_wait_s``; True when some were taken."""
        idle_ms = int(self.settings.ack_wait_s * 1000)
        result: Any = await redis.xautoclaim(
            self.stream, self.settings.group, self.consumer, idle_ms, start_id="0-0", count=room
        )
        entries = result[1]
        for entry_id, fields in entries:
            pending = await redis.xpending_range(
                self.stream, self.settings.group, min=entry_id, max=entry_id, count=1
            )
            count = int(pending[0]["times_delivered"]) if pending else 1
            self._take(entry_id, fields, count)
        return bool(entries)

    def _take(self, entry_id: bytes, fields: dict[bytes, bytes] | None, deliveries: int) -> None:
        fields = fields or {}
        headers = {
            k.decode(errors="replace").lower(): v.decode(errors="replace")
            for k, v in fields.items()
            if k not in _RESERVED
        }
        self._outstanding += 1
        self._inbox.put_nowait(
            Delivery(
                body=fields.get(b"body", b""),
                headers=headers,
                content_type=_text(fields.get(b"content_type")),
                reply_to=_text(fields.get(b"reply_to")),
                correlation_id=_text(fields.get(b"correlation_id")),
                deliveries=deliveries,
                source=self.stream,
                handle=(entry_id, fields),
            )
        )

    async def deliveries(self) -> AsyncIterator[Delivery]:
        # after stop_fetching, what was already read is still answered
        while not (self._stopped and self._inbox.empty()):
            delivery = await self._inbox.get()
            if delivery is not None:
                yield delivery

    async def reply(
        self, delivery: Delivery, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        if not delivery.reply_to or self._redis is None:
            return
        fields: dict[Any, Any] = {
            **(headers or {}),
            "body": body,
            "correlation_id": delivery.correlation_id or "",
        }
        fields["content_type"] = content_type
        async with self._io:
            await self._redis.xadd(delivery.reply_to, fields)

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        assert self._redis is not None
        entry_id, original = delivery.handle
        fields: dict[Any, Any] = dict(original)
        fields.update({"body": delivery.body, "error": reason, "id": entry_id})
        fields["deliveries"] = delivery.deliveries
        async with self._io:
            await self._redis.xadd(self.settings.dead_letter_name, fields)

    async def ack(self, delivery: Delivery) -> None:
        assert self._redis is not None
        entry_id, _ = delivery.handle
        async with self._io, self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.settings.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()
        self._outstanding -= 1
        self._room.set()

    async def retry(self, delivery: Delivery) -> None:
        # it stays pending: claimed again (by any consumer, this one included) once idle for ack_wait_s
        self._outstanding -= 1
        self._room.set()

    def stop_fetching(self) -> None:
        # not cancelled: redis-py can hang cancelling a blocked XREADGROUP; it ends within _BLOCK_MS
        self._stopped = True
        self._room.set()
        self._inbox.put_nowait(None)

    async def close(self) -> None:
        if self._fetcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._fetcher, 5 * _BLOCK_MS / 1000)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


def _text(value: bytes | None) -> str | None:
    return value.decode(errors="replace") if value else None
