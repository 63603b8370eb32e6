"""The listeners a role can open: REST (granian, embedded on this event loop; HTTPS extras when TLS is on)
and gRPC (grpc.aio, same loop). Each has the same four steps the lifecycle drives: ``start``, ``drain``
(stop taking new work; in-flight work finishes within the grace period), ``reload`` (SIGHUP: the TLS
certificate) and the port it bound.

Port 0 and shared ports: granian builds its own socket, so ``reserve`` first probes the port (fail fast
with a clear message when it is taken), then holds it with an SO_REUSEPORT socket, bound but not
listening, until granian has bound the same port.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any

from modelwire.app.services import Services
from modelwire.errors import ConfigurationError
from modelwire.protocols.grpc.server import GrpcListener, start_grpc_server
from modelwire.protocols.grpc.tls import server_credentials
from modelwire.protocols.http.app import create_app, create_ops_app
from modelwire.protocols.http.https import HttpsExtras, granian_tls_options
from modelwire.security.tls import TLSMaterial
from modelwire.settings import Settings

__all__ = ["GrpcPort", "RestPort", "check_port", "fmt_host", "reserve"]

logger = logging.getLogger("modelwire.server")
RESPAWN_S = 1.0  # TLS reload: granian's new worker serves this long next to the old one before it stops


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def fmt_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def check_port(host: str, port: int, what: str) -> int:
    """Fail fast, with a clear message, when ``host:port`` is taken. Returns the port (picked when 0)."""
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"cannot start the {what} listener: {host}:{port} is already in use "
                f"(another modelwire? pick another port with --{what}-port)"
            ) from exc
        raise ConfigurationError(f"cannot bind the {what} listener to {host}:{port}: {exc.strerror}") from exc
    finally:
        probe.close()


def reserve(host: str, port: int) -> socket.socket:
    """Hold ``port`` (bound, not listening, SO_REUSEPORT) until the real listeners have bound it."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class GrpcPort:
    """The gRPC listener of a role: every modelwire service, health and reflection (``protocols/grpc``)."""

    name = "gRPC"

    def __init__(self, settings: Settings, port: int, tls: TLSMaterial | None) -> None:
        self.settings = settings
        self.port = port
        self.tls = tls
        self.listener: GrpcListener | None = None

    async def start(self, services: Services) -> None:
        self.listener = await start_grpc_server(
            services,
            self.settings.host,
            self.port,
            reuse_port=True,
            credentials=server_credentials(self.tls) if self.tls is not None else None,
        )
        self.port = self.listener.port

    async def not_serving(self) -> bool:
        """Tell health watchers (gateways) NOT_SERVING at once; calls are still served. True when someone
        watches, i.e. routes calls here by this health."""
        if self.listener is None:
            return False
        await self.listener.health.set_serving(False)
        return self.listener.health.watchers > 0

    async def drain(self, grace: float) -> None:
        if self.listener is not None:
            await self.listener.stop(grace)

    def reload(self) -> None:
        """Nothing to do: the credentials ask ``TLSMaterial`` before each new handshake."""

    def describe(self) -> str:
        tls = "" if self.tls is None else (" (mutual TLS)" if self.tls.mutual else " (TLS)")
        return f"gRPC{tls} {fmt_host(self.settings.host)}:{self.port}"


class RestPort:
    """The HTTP listener of a role: REST (both APIs), WebSocket, SSE, jobs, the dashboard, ``/metrics``;
    HTTP/1.1 and h2c, or HTTPS with h2 by ALPN, HSTS, HTTP/3 and the redirect listener (``https.py``).
    With ``ops``: only health and ``/metrics`` over HTTP/1.1 (or HTTPS), for ``consume`` and ``worker``."""

    name = "REST"

    def __init__(self, settings: Settings, port: int, tls: TLSMaterial | None, *, ops: bool = False) -> None:
        self.settings = settings
        self.port = port
        self.tls = tls
        self.ops = ops
        """Only health and ``/metrics`` (``create_ops_app``), for roles with no REST face."""
        self._http: Any = None
        self._task: asyncio.Task[None] | None = None
        self._https: HttpsExtras | None = None

    async def start(self, services: Services) -> None:
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings, HTTP2Settings
        from granian.server.embed import Server as GranianServer

        settings = self.settings
        app: Any = create_ops_app(services) if self.ops else create_app(services)
        if self.tls is not None and not self.ops:
            self._https = HttpsExtras(settings, self.port)
            app = self._https.wrap(app)
        self._http = GranianServer(
            app,
            address=settings.host,
            port=self.port,
            interface=Interfaces.ASGINL,
            http=HTTPModes.auto if settings.http.http2 and not self.ops else HTTPModes.http1,
            websockets=not self.ops,
            backlog=settings.http.backlog,
            # Slow-loris and header-size guards (docs/limits.md): headers must arrive in time
            # and fit (431 past the size, on HTTP/1.1 and HTTP/2; a timeout closes the socket).
            http1_settings=HTTP1Settings(
                keep_alive=True,
                header_read_timeout=int(settings.limits.header_read_timeout_s * 1000),
                max_buffer_size=settings.limits.max_header_bytes,
            ),
            http2_settings=HTTP2Settings(
                max_concurrent_streams=1000,
                max_headers_size=settings.limits.max_header_bytes,
                keep_alive_interval=max(1, round(settings.limits.h2_ping_interval_s * 1000)),
                keep_alive_timeout=settings.limits.h2_ping_timeout_s,
            ),
            log_enabled=False,
            log_access=False,
            **granian_tls_options(settings.tls),
        )
        self._http.respawn_interval = RESPAWN_S  # SIGHUP: the old worker stops this long after
        self._task = asyncio.create_task(self._http.serve(), name="rest-listener")
        await asyncio.sleep(0.05)  # let granian bind before the reservation is released
        if self._task.done():
            self._task.result()
        if self._https is not None:
            await self._https.start(app)

    async def drain(self, grace: float) -> None:
        waits: list[asyncio.Future[Any]] = []
        if self._http is not None and self._task is not None:
            self._http.stop()
            waits.append(self._task)
        if self._https is not None:
            waits.append(asyncio.ensure_future(self._https.stop(grace)))
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=grace)
            for task in pending:
                logger.warning("the REST listener did not drain within %.1f s; closing it", grace)
                task.cancel()

    def reload(self) -> None:
        if self._http is not None:
            self._http.reload()  # granian respawns its worker, which reads the files again
        if self._https is not None:
            self._https.reload(old_worker_stops_in=RESPAWN_S)

    def describe(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        if self.ops:
            return f"health and metrics {scheme}://{fmt_host(self.settings.host)}:{self.port}"
        return f"REST {scheme}://{fmt_host(self.settings.host)}:{self.port}"

    def describe_extras(self) -> str:
        """HTTP/3 and the redirect listener, when on (the ready line puts them last)."""
        return self._https.describe() if self._https is not None else ""

    @property
    def redirect_port(self) -> int | None:
        """The port of the HTTP→HTTPS redirect listener, when ``--tls-redirect-port`` asked for one."""
        return self._https.redirect_port if self._https is not None else None
