"""``traced``: span export for the life of one process, when OTLP export is configured.

Every role's process enters it once, around its event loop (``main.py``, and each ``serve --workers``
process in ``supervisor.py``): the exporter (``outbound/otlp.py``) starts before the first request and
what is still buffered is exported after the last one. Off (the default), it does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from modelwire.observability import tracing
from modelwire.outbound.otlp import start_tracing
from modelwire.settings import Settings

__all__ = ["traced"]


@contextlib.contextmanager
def traced(settings: Settings, service: str) -> Iterator[None]:
    """Export spans as ``service`` (unless ``OTEL_SERVICE_NAME`` names it) while the block runs."""
    export = start_tracing(settings.observability, service)
    if export is None:
        yield
        return
    tracing.install(export.tracer)
    try:
        yield
    finally:
        tracing.install(None)
        export.shutdown()
