"""The WebSocket routes: ``/v1/ws``, ``/v1/models/{name}/ws`` and the diagnostic echo ``/v1/ws/echo``.

The handshake is where a connection is refused, with an HTTP status and the REST error body (never
accepted-then-closed): an unknown-only subprotocol offer (400), an unknown model (404), a model that is not
ready, a server shutting down or at ``ws.max_connections`` (503 with ``Retry-After``), a principal at
``rate_limits.ws_connections_per_principal`` (429 with ``Retry-After``, ``throttle.py``). After it, the
session is ``connection.Connection``'s. A handshake on a path no route serves (``/v1/ws/echo`` while
``ws.echo`` is off, a typo) is refused with 404 and the body an unknown REST route gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.routing import WebSocketRoute

from modelwire.core.dataplane import TRAFFIC_KEY_HEADER
from modelwire.errors import (
    InternalError,
    ModelwireError,
    NotFoundError,
    OverloadedError,
    UnavailableError,
)
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.ws import errors, framing
from modelwire.protocols.http.ws.channel import Channel, Receive, Send, oversize
from modelwire.protocols.http.ws.connection import Connection
from modelwire.protocols.http.ws.throttle import ConnectionCounter, MessageThrottle
from modelwire.security.principal import ANONYMOUS, current_principal

__all__ = ["WebSocketEndpoints", "add_ws_routes"]

logger = logging.getLogger("modelwire.ws")

Scope = MutableMapping[str, Any]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class _ASGI:
    """A raw ASGI endpoint for Starlette's router (a bound method would be wrapped as a session)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


class WebSocketEndpoints:
    """The handshakes, bound to one ``Facades``; counts open connections for ``ws.max_connections``."""

    def __init__(self, services: Facades) -> None:
        self.services = services
        self.settings = services.settings.ws
        self.default_model = services.settings.effective_models()[0].name
        self.open = 0
        self.rate_limits = services.settings.rate_limits
        self.limited = services.security.limiter.enabled  # per-principal and per-message limits
        self.per_principal = ConnectionCounter(self.rate_limits.ws_connections_per_principal)

    async def default(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._session(scope, receive, send, self.default_model, fixed_model=False)

    async def model(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._session(scope, receive, send, scope["path_params"]["name"], fixed_model=True)

    def _admit(self, channel: Channel, model: str, principal: str) -> str | None:
        """The subprotocol to accept with; raises the error that refuses the handshake."""
        if self.services.closing.is_set():
            raise UnavailableError("the server is shutting down", retry_after_s=1.0)
        subprotocol = framing.select_subprotocol(channel.subprotocols)
        self.services.dataplane.resolve_version(model, require_ready=True)  # unknown (404), unready (503)
        if self.open >= self.settings.max_connections:
            raise OverloadedError(
                f"the server holds its limit of {self.settings.max_connections} WebSocket connections",
                retry_after_s=1.0,
            )
        if self.limited:
            self.per_principal.check(principal)
        return subprotocol

    async def _session(
        self, scope: Scope, receive: Receive, send: Send, model: str, *, fixed_model: bool
    ) -> None:
        channel = Channel(scope, receive, send)
        if not await channel.connect():
            return
        principal = _principal_id(scope)
        try:
            subprotocol = self._admit(channel, model, principal)
        except ModelwireError as exc:
            await channel.refuse(exc)
            return
        metrics = self.services.metrics
        self.open += 1
        self.per_principal.opened(principal)
        metrics.connection_opened("ws")
        try:
            if await channel.accept(subprotocol):
                codec = framing.Codec(subprotocol, max_depth=self.services.settings.limits.max_json_depth)
                connection = Connection(self.services, channel, codec, model, fixed_model=fixed_model)
                connection.traffic_key = _traffic_key(scope)
                if self.limited:
                    rate, burst = self.rate_limits.ws_messages_per_s, self.rate_limits.ws_message_burst
                    connection.throttle = MessageThrottle(rate, burst, asyncio.get_running_loop().time)
                await connection.run()
        finally:
            self.open -= 1
            self.per_principal.closed(principal)
            metrics.connection_closed("ws")

    async def echo(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send every message back as it came (Autobahn's echo); same stack, size limit and shutdown."""
        channel = Channel(scope, receive, send)
        if not await channel.connect():
            return
        if self.services.closing.is_set():
            await channel.refuse(UnavailableError("the server is shutting down", retry_after_s=1.0))
            return
        if not await channel.accept(None):
            return
        loop = asyncio.ensure_future(self._echo(channel))
        closing = asyncio.ensure_future(self.services.closing.wait())
        try:
            await asyncio.wait((loop, closing), return_when=asyncio.FIRST_COMPLETED)
            verdict = loop.result() if loop.done() else (errors.GOING_AWAY, "server shutting down")
        except Exception as exc:
            err = InternalError()
            logger.error("WebSocket echo failed [error_id=%s]", err.error_id, exc_info=exc)
            verdict = errors.close_for(err)
        finally:
            loop.cancel()
            closing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        if verdict is not None:
            await channel.close(*verdict)

    async def _echo(self, channel: Channel) -> tuple[int, str] | None:
        limit = self.settings.max_message_bytes
        while (data := await channel.receive()) is not None:
            size = oversize(data, limit)
            if size is not None:
                return errors.MESSAGE_TOO_BIG, f"the message is {size} bytes; the limit is {limit}"
            if not await channel.send(data):
                return None
        return None


class _NotFound:
    """The router's fallback: a WebSocket handshake on no route is refused with 404 and the JSON error body.

    Starlette's own fallback closes before accepting, which a client sees as a bare 403.
    """

    def __init__(self, fallback: Handler) -> None:
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.fallback(scope, receive, send)
            return
        channel = Channel(scope, receive, send)
        if await channel.connect():
            await channel.refuse(NotFoundError(f"no WebSocket route {scope['path']}"))


def _principal_id(scope: Scope) -> str:
    """Who holds the socket: the principal the security middleware set, else the client's address."""
    principal = current_principal()
    if principal is not ANONYMOUS:
        return principal.id
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


def add_ws_routes(app: FastAPI, services: Facades) -> None:
    """Register the WebSocket routes (the echo only with ``ws.echo``); any other path is refused with 404."""
    endpoints = WebSocketEndpoints(services)
    routes = [
        WebSocketRoute("/v1/ws", _ASGI(endpoints.default), name="ws"),
        WebSocketRoute("/v1/models/{name}/ws", _ASGI(endpoints.model), name="model_ws"),
    ]
    if services.settings.ws.echo:
        routes.append(WebSocketRoute("/v1/ws/echo", _ASGI(endpoints.echo), name="ws_echo"))
    app.router.routes.extend(routes)
    app.router.default = _NotFound(app.router.default)


def _traffic_key(scope: Scope) -> str | None:
    """The handshake's ``Traffic-Key`` header: the key a ``"sticky": "header"`` split follows."""
    wanted = TRAFFIC_KEY_HEADER.encode()
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None
