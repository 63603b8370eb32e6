"""``TraceMiddleware``: the request's trace context, request id and deadline, for the whole call.

A pure ASGI middleware (no Starlette request objects on the hot path). For HTTP and WebSocket scopes it
reads ``traceparent`` and ``x-request-id`` (creating either when absent or malformed) and sets them as the
current trace (``observability/tracing.py``), so logs and the gateway's upstream calls carry them; HTTP
responses echo ``x-request-id``. ``Request-Timeout: <seconds>`` (a decimal number > 0, such as ``2.5``)
sets the call's deadline (``core/deadline.py``); the ``DataPlane`` narrows it by
``limits.request_timeout_s`` and a call that runs out of it answers 504.

With span export on (``observability/tracing.py``), each HTTP request (an SSE stream included, for as
long as it streams) is one SERVER span named ``METHOD /route/{template}``, child of the caller's
``traceparent`` (health probes and ``/metrics`` scrapes excepted). A WebSocket gets no span of its own
(it may live for hours): the caller's trace becomes the parent of one span per message
(``DataPlane.stream``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelwire.core.deadline import reset_deadline, use_deadline
from modelwire.errors import InvalidInputError
from modelwire.observability.tracing import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    TraceContext,
    active_tracer,
    parent_context,
    reset_trace,
    server_span,
    use_trace,
    valid_request_id,
)
from modelwire.protocols.http.errors import error_response

__all__ = ["REQUEST_TIMEOUT_HEADER", "TraceMiddleware", "parse_request_timeout"]

REQUEST_TIMEOUT_HEADER = "request-timeout"
_UNTRACED = ("/v2/health/", "/metrics")  # probes and scrapes, every few seconds: no span
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
        if active_tracer() is not None and not scope["path"].startswith(_UNTRACED):
            await self._traced(scope, receive, send, headers)
            return
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

    async def _traced(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        """The same call inside a SERVER span (export on)."""
        tracer = active_tracer()
        assert tracer is not None
        parent = parent_context(_text(headers.get(TRACEPARENT_HEADER.encode())))
        request_id = valid_request_id(_text(headers.get(REQUEST_ID_HEADER.encode())))
        if scope["type"] == "websocket":  # no span for the connection: one per message, under this parent
            token = otel_context.attach(parent) if parent is not None else None
            trace_token = use_trace(TraceContext.incoming(_text(headers.get(b"traceparent")), request_id))
            try:
                await self.app(scope, receive, send)
            finally:
                reset_trace(trace_token)
                if token is not None:
                    otel_context.detach(token)
            return
        method = scope["method"]
        attributes = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "modelwire.request_id": request_id,
        }
        with server_span(tracer, method, parent, request_id, attributes) as span:
            echo = (REQUEST_ID_HEADER.encode(), request_id.encode())

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    _status(span, message["status"])
                    message = {**message, "headers": [*message.get("headers", ()), echo]}
                await send(message)

            try:
                await self._call(scope, receive, send_traced, headers)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None)
                if isinstance(template, str):
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)

    async def _call(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        """``app`` under the ``Request-Timeout`` deadline (``__call__`` inlines the same for export off, one
        coroutine frame fewer on the hot path)."""
        raw_timeout = headers.get(REQUEST_TIMEOUT_HEADER.encode())
        if raw_timeout is None:
            await self.app(scope, receive, send)
            return
        try:
            deadline = time.monotonic() + parse_request_timeout(raw_timeout.decode("latin-1"))
        except InvalidInputError as exc:
            response = error_response(exc, v2=scope["path"].startswith("/v2"))
            await response(scope, receive, send)
            return
        token = use_deadline(deadline)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_deadline(token)


def _status(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(StatusCode.ERROR)


def _text(value: Any) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else None
