"""Trace context, request ids and spans: what every wire shares about tracing.

How it works. Each request served has a ``TraceContext`` (trace id, this hop's span id, flags, request id)
in a context variable: the REST middleware (``protocols/http/tracing.py``) and the gRPC interceptor
(``protocols/grpc/tracing.py``) set it from the caller's W3C ``traceparent`` and ``x-request-id`` (new ones
when absent or malformed); ``logs.py`` adds it to every log record; the gateway sends it on to the model
service (``trace_metadata()``). ``traceparent`` is read and written by OpenTelemetry's W3C propagator
(``opentelemetry-api``, 0.7 MB installed); nothing here parses it by hand.

Spans exist only when export is on (``--otlp-endpoint``, ``outbound/otlp.py``): the process then calls
``install(tracer)`` once at start-up, and ``active_tracer()`` returns it. Off (the default) it returns
``None``; every place that would record a span tests that first and takes today's path, so tracing off
costs one ``None`` test per request and the OpenTelemetry SDK is never imported.

The spans of one request, with export on::

    SERVER  POST /v1/models/{name}/predict     (REST, SSE stream; gRPC: modelwire.v1.Predictor/Predict)
      INTERNAL  predict message                (each WebSocket message or PredictStream item)
        INTERNAL  batch wait                   (enqueued -> dispatched, when batching is on)
        INTERNAL  model predict <name>         (the model call; on a gateway, around the hop:)
          CLIENT  modelwire.v1.Predictor/Predict   -> the model service's SERVER span, same trace
    INTERNAL  job batch                        (a job's row batch: a trace of its own)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modelwire.errors import ErrorCode, ModelwireError

__all__ = [
    "CLIENT",
    "INTERNAL",
    "REQUEST_ID_HEADER",
    "TRACEPARENT_HEADER",
    "TraceContext",
    "TraceLogFilter",
    "active_tracer",
    "child_span",
    "current_trace",
    "install",
    "parent_context",
    "record_failure",
    "reset_trace",
    "sampled",
    "server_span",
    "span",
    "trace_metadata",
    "use_trace",
    "valid_request_id",
    "wall_ns_ago",
]

TRACEPARENT_HEADER = "traceparent"
REQUEST_ID_HEADER = "x-request-id"
_W3C = TraceContextTextMapPropagator()
INTERNAL = otel_trace.SpanKind.INTERNAL
_SERVER_FAULTS = frozenset({ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED})
CLIENT = otel_trace.SpanKind.CLIENT
_REQUEST_ID_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))  # visible ASCII: it goes into logs, headers


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One hop of a trace: the trace id shared by every hop, this hop's span id, and the request id."""

    trace_id: str
    span_id: str
    flags: str = "01"
    request_id: str = ""

    @property
    def traceparent(self) -> str:
        """This hop as the parent of the next one, written by the W3C propagator."""
        span_context = otel_trace.SpanContext(
            int(self.trace_id, 16),
            int(self.span_id, 16),
            is_remote=False,
            trace_flags=otel_trace.TraceFlags(int(self.flags, 16)),
        )
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(span_context)))
        return carrier[TRACEPARENT_HEADER]

    @classmethod
    def incoming(cls, traceparent: str | None, request_id: str | None) -> TraceContext:
        """This hop's context: the caller's trace (a valid ``traceparent``) or a new one, and a new span.

        A malformed ``traceparent`` starts a new trace (what the W3C spec asks); a request id that is
        not 1-128 visible ASCII characters is replaced by a new one.
        """
        trace_id, flags = "", "01"
        if traceparent:
            parent = _remote_parent(traceparent)
            if parent is not None:
                trace_id, flags = f"{parent.trace_id:032x}", f"{parent.trace_flags:02x}"
        return cls(trace_id or _hex(128), _hex(64), flags, valid_request_id(request_id))

    @classmethod
    def of_span(cls, span_context: otel_trace.SpanContext, request_id: str) -> TraceContext:
        """The context of a recorded span (export on): logs then name the trace id that was exported."""
        return cls(
            f"{span_context.trace_id:032x}",
            f"{span_context.span_id:016x}",
            f"{span_context.trace_flags:02x}",
            request_id,
        )


def valid_request_id(value: str | None) -> str:
    """``value`` stripped when it is 1-128 visible ASCII characters, else a new id."""
    rid = value.strip() if value else ""
    if 0 < len(rid) <= 128 and _REQUEST_ID_CHARS.issuperset(rid):
        return rid
    return _hex(64)


def _remote_parent(traceparent: str) -> otel_trace.SpanContext | None:
    span_context = otel_trace.get_current_span(
        _W3C.extract({TRACEPARENT_HEADER: traceparent.strip()})
    ).get_span_context()
    return span_context if span_context.is_valid else None


def _hex(bits: int) -> str:
    # Trace, span and request ids must be unique, not unguessable: the Mersenne Twister (a few hundred ns)
    # instead of os.urandom (a syscall per id, three per request, ~10 % of a request's Python time).
    value = random.getrandbits(bits)
    while not value:  # all-zero ids are invalid in traceparent
        value = random.getrandbits(bits)
    return f"{value:0{bits // 4}x}"


