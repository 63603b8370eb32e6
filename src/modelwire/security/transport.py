"""Transport-level ASGI pieces for HTTPS: response headers on the TLS listener, the HTTP→HTTPS redirect app.

``server.py`` wraps the REST app (outside the security middleware) in ``TransportHeadersMiddleware`` when TLS
is on, so every HTTPS response, error pages included, carries ``Strict-Transport-Security`` and, with HTTP/3,
``Alt-Svc``. ``RedirectApp`` is the whole app of the optional plain-HTTP listener: it answers 308 and nothing
else, so no model is reachable without TLS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["RedirectApp", "TransportHeadersMiddleware", "WebSocketRegistry"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TransportHeadersMiddleware:
    """Add ``Strict-Transport-Security`` (and ``Alt-Svc`` when HTTP/3 is served) to every HTTP response.

    >>> app = TransportHeadersMiddleware(app, hsts_max_age_s=31536000, h3_port=8443)
    """

    def __init__(self, app: ASGIApp, *, hsts_max_age_s: int, h3_port: int | None = None) -> None:
        self.app = app
        headers = [(b"strict-transport-security", f"max-age={hsts_max_age_s}".encode())]
        if h3_port is not None:
            headers.append((b"alt-svc", f'h3=":{h3_port}"; ma=86400'.encode()))
        self._headers = headers
        self._names = {name for name, _ in headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in self._names]
                message["headers"] = [*kept, *self._headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _TrackedWebSocket:
    """One accepted WebSocket that ``WebSocketRegistry.close_all`` can close from outside the app."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.accepted = False
        self.closed_code: int | None = None
        self._sending = asyncio.Lock()  # a close must not interleave with a frame the app is sending
        self._pending: asyncio.Future[Message] | None = None

    async def receive(self) -> Message:
        if self.closed_code is not None:
            return {"type": "websocket.disconnect", "code": self.closed_code}
        # granian sends a close frame only once no receive is pending, so close() cancels this one
        self._pending = pending = asyncio.ensure_future(self._receive())
        try:
            return await pending
        except asyncio.CancelledError:
            if self.closed_code is None or not pending.cancelled():
                raise
            return {"type": "websocket.disconnect", "code": self.closed_code}
        finally:
            self._pending = None

    async def send(self, message: Message) -> None:
        async with self._sending:
            if self.closed_code is not None:
                return  # closed under the app: what it still sends has nowhere to go
            if message["type"] == "websocket.accept":
                self.accepted = True
            await self._send(message)

    async def close(self, code: int, reason: str) -> None:
        async with self._sending:
            if self.closed_code is None and self.accepted:
                self.closed_code = code
                if self._pending is not None:
                    self._pending.cancel()
                await self._send({"type": "websocket.close", "code": code, "reason": reason})


class WebSocketRegistry:
    """Know the open WebSockets, to close them cleanly when their listener is about to go away.

    A TLS reload replaces granian's worker; the old worker cuts its upgraded sockets without a close frame
    when it stops (plain requests and SSE streams finish normally). ``close_all`` sends 1012 ("service
    restart": reconnect) just before that, so clients see a clean close instead of a dead socket.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._open: set[_TrackedWebSocket] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        tracked = _TrackedWebSocket(receive, send)
        self._open.add(tracked)
        try:
            await self.app(scope, tracked.receive, tracked.send)
        finally:
            self._open.discard(tracked)

    @property
    def open_count(self) -> int:
        return sum(1 for ws in self._open if ws.accepted and ws.closed_code is None)

    async def close_all(self, code: int = 1012, reason: str = "TLS certificate reloaded: reconnect") -> int:
        """Close every accepted WebSocket with ``code``; returns how many were closed."""
        targets = [ws for ws in self._open if ws.accepted and ws.closed_code is None]
        for ws in targets:
            try:
                await ws.close(code, reason)
            except Exception:  # noqa: BLE001 - a socket that is already gone needs no close
                ws.closed_code = code
        return len(targets)


class RedirectApp:
    """Answer every HTTP request with ``308 Permanent Redirect`` to the same path on ``https://host:port``.

    308 (not 301) so clients repeat a POST as a POST. WebSocket upgrades are refused (403): a browser
    must open ``wss://`` itself.
    """

    def __init__(self, https_port: int) -> None:
        self.https_port = https_port

    def location(self, scope: Scope) -> str:
        host = "localhost"
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1")
                break
        host = host[: host.index("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]
        path = scope.get("raw_path") or scope.get("path", "/").encode()
        query = scope.get("query_string", b"")
        target = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{host}{port}{target}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return
        body = b"Use HTTPS.\n"
        await send(
            {
                "type": "http.response.start",
                "status": 308,
                "headers": [
                    (b"location", self.location(scope).encode("latin-1")),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
