"""One lifecycle for every role: build, start, drain with a grace period, stop.

``Server`` runs whatever a role asks for (``roles.py``): the services, the listeners (REST, gRPC, either,
both or none) and the role's own components (a gateway's router, a worker's reporter). Stopping is the
same for every role, in this order:

1. **Not ready.** ``DataPlane.drain()``: readiness turns false (``/v2/health/ready`` 503), gRPC health
   pushes NOT_SERVING to its watchers; requests are still served.
2. **Quiet.** When someone routes by our gRPC health (a gateway's channel watches it), wait until no call
   has arrived for ``QUIET_S`` (bounded by the grace period): calls the watcher had already routed here
   land and are answered instead of being refused by a closing server.
3. **Streams end.** ``server.stopping`` is published, ``Services.closing`` is set: WebSockets answer what
   is in flight and close 1001, SSE and gRPC event streams end.
4. **Listeners drain.** They stop accepting; in-flight requests finish within what is left of
   ``limits.shutdown_grace_s``.
5. **Components stop, then the services:** job workers give running jobs back, models unload.

Signals are owned in ``roles.py`` (``serve_until_signalled``), the one place they are handled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from modelwire.app.builder import build_services
from modelwire.app.listeners import GrpcPort, RestPort, check_port, fmt_host, reserve
from modelwire.app.repository_watch import RepositoryWatcher
from modelwire.app.services import Services
from modelwire.app.versions import model_event
from modelwire.errors import ConfigurationError
from modelwire.security.policy import check_exposure
from modelwire.security.tls import TLSMaterial
from modelwire.settings import Settings

__all__ = [
    "Component",
    "Server",
    "begin_shutdown",
    "start_services",
    "stop_services",
    "streams_closed",
]

logger = logging.getLogger("modelwire.server")
QUIET_S = 0.2
"""Draining behind a gateway: no new call for this long means the gateway has moved its traffic away."""
_MAX_QUIET_S = 5.0


# -- the services ------------------------------------------------------------------------------------


async def start_services(services: Services) -> None:
    """Load every model (a model that fails to load stops the start with its error), start jobs and events."""
    await services.events.start()
    for sink in services.event_sinks:  # connects in the background: a broker down never stops the start
        sink.start()
    if services.admin is not None:  # within the memory budget, when one is set
        await services.admin.load_all()
    else:
        await services.registry.load_all()
    for handle in services.registry.handles():
        services.metrics.model_ready.labels(handle.name, handle.version).set(1 if handle.ready else 0)
        if handle.ready:  # not one the memory budget unloaded at once (its model.unloaded said so)
            await services.events.publish("models", "model.loaded", model_event(handle))
    await services.jobs.start()
    settings = services.settings
    if settings.model_watch != "off" and services.admin is not None:  # docs/admin.md
        services.watcher = RepositoryWatcher(
            services.admin,
            settings.model_repository,
            mode=settings.model_watch,
            poll_s=settings.model_watch_poll_s,
        )
        await services.watcher.start()
    if len(services.features.views):  # no views: no feature store file, no connection
        await services.features.open()
    await services.events.publish("server", "server.ready", {"ready": services.dataplane.ready()})
    services.publisher.start()
    await services.alert_webhooks.start()
    services.monitoring.start()
    services.payload_log.start()


async def begin_shutdown(services: Services) -> None:
    """Tell long-lived streams to finish: event streams end, WebSockets close after in-flight replies."""
    if services.closing.is_set():
        return
    services.dataplane.drain()
    await services.events.publish("server", "server.stopping", {"ready": False})
    services.closing.set()
    await services.monitoring.stop()  # no alert after the event streams ended
    await services.publisher.stop()
    await services.events.close()


async def streams_closed(
    services: Services, grace_s: float, protocols: tuple[str, ...] = ("ws", "sse")
) -> bool:
    """After ``begin_shutdown``: wait up to ``grace_s`` until no ``protocols`` connection is open.

    granian stops serving upgraded WebSockets the moment its listener stops (sends fail, the TCP connection
    hangs until the client gives up), so the lifecycle waits here for the handlers to finish their
    in-flight replies and close (WebSocket 1001) before it stops the listener.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    live = services.metrics.live
    while any(live.connections(p) for p in protocols):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def stop_services(services: Services) -> None:
    """Refuse new work and unload models (after the listeners drained)."""
    await begin_shutdown(services)
    if services.watcher is not None:
        await services.watcher.stop()
    await services.jobs.stop()
    await services.alert_webhooks.close()
    await services.payload_log.stop()  # after the listeners drained: the last calls are logged
    services.dataplane.stop_accepting()
    await services.dataplane.shadows.close()
    for handle in services.registry.handles():
        services.metrics.model_ready.labels(handle.name, handle.version).set(0)
    await services.registry.unload_all()
    await services.features.close()
    await asyncio.gather(*(sink.stop() for sink in services.event_sinks))
    await services.security.close()


# -- a role's process ----------------------------------------------------------------------------------


class Component(Protocol):
    """Something a role runs next to the listeners (a gateway's router, a worker's reporter)."""

    async def start(self, services: Services) -> None:
        """After the services started, before any listener opens."""

    async def stop(self) -> None:
        """After the listeners drained, before the services stop."""


