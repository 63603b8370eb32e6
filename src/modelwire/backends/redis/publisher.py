"""Events to Redis Streams: ``XADD modelwire:events MAXLEN ~ <max_len>`` with the fields ``topic``,
``type``, ``id`` and ``body`` (the CloudEvents JSON envelope).

A stream keeps events for readers that come later (``XREAD`` from an id, or a consumer group of their
own); ``max_len`` bounds it. The client does not retry by itself: the event sink (``outbound/events.py``)
notices a failure and reconnects, counting what it drops meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from modelwire.backends.redis.connection import RedisTarget
from modelwire.backends.urls import with_credentials
from modelwire.settings import EventSinkSettings

__all__ = ["RedisEventTransport"]


class RedisEventTransport:
    """Appends to one stream. No I/O before ``connect``."""

    kind = "redis"

    def __init__(self, settings: EventSinkSettings) -> None:
        self.settings = settings
        self.stream = settings.destination_name
        self.display = f"Redis {settings.url} stream {self.stream}"
        self._redis: Redis | None = None

    def _url(self) -> str:
        return with_credentials(self.settings.url, self.settings.username, self.settings.secret())

    async def connect(self) -> None:
        tls = self.settings.redis_tls()
        redis = RedisTarget.parse(self._url()).connect("modelwire-events-out", retries=0, tls=tls)
        try:
            await redis.ping()
        except BaseException:
            await redis.aclose()
            raise
        self._redis = redis

    async def send(self, subject: str, body: bytes, headers: Mapping[str, str]) -> None:
        if self._redis is None:
            raise ConnectionError("not connected")
        fields: dict[Any, Any] = {
            "topic": headers.get("ce-subject", subject),
            "type": headers.get("ce-type", ""),
            "id": headers.get("ce-id", ""),
            "body": body,
        }
        await self._redis.xadd(self.stream, fields, maxlen=self.settings.max_len, approximate=True)

    async def close(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            with contextlib.suppress(Exception):
                await redis.aclose()
