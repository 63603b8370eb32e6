"""Trace context (W3C ``traceparent``) and the request id of the call being served, as a context variable.

The REST middleware (``protocols/http/tracing.py``) and the gRPC interceptor (``protocols/grpc/tracing.py``)
read them from the incoming request (creating them when absent) and set them here for the whole call; the
gateway copies them into the metadata of its upstream call; ``logs.py`` adds them to every log record.
No span is exported: modelwire propagates the context so that a tracer or a log search can join the hops.
"""

from __future__ import annotations

import logging
import random
import re
from contextvars import ContextVar, Token
from dataclasses import dataclass

__all__ = [
    "REQUEST_ID_HEADER",
    "TRACEPARENT_HEADER",
    "TraceContext",
    "TraceLogFilter",
    "current_trace",
    "reset_trace",
    "trace_metadata",
    "use_trace",
]

TRACEPARENT_HEADER = "traceparent"
REQUEST_ID_HEADER = "x-request-id"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII, bounded: it goes into logs and headers


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One hop of a trace: the trace id shared by every hop, this hop's span id, and the request id."""

    trace_id: str
    span_id: str
    flags: str = "01"
    request_id: str = ""

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @classmethod
    def incoming(cls, traceparent: str | None, request_id: str | None) -> TraceContext:
        """This hop's context: the caller's trace (a valid ``traceparent``) or a new one, and a new span.

        A malformed ``traceparent`` starts a new trace (what the W3C spec asks); a request id that is
        not 1-128 visible ASCII characters is replaced by a new one.
        """
        trace_id, flags = _hex(128), "01"
        found = _TRACEPARENT.match(traceparent.strip().lower()) if traceparent else None
        if found and found.group(1) != "ff" and set(found.group(2)) != {"0"} and set(found.group(3)) != {"0"}:
            trace_id, flags = found.group(2), found.group(4)
        rid = request_id.strip() if request_id else ""
        if not _REQUEST_ID.match(rid):
            rid = _hex(64)
        return cls(trace_id, _hex(64), flags, rid)


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
    """Metadata carrying the current trace to the next hop: ``traceparent`` (this hop as the parent span)
    and ``x-request-id``. Empty outside a traced call."""
    trace = current_trace()
    if trace is None:
        return ()
    return ((TRACEPARENT_HEADER, trace.traceparent), (REQUEST_ID_HEADER, trace.request_id))