class Server:
    """The services, the listeners and the components of one process, started and stopped as one.

    >>> server = Server(Settings(http_port=0, grpc_port=0))   # no side effects until start()
    """

    def __init__(
        self,
        settings: Settings,
        *,
        services: Services | None = None,
        shared_ports: bool = False,
        rest: bool = True,
        grpc: bool = True,
        ops: bool = False,
        components: Sequence[Component] = (),
    ) -> None:
        self.settings = settings
        self.rest = rest
        """False: no REST, WebSocket or SSE listener (``modelwire model-service``, ``modelwire worker``)."""
        self.grpc = grpc
        self.ops = ops and not rest and settings.ops_port is not None
        """Health and ``/metrics`` on ``settings.ops_port`` (``consume``, ``worker``; never with REST)."""
        self.ops_port: int | None = settings.ops_port
        self.services = services
        self.components = list(components)
        self.http_port: int = settings.http_port
        self.grpc_port: int = settings.grpc_port
        self._shared_ports = shared_ports
        self._tls: TLSMaterial | None = None
        self._grpc: GrpcPort | None = None
        self._rest: RestPort | None = None
        self._started: list[Component] = []
        self._stopped = asyncio.Event()

    async def start(self, progress: Callable[[str, float], None] | None = None) -> None:
        """Build (unless given) and start the services, then the components, then the listeners."""
        settings = self.settings
        check_exposure(settings)  # before binding anything: auth off on a public address
        reserved = []
        if not self._shared_ports and self.rest:
            if self.grpc and settings.http_port == settings.grpc_port != 0:
                raise ConfigurationError("--http-port and --grpc-port must differ")
            self.http_port = check_port(settings.host, settings.http_port, "http")
            # held before the gRPC port is picked: two port-0 probes in a row may get the same number
            reserved.append(reserve(settings.host, self.http_port))
        if self.ops and settings.ops_port is not None:
            self.ops_port = check_port(settings.host, settings.ops_port, "ops")
            reserved.append(reserve(settings.host, self.ops_port))
        try:
            if reserved and self.grpc:
                self.grpc_port = check_port(settings.host, settings.grpc_port, "grpc")
            if self.services is None:
                self.services = await asyncio.to_thread(build_services, settings, progress=progress)
            services = self.services
            if settings.tls.enabled and (self.rest or self.grpc or self.ops):
                self._tls = TLSMaterial(settings.tls)
            await start_services(services)
            for component in self.components:
                await component.start(services)
                self._started.append(component)
            if self.grpc:
                self._grpc = GrpcPort(settings, self.grpc_port, self._tls)
                await self._grpc.start(services)
                self.grpc_port = self._grpc.port
            if self.rest:
                self._rest = RestPort(settings, self.http_port, self._tls)
                await self._rest.start(services)
            elif self.ops and self.ops_port is not None:
                self._rest = RestPort(settings, self.ops_port, self._tls, ops=True)
                await self._rest.start(services)
        finally:
            for sock in reserved:
                sock.close()
        if self._rest is not None or self._grpc is not None:
            logger.info("modelwire ready: %s  (pid %d)%s", self.describe(), os.getpid(), self.pages())

    def describe(self) -> str:
        """The listeners, as the ready line says them."""
        if self._rest is None:
            return f"gRPC {fmt_host(self.settings.host)}:{self.grpc_port} (REST off)" if self._grpc else ""
        ports = "  ".join(p.describe() for p in (self._rest, self._grpc) if p is not None)
        return ports + self._rest.describe_extras()

    def pages(self) -> str:
        """Where a person looks next, as the ready line ends: the dashboard, ``/docs`` and ``/metrics``."""
        if self._rest is None or self._rest.ops:
            return ""
        scheme = "https" if self._tls is not None else "http"
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else fmt_host(host))
        base = f"{scheme}://{shown}:{self.http_port}"
        dashboard = f"  dashboard {base}/" if self.settings.http.dashboard else ""
        return f"{dashboard}  API docs {base}/docs  metrics {base}/metrics"

    @property
    def redirect_port(self) -> int | None:
        """The HTTP→HTTPS redirect listener's port (``--tls-redirect-port``), once started."""
        return self._rest.redirect_port if self._rest is not None else None

    def reload_tls(self) -> bool:
        """SIGHUP: take the certificate and key in the files now, without dropping connections.

        A bad pair is logged and refused; the listeners keep the current one. See security/tls.py.
        """
        if self._tls is None:
            logger.info("SIGHUP ignored: TLS is off")
            return False
        if not self._tls.reload():
            return False
        for port in (self._rest, self._grpc):
            if port is not None:
                port.reload()
        logger.info("TLS certificate reloaded from %s", self._tls.cert_path)
        return True

    async def stop(self) -> None:
        """Drain and stop, in the order the module docstring gives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.limits.shutdown_grace_s
        services = self.services
        if services is not None:
            services.dataplane.drain()
            if self._grpc is not None:
                watched = await self._grpc.not_serving()
                if watched:
                    await _quiet(services, min(_MAX_QUIET_S, deadline - loop.time()))
            await begin_shutdown(services)
            await streams_closed(services, max(0.0, deadline - loop.time()))
        ports = [p for p in (self._rest, self._grpc) if p is not None]
        if ports:
            grace = max(0.0, deadline - loop.time())
            await asyncio.gather(*(p.drain(grace) for p in ports))
        for component in reversed(self._started):
            try:
                await component.stop()
            except Exception:
                logger.exception("stopping %r failed", component)
        if services is not None:
            await stop_services(services)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def _quiet(services: Services, limit_s: float) -> None:
    """Wait until no inference call has started for ``QUIET_S``, for at most ``limit_s``."""
    end = time.perf_counter() + max(0.0, limit_s)
    while (now := time.perf_counter()) < end:
        idle = now - services.dataplane.last_call
        if idle >= QUIET_S:
            return
        await asyncio.sleep(min(QUIET_S - idle, end - now))