_trace: ContextVar[TraceContext | None] = ContextVar("modelwire_trace", default=None)


def current_trace() -> TraceContext | None:
    return _trace.get()


def use_trace(trace: TraceContext | None) -> Token[TraceContext | None]:
    return _trace.set(trace)


def reset_trace(token: Token[TraceContext | None]) -> None:
    _trace.reset(token)


class TraceLogFilter(logging.Filter):
    """Adds ``record.trace`` (`` [request_id=… trace_id=…]`` or ``""``) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace = _trace.get()
        record.trace = f" [request_id={trace.request_id} trace_id={trace.trace_id}]" if trace else ""
        return True


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata carrying the current trace to the next hop: ``traceparent`` and ``x-request-id``.

    With export on, the parent is the current span (the gateway's hop span); off, this hop. Empty
    outside a traced call.
    """
    trace = current_trace()
    if trace is None:
        return ()
    if _tracer is not None:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        if TRACEPARENT_HEADER in carrier:
            return ((TRACEPARENT_HEADER, carrier[TRACEPARENT_HEADER]), (REQUEST_ID_HEADER, trace.request_id))
    return ((TRACEPARENT_HEADER, trace.traceparent), (REQUEST_ID_HEADER, trace.request_id))


# -- spans (export on only) ------------------------------------------------------------------------------

_tracer: otel_trace.Tracer | None = None


def install(tracer: otel_trace.Tracer | None) -> None:
    """Record spans with ``tracer`` from now on (``None``: stop). Called once at start-up (``app/``), before
    the services are built: the model registry wraps runners in spans only when a tracer is installed."""
    global _tracer
    _tracer = tracer


def active_tracer() -> otel_trace.Tracer | None:
    """The tracer spans go to, or ``None`` when export is off (the caller then records nothing)."""
    return _tracer


def sampled(context: otel_context.Context | None = None) -> bool:
    """Whether a child span of ``context``'s span (default: the current one) is worth starting: its parent
    was sampled, or it would start a trace. Under an unsampled request the sampler would drop it anyway
    (parent-based sampling), so skipping it spares the SDK's work on every request not sampled."""
    span_context = otel_trace.get_current_span(context).get_span_context()
    return not span_context.is_valid or span_context.trace_flags.sampled


def parent_context(traceparent: str | None) -> otel_context.Context | None:
    """The caller's span as a parent (a valid ``traceparent``), else ``None``: the span starts a trace."""
    if not traceparent:
        return None
    parent = _remote_parent(traceparent)
    return otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(parent)) if parent else None


@contextmanager
def server_span(
    tracer: otel_trace.Tracer,
    name: str,
    parent: otel_context.Context | None,
    request_id: str,
    attributes: dict[str, Any],
    kind: otel_trace.SpanKind = otel_trace.SpanKind.SERVER,
) -> Iterator[otel_trace.Span]:
    """A request's span, current for the call, with its ids as the call's ``TraceContext`` (for logs and
    the next hop). An exception is recorded on it (``record_failure``) and re-raised."""
    with child_span(tracer, name, attributes, kind=kind, parent=parent) as current:
        token = _trace.set(TraceContext.of_span(current.get_span_context(), request_id))
        try:
            yield current
        finally:
            _trace.reset(token)


@contextmanager
def child_span(
    tracer: otel_trace.Tracer,
    name: str,
    attributes: dict[str, Any],
    *,
    kind: otel_trace.SpanKind = otel_trace.SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
) -> Iterator[otel_trace.Span]:
    """A span current for the block (a child of the current one unless ``parent``); an exception leaving
    the block is recorded with ``record_failure``."""
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            record_failure(current, exc)
            raise


def record_failure(span: otel_trace.Span, exc: BaseException) -> None:
    """Mark ``span`` as failed by ``exc`` when the fault is the server's: a caller's error (an invalid input,
    an unknown model, a refused key: a 4xx) or a cancellation (the caller left) only names its code."""
    if isinstance(exc, ModelwireError):
        span.set_attribute("modelwire.error.code", exc.code.value)
        if exc.code not in _SERVER_FAULTS:
            return
    elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
        span.set_attribute("modelwire.cancelled", True)
        return
    span.record_exception(exc)
    span.set_status(otel_trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200])


@contextmanager
def span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[otel_trace.Span | None]:
    """A child span of the current one when export is on; nothing (``None``) when off.

    For paths that are not per-request hot paths (a job's row batch); hot paths test ``active_tracer()``.
    """
    tracer = _tracer
    if tracer is None:
        yield None
        return
    with child_span(tracer, name, attributes or {}) as current:
        yield current


def wall_ns_ago(seconds: float) -> int:
    """``time.time_ns()`` ``seconds`` ago: the start of a span measured on the monotonic clock."""
    return time.time_ns() - int(seconds * 1e9)
