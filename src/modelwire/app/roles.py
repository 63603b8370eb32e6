"""The roles of a modelwire process, and the one place signals are handled.

A role only says what runs; ``lifecycle.Server`` runs it:

==============  ===========================  ============  =====================================
role            services                     listeners     components
==============  ===========================  ============  =====================================
serve           configured models            REST + gRPC   —
model-service   configured models            gRPC          —
gateway         none until discovered        REST + gRPC   ``UpstreamRouter`` (model services)
worker          configured models, or none   —             ``UpstreamRouter`` (with --upstream),
                                                           ``JobReporter``
consume         configured models            (ops port)    ``QueueConsumers``, ``FeatureIngestion``
==============  ===========================  ============  =====================================

``worker`` and ``consume`` open a listener only with ``ops_port``: health and ``/metrics``.
``serve`` runs ``QueueConsumers`` too when ``settings.queues`` (``--queue URL``) names brokers, and
``FeatureIngestion`` when a ``[[feature_views]]`` entry has a ``source``.

``serve --workers N`` runs N ``serve`` processes under ``supervisor.py``; ``main.py`` holds the entry
points the command line calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from modelwire.app.builder import build_services
from modelwire.app.components import FeatureIngestion, JobReporter, QueueConsumers, UpstreamRouter
from modelwire.app.lifecycle import Component, Server
from modelwire.errors import ConfigurationError
from modelwire.settings import Settings

__all__ = ["consume", "freeze_startup_objects", "gateway", "serve", "serve_until_signalled", "worker"]

logger = logging.getLogger("modelwire.server")
NOTHING_TO_CONSUME = (
    "nothing to consume: pass --queue URL (or a [[queues]] section), "
    "or give a [[feature_views]] entry a source"
)


def freeze_startup_objects() -> None:
    """Move everything built at start-up (models, libraries, the app) out of the collector's view.

    It lives as long as the process; without this every full collection under load re-scans it
    (measured: 18 full collections of ~95 ms each in 8 s of REST load, ~20 % of the time; with it, 0.17 s
    in all and +28 % requests, decisions §25). Each role calls it once ready.
    """
    gc.collect()
    gc.freeze()


async def serve_until_signalled(
    server: Server,
    *,
    start: Callable[[], Awaitable[None]] | None = None,
    on_ready: Callable[[], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
) -> None:
    """Start ``server``, serve until SIGTERM or SIGINT, then drain and stop. SIGHUP reloads TLS."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    try:
        if await _started_unless_stopped(start() if start is not None else server.start(), stop):
            freeze_startup_objects()
            if on_ready is not None:
                on_ready()
            await stop.wait()
            if on_stopping is not None:
                on_stopping()
            else:
                logger.info(
                    "shutting down: draining in-flight requests (grace %.0f s)",
                    server.settings.limits.shutdown_grace_s,
                )
        else:
            logger.info("stopping before the start finished (SIGTERM or SIGINT)")
        await server.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    logger.info("stopped")


async def _started_unless_stopped(starting: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run the start; a signal meanwhile (a broker that never answers, a long training) cancels it: False."""
    start_task = asyncio.ensure_future(starting)
    stop_task = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({start_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_task.cancel()
    if start_task.done():
        start_task.result()  # a failed start raises its own error
        return True
    start_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await start_task
    return False


async def serve(settings: Settings, *, rest: bool = True, shared_ports: bool = False) -> None:
    """One ``serve`` (or ``model-service``) process: the configured models, trained first if needed."""
    from modelwire.console import training_progress

    queues: list[Component] = [QueueConsumers(settings)] if settings.queues else []
    if FeatureIngestion.wanted(settings):  # [[feature_views]] with a source: events in from brokers
        queues.append(FeatureIngestion(settings))
    server = Server(settings, shared_ports=shared_ports, rest=rest, components=queues)

    async def start() -> None:
        with training_progress() as progress:
            await server.start(progress=progress)

    await serve_until_signalled(server, start=start)


async def gateway(settings: Settings) -> None:
    """``modelwire gateway``: the public face, forwarding inference to ``settings.gateway.upstreams``."""
    services = await asyncio.to_thread(build_services, settings, models=[])
    router = UpstreamRouter(settings)
    server = Server(settings, services=services, components=[router])
    await serve_until_signalled(server, on_ready=router.log_status)


async def worker(settings: Settings, reporter: JobReporter) -> None:
    """``modelwire worker``: job workers and no listener (but health and ``/metrics`` with ``ops_port``), on
    local models or model services (--upstream)."""
    from modelwire.console import training_progress

    reporter.announce(settings)
    components: list[UpstreamRouter | JobReporter] = [reporter]
    if settings.gateway.upstreams:  # models are model services, called over gRPC (gateway/)
        services = await asyncio.to_thread(build_services, settings, models=[])
        components.insert(0, UpstreamRouter(settings))
    else:
        with training_progress() as progress:
            services = await asyncio.to_thread(build_services, settings, progress=progress)
    server = Server(settings, services=services, rest=False, grpc=False, ops=True, components=components)
    await serve_until_signalled(server, on_ready=reporter.ready, on_stopping=reporter.stopping)


async def consume(settings: Settings) -> None:
    """``modelwire consume``: the ``[[queues]]`` consumers and the feature views' ingestion (a view with a
    ``source``), no listener but, with ``ops_port``, health and ``/metrics``; SIGTERM drains them (stop
    fetching, answer and acknowledge what is in flight, close)."""
    from modelwire.console import training_progress

    parts: list[QueueConsumers | FeatureIngestion] = []
    if settings.queues:
        parts.append(QueueConsumers(settings))
    if FeatureIngestion.wanted(settings):
        parts.append(FeatureIngestion(settings))
    if not parts:
        raise ConfigurationError(NOTHING_TO_CONSUME)
    with training_progress() as progress:
        services = await asyncio.to_thread(build_services, settings, progress=progress)
    server = Server(settings, services=services, rest=False, grpc=False, ops=True, components=parts)

    def ready() -> None:
        what = "; ".join(part.describe() for part in parts)
        logger.info("modelwire consume ready: %s  (pid %d)", what, os.getpid())

    await serve_until_signalled(server, on_ready=ready)
