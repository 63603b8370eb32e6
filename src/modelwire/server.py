"""The composition root: settings in, services built once, every listener started, signals owned here.

One process serves REST (granian, embedded on this event loop; HTTP/1.1 and HTTP/2, cleartext or over TLS
with HSTS, plus HTTP/3 and an HTTPS redirect listener when asked: protocols/rest/https.py) and gRPC
(grpc.aio, same loop, TLS or mutual TLS) over the same ``Services``. SIGHUP reloads the TLS certificate.
``--workers N`` runs N such processes sharing the ports with SO_REUSEPORT, each with its own model copy
and batcher; the parent only supervises them (and forwards SIGHUP).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from modelwire.errors import ConfigurationError
from modelwire.observability.logs import configure_logging
from modelwire.security.policy import check_exposure
from modelwire.services import Services
from modelwire.settings import Settings

__all__ = ["Server", "run"]

logger = logging.getLogger("modelwire.server")
_RESPAWN_S = 1.0  # TLS reload: granian's new worker serves this long next to the old one before it stops


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


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


def _reserve(host: str, port: int) -> socket.socket:
    """Hold ``port`` (bound, not listening, SO_REUSEPORT) until the real listeners have bound it."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Server:
    """REST + gRPC over one ``Services``, on the running event loop.

    >>> server = Server(Settings(http_port=0, grpc_port=0))   # no side effects until start()
    """

    def __init__(
        self,
        settings: Settings,
        *,
        services: Services | None = None,
        shared_ports: bool = False,
        rest: bool = True,
    ) -> None:
        self.settings = settings
        self.rest = rest
        """False: gRPC only (``modelwire model-service``): no REST, WebSocket or SSE listener."""
        self.services = services
        self.http_port: int = settings.http_port
        self.grpc_port: int = settings.grpc_port
        self._shared_ports = shared_ports
        self._http: Any = None
        self._http_task: asyncio.Task[None] | None = None
        self._grpc: Any = None
        self._tls: Any = None  # TLSMaterial when --tls-cert/--tls-key are given
        self._https: Any = None  # HttpsExtras: HSTS/Alt-Svc headers, HTTP/3, the redirect listener
        self._stopped = asyncio.Event()

    async def start(self, progress: Callable[[str, float], None] | None = None) -> None:
        """Build and load the services, then bind and start both listeners."""
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings, HTTP2Settings
        from granian.server.embed import Server as GranianServer

        from modelwire.protocols.grpc.server import start_grpc_server
        from modelwire.protocols.rest.app import create_app
        from modelwire.protocols.rest.https import HttpsExtras
        from modelwire.security.tls import TLSMaterial, granian_tls_options

        settings = self.settings
        check_exposure(settings)  # before binding anything: auth off on a public address
        reserved: list[socket.socket] = []
        if not self._shared_ports and self.rest:
            self.http_port = check_port(settings.host, settings.http_port, "http")
            self.grpc_port = check_port(settings.host, settings.grpc_port, "grpc")
            if self.http_port == self.grpc_port:
                raise ConfigurationError("--http-port and --grpc-port must differ")
            reserved.append(_reserve(settings.host, self.http_port))
        if self.services is None:
            self.services = await asyncio.to_thread(Services.build, settings, progress=progress)
        if settings.tls.enabled:
            self._tls = TLSMaterial(settings.tls)
        await self.services.start()
        try:
            self._grpc = await start_grpc_server(
                self.services,
                settings.host,
                self.grpc_port,
                reuse_port=True,
                credentials=self._tls.grpc_credentials() if self._tls is not None else None,
            )
            self.grpc_port = self._grpc.port
            if self.rest:
                app: Any = create_app(self.services)
                if self._tls is not None:
                    self._https = HttpsExtras(settings, self.http_port)
                    app = self._https.wrap(app)
                self._http = GranianServer(
                    app,
                    address=settings.host,
                    port=self.http_port,
                    interface=Interfaces.ASGINL,
                    http=HTTPModes.auto if settings.http.http2 else HTTPModes.http1,
                    websockets=True,
                    backlog=settings.http.backlog,
                    # Slow-loris and header-size guards (docs/limits.md): headers must arrive in time
                    # and fit (431 past the size, on HTTP/1.1 and HTTP/2; a timeout closes the socket).
                    http1_settings=HTTP1Settings(
                        keep_alive=True,
                        header_read_timeout=int(settings.limits.header_read_timeout_s * 1000),
                        max_buffer_size=settings.limits.max_header_bytes,
                    ),
                    http2_settings=HTTP2Settings(
                        max_concurrent_streams=1000, max_headers_size=settings.limits.max_header_bytes
                    ),
                    log_enabled=False,
                    log_access=False,
                    **granian_tls_options(settings.tls),
                )
                self._http.respawn_interval = _RESPAWN_S  # SIGHUP: the old worker stops this long after
                self._http_task = asyncio.create_task(self._http.serve(), name="rest-listener")
                await asyncio.sleep(0.05)  # let granian bind before the reservation is released
                if self._http_task.done():
                    self._http_task.result()
                if self._https is not None:
                    await self._https.start(app)
        finally:
            for sock in reserved:
                sock.close()
        if not self.rest:
            host = _fmt_host(settings.host)
            logger.info("modelwire ready: gRPC %s:%d (REST off)  (pid %d)", host, self.grpc_port, os.getpid())
            return
        logger.info(
            "modelwire ready: REST %s://%s:%d  gRPC%s %s:%d%s  (pid %d)",
            "https" if self._tls is not None else "http",
            _fmt_host(settings.host),
            self.http_port,
            "" if self._tls is None else (" (mutual TLS)" if self._tls.mutual else " (TLS)"),
            _fmt_host(settings.host),
            self.grpc_port,
            self._https.describe() if self._https is not None else "",
            os.getpid(),
        )

    def reload_tls(self) -> bool:
        """SIGHUP: take the certificate and key in the files now, without dropping connections.

        A bad pair is logged and refused; the listeners keep the current one. See security/tls.py.
        """
        if self._tls is None:
            logger.info("SIGHUP ignored: TLS is off")
            return False
        if not self._tls.reload():
            return False
        if self._http is not None:
            self._http.reload()  # granian respawns its worker, which reads the files again
        if self._https is not None:
            self._https.reload(old_worker_stops_in=_RESPAWN_S)
        logger.info("TLS certificate reloaded from %s", self._tls.cert_path)
        return True

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish within the grace period, then unload models."""
        grace = self.settings.limits.shutdown_grace_s
        started = asyncio.get_running_loop().time()
        if self.services is not None:
            await self.services.begin_shutdown()
            await self.services.streams_closed(grace)  # granian cuts upgraded sockets once stopped
            grace = max(0.0, grace - (asyncio.get_running_loop().time() - started))
        waits = []
        if self._http is not None and self._http_task is not None:
            self._http.stop()
            waits.append(self._http_task)
        if self._grpc is not None:
            waits.append(asyncio.ensure_future(self._grpc.stop(grace)))
        if self._https is not None:
            waits.append(asyncio.ensure_future(self._https.stop(grace)))
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=grace)
            for task in pending:
                logger.warning("a listener did not drain within %.1f s; closing it", grace)
                task.cancel()
        if self.services is not None:
            await self.services.stop()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _fmt_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def freeze_startup_objects() -> None:
    """Move everything built at start-up (models, libraries, the app) out of the collector's view.

    It lives as long as the process; without this every full collection under load re-scans it
    (measured: 18 full collections of ~95 ms each in 8 s of REST load, ~20 % of the time; with it, 0.17 s
    in all and +28 % requests, decisions §25). The command-line entry points call it once ready.
    """
    gc.collect()
    gc.freeze()


async def _serve(settings: Settings, shared_ports: bool, rest: bool = True) -> None:
    from modelwire.console import training_progress

    server = Server(settings, shared_ports=shared_ports, rest=rest)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    with training_progress() as progress:
        await server.start(progress=progress)
    freeze_startup_objects()
    await stop.wait()
    logger.info("shutting down: draining in-flight requests (grace %.0f s)", settings.limits.shutdown_grace_s)
    await server.stop()
    logger.info("stopped")


def _worker_main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, shared_ports=True))


def run(settings: Settings, *, rest: bool = True) -> None:
    """Serve until SIGTERM/SIGINT. The ``modelwire serve`` command and ``modelwire.run()`` call this.

    ``rest=False`` is ``modelwire model-service``: gRPC only, one process.
    """
    configure_logging(settings.log_level)
    if settings.workers == 1 or not rest:
        asyncio.run(_serve(settings, shared_ports=False, rest=rest))
        return
    _run_workers(settings)


def _run_workers(settings: Settings) -> None:
    from modelwire.console import training_progress
    from modelwire.model.registry import build_models

    http_port = check_port(settings.host, settings.http_port, "http")
    grpc_port = check_port(settings.host, settings.grpc_port, "grpc")
    held = [_reserve(settings.host, http_port), _reserve(settings.host, grpc_port)]
    with training_progress() as progress:
        build_models(settings, progress=progress)  # train once here, not in every worker
    settings = settings.model_copy(update={"http_port": http_port, "grpc_port": grpc_port})
    metrics_dir = tempfile.mkdtemp(prefix="modelwire-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_main, args=(settings,), name=f"modelwire-worker-{i}")
        for i in range(settings.workers)
    ]
    for process in workers:
        process.start()
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    def forward_hup(signum: int, _frame: Any) -> None:
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGHUP)  # each worker reloads its own TLS listeners

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward_hup)
    logger.info("started %d workers on REST :%d and gRPC :%d", len(workers), http_port, grpc_port)
    try:
        for process in workers:
            process.join()
    finally:
        for sock in held:
            sock.close()
        import shutil

        shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = [p for p in workers if p.exitcode not in (0, None)]
    if failed and not stopping:
        sys.exit(1)
