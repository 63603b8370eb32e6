"""Events to NATS: the subject ``modelwire.events.<topic with / as .>`` (``modelwire.events.jobs.<id>``).

Core NATS publish: a subscriber (or a JetStream stream capturing ``modelwire.events.>``, for whoever wants
them kept) receives what is published while it listens. Each publish is followed by a flush (a round trip
to the server), so an event counts as sent only once the server has it. No automatic reconnect: the event
sink (``outbound/events.py``) notices a failure and reconnects itself, counting what it drops meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import nats
from nats.aio.client import Client

from modelwire.settings import EventSinkSettings

__all__ = ["NatsEventTransport"]

_FLUSH_S = 5


class NatsEventTransport:
    """Publishes under one subject prefix. No I/O before ``connect``."""

    kind = "nats"

    def __init__(self, settings: EventSinkSettings) -> None:
        self.settings = settings
        self.prefix = settings.destination_name
        self.display = f"NATS {settings.url} subjects {self.prefix}.>"
        self._nc: Client | None = None

    async def connect(self) -> None:
        self._nc = await nats.connect(
            servers=[self.settings.url],
            user=self.settings.username,
            password=self.settings.secret(),
            name="modelwire-events",
            allow_reconnect=False,
            max_reconnect_attempts=1,  # nats-py retries a failed first connect without end at 0
            reconnect_time_wait=0.1,
            connect_timeout=5,
            error_cb=_quiet,  # failures are raised here and logged once by the sink, not at every try
            tls=self.settings.tls_context(),
        )

    async def send(self, subject: str, body: bytes, headers: Mapping[str, str]) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise ConnectionError("not connected")
        await nc.publish(f"{self.prefix}.{subject}", body, headers=dict(headers))
        await nc.flush(timeout=_FLUSH_S)

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()


async def _quiet(exc: Exception) -> None:
    pass
