"""Server-Sent Events: ``GET /v1/events`` (event-bus topics) and ``POST .../predict/stream``."""

from modelwire.protocols.http.sse.endpoints import add_sse_routes

__all__ = ["add_sse_routes"]
