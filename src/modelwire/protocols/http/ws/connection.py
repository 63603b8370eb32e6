"""One accepted WebSocket: read ops, pipeline predictions through the data plane, push bus events.

How it works. A few tasks share the connection:

- the *replier* runs ``DataPlane.stream(self._requests(), max_pending=ws.max_inflight)`` and sends each
  answer the moment it is ready. The stream pulls the next request from ``_requests()``, which reads the
  socket one message at a time, answers a bad message at once (the socket stays open) and handles
  (un)subscribe and ping in order. The stream pulls only while fewer than ``ws.max_inflight`` requests
  of this connection are unanswered, so at the cap nothing reads the socket: a client that floods meets
  TCP backpressure, not a growing buffer. One that never reads blocks only its own replier (granian's
  send waits for the socket), which stops its own reading in turn, never another connection;
- the *pump*, once the client subscribes, sends bus events; when it cannot keep up the bus drops it, and
  the connection ends with an error message and close 1013;
- the *keeper* sends ``{"op": "ping"}`` after ``ws.ping_interval_s`` without outbound traffic and closes
  with 1000 after ``ws.idle_timeout_s`` without a message either way (a peer that stopped reading
  counts as idle: its sends never complete).

The first task to decide the connection is over records the close code (``_end``); ``run`` then stops the
rest and closes. Server shutdown (``services.closing``) is the graceful path: stop reading, let in-flight
predictions finish and be sent, close with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

from modelwire.core.dataplane import CallContext
from modelwire.errors import InternalError, InvalidInputError, ModelwireError, SlowConsumerError
from modelwire.events.bus import Subscription
from modelwire.events.topics import MAX_TOPICS
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.ws import errors, framing
from modelwire.protocols.http.ws.channel import Channel, oversize
from modelwire.protocols.http.ws.throttle import MessageThrottle, Verdict

__all__ = ["Connection"]

logger = logging.getLogger("modelwire.ws")

_FINAL_MESSAGE_TIMEOUT_S = 1.0


class _Gone(Exception):
    """The peer vanished mid-send: the task stops, nothing more to close."""


@dataclass(frozen=True, slots=True)
class _Verdict:
    code: int | None  # None: the peer closed or vanished, no close frame to send
    reason: str = ""
    final: Mapping[str, Any] | None = None  # one last message to try before closing


class Connection:
    """The session behind ``/v1/ws`` and ``/v1/models/{name}/ws`` after the handshake was accepted."""

    def __init__(
        self,
        services: Facades,
        channel: Channel,
        codec: framing.Codec,
        model: str,
        *,
        fixed_model: bool,
    ) -> None:
        self.services = services
        self.settings = services.settings.ws
        self.channel = channel
        self.codec = codec
        self.model = model
        self.fixed_model = fixed_model
        self._subscription: Subscription | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._verdict: _Verdict | None = None
        self._draining = False
        self._ended = asyncio.Event()
        self.throttle: MessageThrottle | None = None
        """The per-connection message rate (``throttle.py``), when rate limits are on."""
        self.traffic_key: str | None = None
        """The handshake's ``Traffic-Key`` (a sticky canary split follows it)."""

    async def run(self) -> None:
        replier = self._spawn(self._reply())
        self._spawn(self._keep())
        closing = asyncio.ensure_future(self.services.closing.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait((closing, ended), return_when=asyncio.FIRST_COMPLETED)
            if self._verdict is None:  # shutdown: finish what was asked, then go
                await self._drain(replier)
                self._end(errors.GOING_AWAY, "server shutting down")
        finally:
            closing.cancel()
            ended.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._subscription is not None:
                self._subscription.close()
            await self._close()

    async def _drain(self, replier: asyncio.Task[None]) -> None:
        # Stop reading (a message already read is still answered); the stream then ends once what is in
        # flight has been answered, and the pump once the bus has closed.
        self._draining = True
        self.channel.stop_receiving()
        pending = [replier] + ([self._pump] if self._pump is not None else [])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.services.settings.limits.shutdown_grace_s):
                await asyncio.wait(pending)

    async def _close(self) -> None:
        verdict = self._verdict
        if verdict is None or verdict.code is None:
            return
        if verdict.final is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FINAL_MESSAGE_TIMEOUT_S):
                    await self.channel.send(self.codec.encode(verdict.final))
        await self.channel.close(verdict.code, errors.trim_reason(verdict.reason))

    def _end(self, code: int | None, reason: str = "", final: Mapping[str, Any] | None = None) -> None:
        if self._verdict is None:
            self._verdict = _Verdict(code, reason, final)
        self._ended.set()

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._guard(work))
        self._tasks.append(task)
        return task

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except _Gone:
            self._end(None)
        except ModelwireError as exc:
            self._end(*errors.close_for(exc))
        except Exception as exc:
            err = InternalError()
            logger.error("WebSocket connection failed [error_id=%s]", err.error_id, exc_info=exc)
            self._end(*errors.close_for(err))

    async def _send(self, message: Mapping[str, Any], *, activity: bool = True) -> None:
        if not await self.channel.send(self.codec.encode(message), activity=activity):
            raise _Gone

    # -- the tasks -----------------------------------------------------------------------------------

    async def _requests(self) -> AsyncIterator[tuple[Any, ...]]:
        """The socket's predictions, read one message at a time as the stream asks for the next one.

        The data plane pulls from here only while the connection is under ``ws.max_inflight``, so at the
        cap nothing reads the socket. Other messages are answered here, in order.
        """
        limit = self.settings.max_message_bytes
        while not self._draining:
            data = await self.channel.receive()
            if data is None:
                if not self._draining:
                    self._end(None)
                return
            size = oversize(data, limit)
            if size is not None:
                self._end(errors.MESSAGE_TOO_BIG, f"the message is {size} bytes; the limit is {limit}")
                return
            if isinstance(data, bytes) != self.codec.binary:
                kind = "binary" if isinstance(data, bytes) else "text"
                self._end(
                    errors.UNSUPPORTED_DATA,
                    f"{kind} frame refused: {self.codec.subprotocol or framing.JSON} "
                    f"takes {self.codec.frame_kind} frames",
                )
                return
            op = self.codec.decode(data)
            if self.throttle is not None and (verdict := self.throttle.check()) is not Verdict.ALLOW:
                if verdict is Verdict.CLOSE:
                    self._end(errors.POLICY_VIOLATION, self.throttle.close_reason)
                    return
                assert self.throttle.error is not None
                await self._send(framing.error(op.id, self.throttle.error))
                continue
            if isinstance(op, framing.Predict) and (request := self._route(op)) is not None:
                yield request
            else:
                await self._handle(op)

    def _route(self, op: framing.Predict) -> tuple[Any, ...] | None:
        if op.model is None and op.version is None:
            return (op.id, op.field), op.instance
        if self.fixed_model and op.model not in (None, self.model):
            return None
        return (op.id, op.field), op.instance, op.model or self.model, op.version

    async def _handle(self, op: framing.Op | framing.Malformed) -> None:
        if isinstance(op, framing.Malformed):
            await self._send(framing.error(op.id, op.error))
        elif isinstance(op, framing.Predict):  # one _route() refused
            error = InvalidInputError(
                f"this socket serves model {self.model!r}; use /v1/ws to name a model per message",
                field="$.model",
            )
            await self._send(framing.error(op.id, error))
        elif isinstance(op, framing.Subscribe):
            await self._subscribe(op)
        elif isinstance(op, framing.Unsubscribe):
            if self._subscription is not None:
                self._subscription.remove(op.topic)
            await self._send(framing.ack("unsubscribed", op.topic, op.id))
        else:
            await self._send(framing.pong(op.id))

    async def _subscribe(self, op: framing.Subscribe) -> None:
        patterns = self._subscription.patterns if self._subscription is not None else set()
        if op.topic not in patterns and len(patterns) >= MAX_TOPICS:
            error = InvalidInputError(f"at most {MAX_TOPICS} topics per socket", field="$.topic")
            await self._send(framing.error(op.id, error))
            return
        try:  # the bus checks the topic's scope (security/scopes.py), for every wire
            if self._subscription is None:
                self._subscription = self.services.events.subscribe([op.topic])
                self._pump = self._spawn(self._push(self._subscription))
            else:
                self._subscription.add(op.topic)
        except ModelwireError as exc:
            await self._send(framing.error(op.id, exc))
            return
        await self._send(framing.ack("subscribed", op.topic, op.id))

    async def _reply(self) -> None:
        versions: dict[Any, str] = {}  # which version answered each request, filled by the DataPlane
        results = self.services.dataplane.stream(
            self.model,
            self._requests(),
            ctx=CallContext("ws", traffic_key=self.traffic_key),
            max_pending=self.settings.max_inflight,
            path=lambda key: f"$.{key[1]}",  # the request's key is (its id, the field holding the item)
            versions=versions,
        )
        async with contextlib.aclosing(results):  # leaving early cancels what is still in flight
            async for key, result in results:
                request_id = key[0]
                version = versions.pop(key, None)
                if isinstance(result, ModelwireError):
                    await self._send(framing.error(request_id, result))
                else:
                    await self._send(framing.prediction(request_id, result, version))

    async def _push(self, subscription: Subscription) -> None:
        try:
            async for event in subscription:
                await self._send(framing.event(event))
        except SlowConsumerError as exc:
            self._end(*errors.close_for(exc), final=framing.error(None, exc))

    async def _keep(self) -> None:
        channel = self.channel
        clock = asyncio.get_running_loop().time
        ping_every, idle_after = self.settings.ping_interval_s, self.settings.idle_timeout_s
        while True:
            now = clock()
            if now - channel.active_at >= idle_after:
                self._end(errors.NORMAL, f"idle timeout: no message for {idle_after:g} s")
                return
            if now - channel.wrote_at >= ping_every and not channel.sending:
                # Bounded: a ping stuck behind a peer that stopped reading must not stall the idle check.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ping_every):
                        await self._send(framing.ping(time.time()), activity=False)
            next_ping = now + ping_every if channel.sending else channel.wrote_at + ping_every
            await asyncio.sleep(max(0.01, min(channel.active_at + idle_after, next_ping) - clock()))
