"""``TraceInterceptor``: the caller's trace context and request id, for the whole gRPC call.

It reads ``traceparent`` and ``x-request-id`` from the call's metadata (creating either when absent, as the
REST middleware does) and sets them as the current trace (``observability/tracing.py``): log records of
the call carry them, and a gateway forwarding the call sends them on. grpc.aio runs each call in a task of
its own, entered after the interceptors ran, so the value set here is that call's alone.

With span export on, the call's handler is wrapped so that it runs inside a SERVER span named after the
method (``modelwire.v1.Predictor/Predict``), child of the caller's ``traceparent``; health checks and
reflection are not traced (a health watch lasts as long as the channel).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry.trace import Span, StatusCode, Tracer

from modelwire.observability.tracing import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    TraceContext,
    active_tracer,
    parent_context,
    server_span,
    use_trace,
    valid_request_id,
)

__all__ = ["TraceInterceptor"]

# Server errors, as OpenTelemetry's RPC conventions count them: the others are the caller's.
_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_UNTRACED = ("/grpc.health.", "/grpc.reflection.")


class TraceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc,type-arg]
    """Sets the call's trace context from its metadata (and, export on, runs it in a span)."""

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
        # For the interceptors after this one (authentication logs); a span, when one starts, sets its own.
        use_trace(TraceContext.incoming(traceparent, request_id))
        tracer = active_tracer()
        method: str = handler_call_details.method
        if tracer is None or method.startswith(_UNTRACED):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return _traced(handler, tracer, method, traceparent, valid_request_id(request_id))


def _traced(
    handler: grpc.RpcMethodHandler[Any, Any],
    tracer: Tracer,
    method: str,
    traceparent: str | None,
    request_id: str,
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with each call inside a SERVER span."""
    service, _, name = method.lstrip("/").rpartition("/")
    attributes = {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": name,
        "modelwire.request_id": request_id,
    }
    span_name = method.lstrip("/")

    def start() -> Any:
        parent = parent_context(traceparent)
        return server_span(tracer, span_name, parent, request_id, attributes)

    if handler.unary_unary or handler.stream_unary:
        behavior: Any = handler.unary_unary or handler.stream_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            aborted: grpc.aio.AbortError | None = None
            with start() as span:
                try:
                    return await behavior(request, context)
                except grpc.aio.AbortError as exc:  # the handler's answer: its code is in the context
                    aborted = exc
                finally:
                    _status(span, context)
            assert aborted is not None  # the only way here: return and any other exception left above
            raise aborted

        make = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return make(unary, handler.request_deserializer, handler.response_serializer)

    behavior = handler.unary_stream or handler.stream_stream

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        aborted: grpc.aio.AbortError | None = None
        with start() as span:
            try:
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for message in result:
                        yield message
                else:  # a handler that writes with context.write()
                    await result
            except grpc.aio.AbortError as exc:  # the handler's answer: its code is in the context
                aborted = exc
            finally:
                _status(span, context)
        if aborted is not None:
            raise aborted

    make_stream = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    handled: grpc.RpcMethodHandler[Any, Any] = make_stream(
        streaming, handler.request_deserializer, handler.response_serializer
    )
    return handled


def _status(span: Span, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    code = context.code()
    if isinstance(code, int):  # grpc.aio keeps the int an abort() was given
        code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    if code is None:
        code = grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _ERRORS:
        span.set_status(StatusCode.ERROR, str(context.details() or ""))
