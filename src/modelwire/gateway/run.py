"""Composition of the gateway: the ordinary ``Services`` and ``Server``, with remote models in the registry.

``run_gateway`` is ``modelwire gateway``; ``attach_upstreams`` is also used by ``modelwire worker
--upstream``, whose jobs then call the model services too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from modelwire.gateway.router import Router
from modelwire.observability.logs import configure_logging
from modelwire.services import Services
from modelwire.settings import Settings

__all__ = ["attach_upstreams", "run_gateway"]

logger = logging.getLogger("modelwire.gateway")


async def attach_upstreams(settings: Settings) -> tuple[Services, Router]:
    """Services with no local model, and a started ``Router`` discovering the model services.

    Call ``router.attach()`` after ``services.start()`` (``Server.start`` calls it) and ``router.close()``
    after stopping them.
    """
    services = await asyncio.to_thread(Services.build, settings, models=[])
    router = Router(settings, services)
    await router.start(wait_s=max(2.0, settings.gateway.discovery_interval_s))
    return services, router


async def _serve(settings: Settings) -> None:
    from modelwire.server import Server, freeze_startup_objects

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    services, router = await attach_upstreams(settings)
    server = Server(settings, services=services)
    try:
        await server.start()
        router.attach()
        freeze_startup_objects()
        for up in router.status():
            logger.info("upstream %(address)s serving=%(serving)s models=%(models)s", up)
        await stop.wait()
        logger.info(
            "shutting down: draining in-flight requests (grace %.0f s)", settings.limits.shutdown_grace_s
        )
        await server.stop()
    finally:
        await router.close()
    logger.info("stopped")


def run_gateway(settings: Settings) -> None:
    """Serve the public face, forwarding inference to ``settings.gateway.upstreams``, until SIGTERM."""
    configure_logging(settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings))
