"""The entry points ``modelwire serve``, ``model-service``, ``gateway`` and ``worker`` call (and
``modelwire.run()``): logging and trace export configured once, then one role on a new event loop until a
signal stops it; then the spans still buffered are exported."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from modelwire.app import roles
from modelwire.app.components import JobReporter
from modelwire.app.supervisor import run_workers
from modelwire.app.tracing import traced
from modelwire.observability.logs import configure_logging
from modelwire.settings import Settings

__all__ = ["run", "run_consume", "run_gateway", "run_worker"]


def use_app_dir(settings: Settings) -> None:
    """Put ``settings.app_dir`` (default: the working directory) first on ``sys.path``, as uvicorn's
    ``--app-dir`` does, so ``mypackage.models:Shout`` imports from there with the installed script too."""
    path = str(settings.app_dir.resolve())
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)


def _main(settings: Settings, work: Callable[[], Coroutine[Any, Any, None]], service: str) -> None:
    configure_logging(settings.log_level)
    use_app_dir(settings)
    with traced(settings, service), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(work())


def run(settings: Settings, *, rest: bool = True) -> None:
    """``modelwire serve`` (and ``modelwire.run()``); ``rest=False`` is ``modelwire model-service``."""
    if rest and settings.workers > 1:
        configure_logging(settings.log_level)
        use_app_dir(settings)
        run_workers(settings)
        return
    _main(
        settings,
        lambda: roles.serve(settings, rest=rest),
        "modelwire" if rest else "modelwire-model-service",
    )


def run_gateway(settings: Settings) -> None:
    """``modelwire gateway``: the public face, forwarding inference to ``settings.gateway.upstreams``."""
    _main(settings, lambda: roles.gateway(settings), "modelwire-gateway")


def run_worker(settings: Settings, reporter: JobReporter) -> None:
    """``modelwire worker``: job workers and no listener."""
    _main(settings, lambda: roles.worker(settings, reporter), "modelwire-worker")


def run_consume(settings: Settings) -> None:
    """``modelwire consume``: the queue consumers and no listener."""
    _main(settings, lambda: roles.consume(settings), "modelwire-consume")
