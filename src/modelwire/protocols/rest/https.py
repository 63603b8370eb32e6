"""What HTTPS adds around the REST listener: HSTS/Alt-Svc headers, the HTTP→HTTPS redirect listener, HTTP/3.

``server.py`` builds one ``HttpsExtras`` when TLS is on: ``wrap(app)`` before granian gets the app,
``start()`` after granian has bound the REST port, ``reload()`` on SIGHUP, ``stop()`` on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from modelwire.errors import ConfigurationError
from modelwire.protocols.rest.http3 import Http3Listener
from modelwire.security.transport import RedirectApp, TransportHeadersMiddleware, WebSocketRegistry
from modelwire.settings import Settings

__all__ = ["HttpsExtras"]

logger = logging.getLogger("modelwire.server")


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
                RedirectApp(self.https_port),
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
