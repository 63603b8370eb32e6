"""Feature events published as a producer would, on the brokers of ``tests/protocols/queues/conftest.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from tests.protocols.queues.conftest import AMQP_URL, NATS_URL, REDIS_URL, BrokerUnderTest, open_broker


def source(under: BrokerUnderTest, **extra: Any) -> dict[str, Any]:
    names = under.names
    out = {"url": under.url, "queue": names["name"], "dead_letter": names["dead_letter"], **extra}
    if under.kind.startswith("nats"):
        out |= {"group": names["group"], "jetstream": names["jetstream"]}
    return out


async def publish(under: BrokerUnderTest, bodies: Sequence[bytes]) -> None:
    """Send each body as a producer would: persistent (RabbitMQ), into the stream (JetStream, Redis)."""
    queue = under.names["name"]
    if under.kind == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for body in bodies:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await channel.default_exchange.publish(message, routing_key=queue)
    elif under.kind == "redis":
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for body in bodies:
                    pipe.xadd(queue, {"body": body})
                await pipe.execute()
        finally:
            await client.aclose()
    else:
        import nats

        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            for body in bodies:
                await js.publish(queue, body)
        finally:
            await nc.close()


@pytest.fixture(params=["rabbitmq", "nats-jetstream", "redis"])
async def under(request: pytest.FixtureRequest) -> AsyncIterator[BrokerUnderTest]:
    async with open_broker(request.param) as broker:
        yield broker
