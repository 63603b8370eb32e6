"""NATS (nats-py): core request-reply on ``modelwire.requests`` and durable work on JetStream.

- **Core NATS**: a queue-group subscription (group ``modelwire``: replicas share the load) on the subject;
  the answer goes to the message's reply subject. At-most-once, as core NATS is: a message in flight when
  a consumer dies is lost, and the requester's own timeout tells it so.
- **JetStream**: the stream ``MODELWIRE`` captures ``modelwire.durable.>`` (never the request subject
  itself: its publish acknowledgement would reach a requester before the answer); the durable pull consumer
  ``modelwire`` with ``max_ack_pending = prefetch`` is fetched from, the answer goes to the subject in the
  message's ``Reply-To`` header, and the message is acknowledged after that publish (the ack travels on the
  same connection, after it). ``num_delivered`` is the delivery count.

Dead letters are published on ``modelwire.requests.dlq`` with the reason in the ``x-modelwire-error``
header (a stream capturing that subject keeps them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from modelwire.backends.queue import Delivery
from modelwire.settings import QueueSettings

_FIRST_CONNECT_S = 10.0


async def _log_error(exc: Exception) -> None:
    # once connected, nats-py reports each failed reconnect here; the first connect's failure is raised
    logger.warning("NATS: %s", exc or type(exc).__name__)


__all__ = ["NatsBroker"]

logger = logging.getLogger("modelwire.queues")

ERROR_HEADER = "x-modelwire-error"
_FETCH_WAIT_S = 1.0
_CORE_PENDING = 8192
_CORE_PENDING_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Handle:
    msg: Msg
    durable: bool


class NatsBroker:
    """One connection: the core subscription and, unless ``jetstream`` is unset, the pull consumer."""

    kind = "nats"

    def __init__(self, settings: QueueSettings, *, core: bool = True) -> None:
        self.settings = settings
        self.core = core
        """False: JetStream only (feature ingestion: at-least-once, nothing at-most-once beside it)."""
        stream = settings.jetstream
        durable = f", JetStream {stream} ({settings.jetstream_subjects})" if stream else ""
        self.display = f"NATS {settings.url} subject {settings.queue_name}{durable}"
        self._nc: Client | None = None
        self._sub: Subscription | None = None
        self._inbox: asyncio.Queue[Delivery | None] = asyncio.Queue(maxsize=settings.prefetch)
        self._fetcher: asyncio.Task[None] | None = None
        self._outstanding = 0
        self._room = asyncio.Event()
        self._stopped = False
        self._unsubscribing: asyncio.Future[None] | None = None

    async def connect(self) -> None:
        settings = self.settings
        tls = settings.tls_context()
        refused: list[Exception] = []  # what the first connect met, for its error message
        fatal = asyncio.Event()

        async def on_error(exc: Exception) -> None:
            if self._nc is None:
                refused.append(exc)
                if isinstance(exc, ssl.SSLError):  # a certificate refused is not cured by retrying
                    fatal.set()
            await _log_error(exc)

        # nats-py retries a refused FIRST connect without end when reconnects are unbounded (which a
        # running consumer wants): bound the first one, so a NATS that is down (or refusing our TLS)
        # stops the start with its reason instead of hanging silently
        connecting = asyncio.ensure_future(
            nats.connect(
                servers=[settings.url],
                user=settings.username,
                password=settings.secret(),
                name="modelwire",
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                connect_timeout=_FIRST_CONNECT_S / 2,
                error_cb=on_error,
                tls=tls,
            )
        )
        refusal = asyncio.ensure_future(fatal.wait())
        await asyncio.wait(
            {connecting, refusal}, timeout=_FIRST_CONNECT_S, return_when=asyncio.FIRST_COMPLETED
        )
        refusal.cancel()
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            if refused:
                raise ConnectionError(f"NATS refused the connection: {refused[-1]}")
            raise ConnectionError(f"no answer from NATS within {_FIRST_CONNECT_S:g} s (is it running?)")
        self._nc = nc = connecting.result()
        if self.core:
            self._sub = await nc.subscribe(
                settings.queue_name,
                queue=settings.group,
                cb=self._on_core,
                # core NATS has no flow control: past this many waiting here the client drops messages
                # (their requesters time out); JetStream is the bounded, at-least-once path
                pending_msgs_limit=max(_CORE_PENDING, 64 * settings.prefetch),
                pending_bytes_limit=_CORE_PENDING_BYTES,
            )
        if settings.jetstream:
            js = nc.jetstream()
            await self._ensure_stream(js)
            config = api.ConsumerConfig(
                durable_name=settings.group,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=settings.ack_wait_s,
                max_ack_pending=settings.prefetch,
                max_deliver=-1,  # counted here: past max_deliveries a message is dead-lettered, once
            )
            pull = await js.pull_subscribe(
                settings.jetstream_subjects, durable=settings.group, stream=settings.jetstream, config=config
            )
            self._fetcher = asyncio.create_task(self._fetch(pull), name="nats-fetch")

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        assert self.settings.jetstream is not None
        try:
            await js.stream_info(self.settings.jetstream)
        except NotFoundError:
            await js.add_stream(name=self.settings.jetstream, subjects=[self.settings.jetstream_subjects])

    async def _on_core(self, msg: Msg) -> None:
        if not self._stopped:  # the queue is bounded: a full one holds the subscription's dispatch
            await self._inbox.put(self._delivery(msg, durable=False))

    async def _fetch(self, pull: JetStreamContext.PullSubscription) -> None:
        while not self._stopped:
            room = self.settings.prefetch - self._outstanding
            if room <= 0:
                self._room.clear()
                await self._room.wait()  # every outstanding message is being answered
                continue
            try:
                messages = await pull.fetch(room, timeout=_FETCH_WAIT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as exc:  # noqa: BLE001 - the connection reconnects; keep fetching
                if self._stopped:
                    return
                logger.warning("JetStream fetch failed (%s); retrying", exc)
                await asyncio.sleep(_FETCH_WAIT_S)
                continue
            for msg in messages:
                self._outstanding += 1
                await self._inbox.put(self._delivery(msg, durable=True))

    def _delivery(self, msg: Msg, *, durable: bool) -> Delivery:
        headers = {k.lower(): v for k, v in (msg.headers or {}).items()}
        if durable:
            reply_to = headers.get("reply-to")
            deliveries = msg.metadata.num_delivered or 1
        else:
            reply_to, deliveries = msg.reply or None, 1
        return Delivery(
            body=msg.data,
            headers=headers,
            content_type=headers.get("content-type"),
            reply_to=reply_to,
            correlation_id=headers.get("correlation-id"),
            deliveries=deliveries,
            source=msg.subject,
            handle=_Handle(msg, durable),
        )

    async def deliveries(self) -> AsyncIterator[Delivery]:
        # after stop_fetching, what was already handed to this process is still answered
        while not (self._stopped and self._inbox.empty()):
            delivery = await self._inbox.get()
            if delivery is not None:
                yield delivery

    async def reply(
        self, delivery: Delivery, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        if not delivery.reply_to or self._nc is None:
            return
        headers = {**(headers or {}), "Content-Type": content_type}
        if delivery.correlation_id:
            headers["Correlation-Id"] = delivery.correlation_id
        await self._nc.publish(delivery.reply_to, body, headers=headers)

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        assert self._nc is not None
        headers = dict(delivery.handle.msg.headers or {})
        headers[ERROR_HEADER] = " ".join(reason.split())  # a header value is one line
        headers["x-modelwire-deliveries"] = str(delivery.deliveries)
        headers["x-modelwire-subject"] = delivery.source
        await self._nc.publish(self.settings.dead_letter_name, delivery.body, headers=headers)

    async def ack(self, delivery: Delivery) -> None:
        handle: _Handle = delivery.handle
        if handle.durable:
            self._outstanding -= 1
            self._room.set()
            await handle.msg.ack()

    async def retry(self, delivery: Delivery) -> None:
        handle: _Handle = delivery.handle
        if handle.durable:
            self._outstanding -= 1
            self._room.set()
            await handle.msg.nak()

    def stop_fetching(self) -> None:
        self._stopped = True
        self._room.set()
        if self._fetcher is not None:
            self._fetcher.cancel()
        if self._sub is not None:
            sub, self._sub = self._sub, None
            self._unsubscribing = asyncio.ensure_future(_quietly(sub.unsubscribe()))
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(None)

    async def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._fetcher
        if self._unsubscribing is not None:
            await self._unsubscribing
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()


async def _quietly(work: object) -> None:
    with contextlib.suppress(Exception):
        await work  # type: ignore[misc]
