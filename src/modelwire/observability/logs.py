"""Logging, configured once at start-up (constructors never touch it)."""

from __future__ import annotations

import logging
import sys

from modelwire.observability.tracing import TraceLogFilter

__all__ = ["configure_logging"]

# ``trace`` is " [request_id=… trace_id=…]" while a request is served (observability/tracing.py), else "".
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s%(trace)s"


def configure_logging(level: str) -> None:
    """Send modelwire's logs to stderr at ``level``; keep noisy libraries at warning."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(TraceLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("granian", "_granian", "grpc", "asyncio", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("granian").setLevel(logging.ERROR)  # "embedded server is experimental" on every start
