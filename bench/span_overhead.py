"""In-process cost of a request's SERVER span: modelwire's ``TraceMiddleware`` (export off and on) against
``opentelemetry-instrumentation-asgi``, around a canned ASGI app, with the same ``TracerProvider``
(``BatchSpanProcessor`` into an exporter that drops: span work only, no encoding or network).

    .venv/bin/python bench/span_overhead.py [CALLS]

CPU µs per request (``time.process_time``, all threads), min of 7 rounds. The ASGI instrumentation is not a
dependency of modelwire: ``pip install opentelemetry-instrumentation-asgi`` to include it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from modelwire.observability import tracing
from modelwire.protocols.http.tracing import TraceMiddleware


class Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/predict",
    "raw_path": b"/predict",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json")],
    "client": ("127.0.0.1", 5000),
    "server": ("127.0.0.1", 8000),
}


async def canned(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"{}", "more_body": False}


async def send(message: Any) -> None:
    pass


def measure(app: Any, calls: int) -> float:
    async def run(n: int) -> None:
        for _ in range(n):
            await app(dict(SCOPE), receive, send)

    asyncio.run(run(200))
    rounds = []
    for _ in range(7):
        started = time.process_time()
        asyncio.run(run(calls))
        rounds.append((time.process_time() - started) / calls * 1e6)
    return min(rounds)


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=1_000_000))
    print(f"{'bare ASGI app':<40}{measure(canned, calls):>8.1f} µs/request")
    print(f"{'TraceMiddleware, export off':<40}{measure(TraceMiddleware(canned), calls):>8.1f} µs/request")
    tracing.install(provider.get_tracer("bench"))
    print(f"{'TraceMiddleware, export on':<40}{measure(TraceMiddleware(canned), calls):>8.1f} µs/request")
    unsampled = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    unsampled.add_span_processor(BatchSpanProcessor(Drop()))
    tracing.install(unsampled.get_tracer("bench"))
    label = "TraceMiddleware, export on, not sampled"
    print(f"{label:<40}{measure(TraceMiddleware(canned), calls):>8.1f} µs/request")
    tracing.install(None)
    unsampled.shutdown()
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError:
        print("opentelemetry-instrumentation-asgi is not installed: skipped")
    else:
        asgi = OpenTelemetryMiddleware(canned, tracer_provider=provider)
        print(f"{'opentelemetry-instrumentation-asgi':<40}{measure(asgi, calls):>8.1f} µs/request")
    provider.shutdown()


if __name__ == "__main__":
    main()
