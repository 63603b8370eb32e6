"""The entry points ``modelwire serve``, ``model-service``, ``gateway`` and ``worker`` call (and
``modelwire.run()``): logging configured once, then one role on a new event loop until a signal stops it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from typing import Any

from modelwire.app import roles
from modelwire.app.components import JobReporter
from modelwire.app.supervisor import run_workers
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


def _main(settings: Settings, work: Coroutine[Any, Any, None]) -> None:
    configure_logging(settings.log_level)
    use_app_dir(settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(work)


def run(settings: Settings, *, rest: bool = True) -> None:
    """``modelwire serve`` (and ``modelwire.run()``); ``rest=False`` is ``modelwire model-service``."""
    if rest and settings.workers > 1:
        configure_logging(settings.log_level)
        use_app_dir(settings)
        run_workers(settings)
        return
    _main(settings, roles.serve(settings, rest=rest))


def run_gateway(settings: Settings) -> None:
    """``modelwire gateway``: the public face, forwarding inference to ``settings.gateway.upstreams``."""
    _main(settings, roles.gateway(settings))


def run_worker(settings: Settings, reporter: JobReporter) -> None:
    """``modelwire worker``: job workers and no listener."""
    _main(settings, roles.worker(settings, reporter))


def run_consume(settings: Settings) -> None:
    """``modelwire consume``: the queue consumers and no listener."""
    _main(settings, roles.consume(settings))
