"""What HTTPS adds around the REST listener: HSTS/Alt-Svc headers, the HTTP→HTTPS redirect listener, HTTP/3.

``app/listeners.py`` builds one ``HttpsExtras`` when TLS is on: ``wrap(app)`` before granian gets the app,
``start()`` after granian has bound the REST port, ``reload()`` on SIGHUP, ``stop()`` on shutdown.

``TransportHeadersMiddleware`` wraps the whole app (outside the security middleware), so every HTTPS
response, error pages included, carries ``Strict-Transport-Security`` and, with HTTP/3, ``Alt-Svc``.
``RedirectApp`` is the whole app of the optional plain-HTTP listener: it answers 308 and nothing else, so no
model is reachable without TLS. ``WebSocketRegistry`` knows the open WebSockets, to close them (1012) when
a certificate reload restarts granian's worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelwire.errors import ConfigurationError
from modelwire.protocols.http.http3 import Http3Listener
from modelwire.settings import Settings, TLSSettings

__all__ = [
    "HttpsExtras",
    "RedirectApp",
    "TransportHeadersMiddleware",
    "WebSocketRegistry",
    "granian_tls_options",
    "public_host",
]

logger = logging.getLogger("modelwire.server")


def granian_tls_options(tls: TLSSettings) -> dict[str, Any]:
    """The granian ``Server`` keyword arguments for HTTPS: TLS 1.2 minimum (rustls: modern suites only)."""
    if not tls.enabled:
        return {}
    from granian.constants import SSLProtocols

    assert tls.cert is not None
    assert tls.key is not None
    return {"ssl_cert": tls.cert, "ssl_key": tls.key, "ssl_protocol_min": SSLProtocols.tls12}


def public_host(settings: Settings) -> str:
    """The name HTTPS is reached by: ``tls.public_host``, else the bind host (a wildcard or IPv4 loopback
    address shown as ``localhost``, a name the local certificate covers)."""
    if settings.tls.public_host is not None:
        return settings.tls.public_host
    return "localhost" if settings.host in _LOCAL_NAMES else settings.host


_LOCAL_NAMES = frozenset({"127.0.0.1", "0.0.0.0", "::"})


class HttpsExtras:
    """The listeners and headers that come with ``--tls-cert``: see the module docstring."""

    def __init__(self, settings: Settings, https_port: int) -> None:
        self.settings = settings
        self.https_port = https_port
        self.redirect_port: int | None = None
        self._h3: Http3Listener | None = None
        self._redirect: Any = None
        self._redirect_task: asyncio.Task[None] | None = None
        self._websockets: WebSocketRegistry | None = None
        self._closing_ws: asyncio.TimerHandle | None = None

    def wrap(self, app: Any) -> Any:
        """``app`` with ``Strict-Transport-Security`` (and ``Alt-Svc`` with HTTP/3) on every response."""
        tls = self.settings.tls
        h3_port = self.https_port if tls.http3 else None
        self._websockets = WebSocketRegistry(app)
        return TransportHeadersMiddleware(
            self._websockets, hsts_max_age_s=tls.hsts_max_age_s, h3_port=h3_port
        )

    async def start(self, app: Any) -> None:
        """Start HTTP/3 on UDP ``https_port`` and the redirect listener, as configured."""
        tls = self.settings.tls
        host = self.settings.host
        if tls.http3:
            assert tls.cert is not None
            assert tls.key is not None
            self._h3 = Http3Listener(app, host, self.https_port, cert=tls.cert, key=tls.key)
            await self._h3.start()
        if tls.redirect_port is not None:
            await self._start_redirect(host, tls.redirect_port)

    async def _start_redirect(self, host: str, port: int) -> None:
        from granian.constants import HTTPModes, Interfaces
        from granian.server.embed import Server as GranianServer

        hold = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            hold.bind((host, port))
            self.redirect_port = int(hold.getsockname()[1])
            self._redirect = GranianServer(
                RedirectApp(self.https_port, public_host(self.settings)),
                address=host,
                port=self.redirect_port,
                interface=Interfaces.ASGINL,
                http=HTTPModes.http1,
                websockets=False,
                log_enabled=False,
            )
            self._redirect_task = asyncio.create_task(self._redirect.serve(), name="redirect-listener")
            await asyncio.sleep(0.05)  # granian binds on the loop; hold the port until it has
            if self._redirect_task.done():
                self._redirect_task.result()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot start the HTTP→HTTPS redirect listener on {host}:{port}: {exc.strerror} "
                "(pick another --tls-redirect-port)"
            ) from exc
        finally:
            hold.close()

    def reload(self, old_worker_stops_in: float) -> None:
        """After the files were checked and granian told to respawn: new HTTP/3 connections get the new
        certificate; WebSockets get a clean 1012 close before granian's old worker cuts them."""
        tls = self.settings.tls
        if self._h3 is not None and tls.cert is not None and tls.key is not None:
            self._h3.reload(tls.cert, tls.key)
        registry = self._websockets
        if registry is None:
            return

        def close_websockets() -> None:
            self._closing_ws = None
            task = asyncio.ensure_future(registry.close_all())
            task.add_done_callback(_log_closed)

        # At once (a timer alone can fire after granian already cut the old worker's sockets on a busy
        # loop, leaving clients on a silent connection), and again for any opened in the meantime.
        close_websockets()
        if self._closing_ws is None:
            delay = max(0.0, old_worker_stops_in - 0.2)
            self._closing_ws = asyncio.get_running_loop().call_later(delay, close_websockets)

    async def stop(self, grace: float) -> None:
        if self._closing_ws is not None:
            self._closing_ws.cancel()
        if self._redirect is not None and self._redirect_task is not None:
            self._redirect.stop()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._redirect_task, grace)
        if self._h3 is not None:
            await self._h3.stop(grace)

    def describe(self) -> str:
        """What the ready line says about these listeners."""
        parts = []
        if self._h3 is not None:
            parts.append(f"HTTP/3 udp:{self._h3.port}")
        if self.redirect_port is not None:
            parts.append(f"redirect http:{self.redirect_port} → https")
        return ("  " + "  ".join(parts)) if parts else ""


def _log_closed(task: asyncio.Future[int]) -> None:
    if not task.cancelled() and task.exception() is None and task.result():
        logger.info("TLS reload: closed %d WebSocket(s) with 1012 (service restart)", task.result())


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
    """Answer every HTTP request with ``308 Permanent Redirect`` to the same path on
    ``https://public_host:port`` (``tls.public_host``).

    308 (not 301) so clients repeat a POST as a POST. WebSocket upgrades are refused (403): a browser
    must open ``wss://`` itself.
    """

    def __init__(self, https_port: int, public_host: str = "localhost") -> None:
        self.https_port = https_port
        self.public_host = f"[{public_host}]" if ":" in public_host else public_host

    def location(self, scope: Scope) -> str:
        """The target on ``public_host``: the request's ``Host`` is the client's word, never followed."""
        host = self.public_host
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
