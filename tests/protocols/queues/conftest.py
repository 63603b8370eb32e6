"""The real brokers the queue contract runs over, each with names of the test's own (deleted afterwards).

``broker`` is parametrised over RabbitMQ, NATS core request-reply, NATS JetStream and Redis Streams
(127.0.0.1 on the default ports; ``MODELWIRE_TEST_AMQP`` / ``_NATS`` / ``_REDIS`` override). When a broker
is unreachable its tests are skipped, unless ``CI=true``: there the brokers are part of the environment,
so their absence fails the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelwire.app.builder import build_services
from modelwire.app.components import QueueConsumers
from modelwire.app.lifecycle import Server
from modelwire.settings import QueueSettings, Settings
from tests.models import EchoModel
from tests.required import unavailable

AMQP_URL = os.environ.get("MODELWIRE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("MODELWIRE_TEST_NATS", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("MODELWIRE_TEST_REDIS", "redis://127.0.0.1:6379/0")

Start = Callable[..., Any]
KINDS = ("rabbitmq", "nats", "nats-jetstream", "redis")


def _require(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1).close()
    except OSError as exc:
        message = f"{parts.scheme} broker at {parts.hostname}:{parts.port} is unreachable: {exc}"
        unavailable(message)


@dataclass
class BrokerUnderTest:
    """One broker with this test's own queue/subject/stream names: what the consumer and the test use."""

    kind: str
    url: str
    names: dict[str, Any]
    durable: bool = False
    cleanups: list[Callable[[], Any]] = field(default_factory=list)

    def queue(self, **overrides: Any) -> dict[str, Any]:
        """A ``[[queues]]`` entry for this broker (``ack_wait_s`` short: redelivery tests wait for it)."""
        return {"url": self.url, "ack_wait_s": 2.0, **self.names, **overrides}

    @property
    def settings(self) -> QueueSettings:
        return QueueSettings(**self.queue())

    async def dead_letters(self, expect: int, timeout: float = 10.0) -> list[tuple[bytes, str]]:
        """The dead-lettered messages (body, reason), once at least ``expect`` are there (bounded wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await self._read_dead_letters()
            if len(found) >= expect or loop.time() >= deadline:
                return found
            await asyncio.sleep(0.05)

    async def _read_dead_letters(self) -> list[tuple[bytes, str]]:
        dlq = self.settings.dead_letter_name
        if self.kind == "rabbitmq":
            import aio_pika

            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue(dlq, passive=True)
                found = []
                while (message := await queue.get(fail=False, no_ack=False)) is not None:
                    found.append((message.body, str((message.headers or {}).get("x-modelwire-error"))))
                # not acknowledged: closing the channel puts them back, to be counted again later
                return found
        if self.kind == "redis":
            from redis.asyncio import Redis

            client = Redis.from_url(REDIS_URL)
            try:
                entries = await client.xrange(dlq)
            finally:
                await client.aclose()
            return [(fields[b"body"], fields[b"error"].decode()) for _id, fields in entries]
        return list(self._nats_dead)

    _nats_dead: list[tuple[bytes, str]] = field(default_factory=list)


async def _rabbitmq(tag: str) -> BrokerUnderTest:
    import aio_pika

    names = {"name": f"test.{tag}.requests", "dead_letter": f"test.{tag}.dlq"}
    under = BrokerUnderTest("rabbitmq", AMQP_URL, names)

    async def cleanup() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            for name in names.values():
                await channel.queue_delete(name)

    under.cleanups.append(cleanup)
    return under


async def _nats(tag: str, durable: bool) -> BrokerUnderTest:
    import nats

    names = {
        "name": f"test.{tag}.requests",
        "dead_letter": f"test.{tag}.dlq",
        "group": f"g{tag}",
        "jetstream": f"TEST_{tag.upper()}",
        "jetstream_subjects": f"test.{tag}.durable.>",
    }
    under = BrokerUnderTest("nats-jetstream" if durable else "nats", NATS_URL, names, durable=durable)
    nc = await nats.connect(NATS_URL)

    async def on_dead(msg: Any) -> None:
        under._nats_dead.append((msg.data, (msg.headers or {}).get("x-modelwire-error", "")))

    await nc.subscribe(names["dead_letter"], cb=on_dead)
    await nc.flush()

    async def cleanup() -> None:
        js = nc.jetstream()
        with contextlib.suppress(Exception):
            await js.delete_stream(names["jetstream"])
        await nc.close()

    under.cleanups.append(cleanup)
    return under


async def _redis(tag: str) -> BrokerUnderTest:
    from redis.asyncio import Redis

    names = {"name": f"test-{tag}:requests", "dead_letter": f"test-{tag}:requests:dlq"}
    under = BrokerUnderTest("redis", REDIS_URL, names)

    async def cleanup() -> None:
        client = Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(match=f"test-{tag}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    under.cleanups.append(cleanup)
    return under


@contextlib.asynccontextmanager
async def open_broker(kind: str) -> AsyncIterator[BrokerUnderTest]:
    """A reachable broker of ``kind`` (skipped, or failed under CI, when not) with names of its own."""
    url = {"rabbitmq": AMQP_URL, "redis": REDIS_URL}.get(kind, NATS_URL)
    _require(url)
    tag = uuid.uuid4().hex[:10]
    if kind == "rabbitmq":
        under = await _rabbitmq(tag)
    elif kind == "redis":
        under = await _redis(tag)
    else:
        under = await _nats(tag, durable=kind == "nats-jetstream")
    try:
        yield under
    finally:
        for cleanup in under.cleanups:
            await cleanup()


@pytest.fixture(params=KINDS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerUnderTest]:
    """Each broker in turn (core NATS, JetStream, RabbitMQ, Redis Streams)."""
    async with open_broker(request.param) as under:
        yield under


@pytest.fixture(params=[kind for kind in KINDS if kind != "nats"])
async def durable_broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerUnderTest]:
    """The brokers that keep a message until it is acknowledged (core NATS is at-most-once)."""
    async with open_broker(request.param) as under:
        yield under


@pytest.fixture
async def start(broker: BrokerUnderTest, tmp_path: Path) -> AsyncIterator[Start]:
    """``await start(**settings)``: a consumer of ``broker`` on the echo model (or ``models=[...]``);
    stopped at the end."""
    servers: list[Server] = []

    async def run(
        *, queue: dict[str, Any] | None = None, models: list[Any] | None = None, **overrides: Any
    ) -> Server:
        settings = Settings(
            host="127.0.0.1",
            data_dir=tmp_path,
            models=[{"name": "echo", "source": "tests.models:EchoModel"}],
            queues=[broker.queue(**(queue or {}))],
            **overrides,
        )
        services = build_services(settings, models=models or [EchoModel("echo")])
        server = Server(
            settings, services=services, rest=False, grpc=False, components=[QueueConsumers(settings)]
        )
        await server.start()
        servers.append(server)
        return server

    yield run
    for server in servers:
        await server.stop()
