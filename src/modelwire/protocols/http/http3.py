"""HTTP/3 (QUIC over UDP) for the REST app: hypercorn's QUIC server on the event loop granian and gRPC share.

granian has no HTTP/3, so ``--http3`` adds hypercorn + aioquic on UDP at the REST port number (TCP stays
granian's). Only hypercorn's ``UDPServer`` is used, on a socket bound here: no TCP listener, no lifespan,
no signal handlers of its own. The REST app is the same object granian serves, so the security
middleware, limits and Alt-Svc/HSTS headers apply unchanged. docs/decisions.md has the measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

from modelwire.errors import ConfigurationError

__all__ = ["Http3Listener"]


class Http3Listener:
    """Serve ``app`` over HTTP/3 on ``host:port`` (UDP) with the given certificate.

    >>> listener = Http3Listener(app, "127.0.0.1", 8443, cert=Path("server.pem"), key=Path("server-key.pem"))
    >>> await listener.start(); ...; await listener.stop(grace=5)
    """

    def __init__(self, app: Any, host: str, port: int, *, cert: Path, key: Path) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.cert = cert
        self.key = key
        self._udp: Any = None
        self._transport: asyncio.DatagramTransport | None = None
        self._context: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind the UDP port and start answering QUIC."""
        try:
            import aioquic  # noqa: F401 - hypercorn imports it only once a QUIC packet arrives
            from hypercorn.asyncio.udp_server import UDPServer
            from hypercorn.asyncio.worker_context import WorkerContext
            from hypercorn.config import Config
            from hypercorn.utils import wrap_app
        except ImportError as exc:
            raise ConfigurationError(
                f"--http3 needs the 'http3' extra ({exc.name or exc} is not installed): "
                "pip install 'modelwire[http3]'"
            ) from exc

        logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic logs every handshake at INFO
        config = Config()
        config.certfile, config.keyfile = str(self.cert), str(self.key)
        config.include_server_header = False
        config.include_date_header = True
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # one per --workers process
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"cannot listen for HTTP/3 on UDP {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self.port = sock.getsockname()[1]
        self._context = WorkerContext(None)
        app = wrap_app(self.app, config.wsgi_max_body_size, "asgi")
        transport, self._udp = await loop.create_datagram_endpoint(
            lambda: UDPServer(app, loop, config, self._context, {}), sock=sock
        )
        self._transport = transport
        self._task = asyncio.create_task(self._udp.run(), name="http3-listener")

    def reload(self, cert: Path, key: Path) -> None:
        """Hand new connections the new certificate; open QUIC connections keep theirs."""
        protocol = getattr(self._udp, "protocol", None)
        if protocol is not None:
            protocol.quic_config.load_cert_chain(certfile=str(cert), keyfile=str(key))

    async def stop(self, grace: float) -> None:
        """Refuse new work, give open requests ``grace`` seconds, then close the socket."""
        if self._task is None:
            return
        await self._context.terminated.set()
        for _ in range(int(grace / 0.05)):
            protocol = getattr(self._udp, "protocol", None)
            if protocol is None or protocol.idle:
                break
            await asyncio.sleep(0.05)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        if self._transport is not None:
            self._transport.close()
        self._task = None
