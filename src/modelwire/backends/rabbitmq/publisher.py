"""Events to RabbitMQ: the durable topic exchange ``modelwire.events``, routing key the topic (``jobs.<id>``).

A service binds its own queue to the exchange with the topics it wants (``jobs.*``, ``models``, ``#``).
Each publish waits for the broker's confirm; a message no queue is bound for is dropped by the broker, as
a topic exchange does (events are for whoever listens). A plain connection, not a robust one: the event
sink (``outbound/events.py``) notices a failure and reconnects itself, counting what it drops meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from modelwire.backends.urls import with_credentials
from modelwire.settings import EventSinkSettings

__all__ = ["RabbitMQEventTransport"]


class RabbitMQEventTransport:
    """Publishes to one topic exchange. No I/O before ``connect``."""

    kind = "rabbitmq"

    def __init__(self, settings: EventSinkSettings) -> None:
        self.settings = settings
        self.display = f"RabbitMQ {settings.url} exchange {settings.destination_name}"
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    def _url(self) -> str:
        return with_credentials(self.settings.url, self.settings.username, self.settings.secret())

    async def connect(self) -> None:
        self._connection = await aio_pika.connect(
            self._url(), client_properties={"product": "modelwire"}, ssl_context=self.settings.tls_context()
        )
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._channel.declare_exchange(
            self.settings.destination_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def send(self, subject: str, body: bytes, headers: Mapping[str, str]) -> None:
        if self._exchange is None:
            raise ConnectionError("not connected")
        message = aio_pika.Message(
            body,
            content_type="application/cloudevents+json",
            message_id=headers.get("ce-id"),
            type=headers.get("ce-type"),
            headers=dict(headers),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._exchange.publish(message, routing_key=subject)

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
