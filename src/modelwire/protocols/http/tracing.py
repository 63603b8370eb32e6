"""``TraceMiddleware``: the request's trace context, request id and deadline, for the whole call.

A pure ASGI middleware (no Starlette request objects on the hot path). For HTTP and WebSocket scopes it
reads ``traceparent`` and ``x-request-id`` (creating either when absent or malformed) and sets them as the
current trace (``observability/tracing.py``), so logs and the gateway's upstream calls carry them; HTTP
responses echo ``x-request-id``. ``Request-Timeout: <seconds>`` (a decimal number > 0, such as ``2.5``)
sets the call's deadline (``core/deadline.py``); the ``DataPlane`` narrows it by
``limits.request_timeout_s`` and a call that runs out of it answers 504.
"""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelwire.core.deadline import reset_deadline, use_deadline
from modelwire.errors import InvalidInputError
from modelwire.observability.tracing import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    TraceContext,
    reset_trace,
    use_trace,
)
from modelwire.protocols.http.errors import error_response

__all__ = ["REQUEST_TIMEOUT_HEADER", "TraceMiddleware", "parse_request_timeout"]

REQUEST_TIMEOUT_HEADER = "request-timeout"
_MAX_TIMEOUT_S = 86_400.0


def parse_request_timeout(value: str) -> float:
    """Seconds from a ``Request-Timeout`` header value; ``InvalidInputError`` unless a number > 0."""
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= _MAX_TIMEOUT_S:  # also false for nan and inf
        raise InvalidInputError(
            f"Request-Timeout must be a number of seconds > 0 and <= {_MAX_TIMEOUT_S:g}, such as 2.5 "
            f"(got {value[:40]!r})",
            field="Request-Timeout",
        )
    return seconds


class TraceMiddleware:
    """Sets trace context, request id and deadline around ``app``; echoes ``x-request-id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:
            if key in (b"traceparent", b"x-request-id", b"request-timeout"):
                headers[key] = value
        trace = TraceContext.incoming(
            _text(headers.get(TRACEPARENT_HEADER.encode())), _text(headers.get(REQUEST_ID_HEADER.encode()))
        )
        echo = (REQUEST_ID_HEADER.encode(), trace.request_id.encode())
        deadline = None
        raw_timeout = headers.get(REQUEST_TIMEOUT_HEADER.encode())
        if raw_timeout is not None and scope["type"] == "http":
            try:
                deadline = time.monotonic() + parse_request_timeout(raw_timeout.decode("latin-1"))
            except InvalidInputError as exc:
                response = error_response(exc, v2=scope["path"].startswith("/v2"))
                response.headers[REQUEST_ID_HEADER] = trace.request_id
                await response(scope, receive, send)
                return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            await send(message)

        trace_token = use_trace(trace)
        deadline_token = use_deadline(deadline) if deadline is not None else None  # None is the default
        try:
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        finally:
            if deadline_token is not None:
                reset_deadline(deadline_token)
            reset_trace(trace_token)


def _text(value: Any) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else None
