"""``TraceInterceptor``: the caller's trace context and request id, for the whole gRPC call.

It reads ``traceparent`` and ``x-request-id`` from the call's metadata (creating either when absent, as the
REST middleware does) and sets them as the current trace (``observability/tracing.py``): log records of
the call carry them, and a gateway forwarding the call sends them on. grpc.aio runs each call in a task of
its own, entered after the interceptors ran, so the value set here is that call's alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from modelwire.observability.tracing import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    TraceContext,
    use_trace,
)

__all__ = ["TraceInterceptor"]


class TraceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc,type-arg]
    """Sets the call's trace context from its metadata."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        traceparent = request_id = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == TRACEPARENT_HEADER and isinstance(value, str):
                traceparent = value
            elif key == REQUEST_ID_HEADER and isinstance(value, str):
                request_id = value
        use_trace(TraceContext.incoming(traceparent, request_id))
        return await continuation(handler_call_details)
