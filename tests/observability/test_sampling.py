"""Under a request the sampler dropped, no child span is started (``observability.tracing.sampled``): the
parent-based sampler would drop each anyway, and skipping them spares the SDK's work on every such request."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from modelwire import Model
from modelwire.model.runner import ModelRunner, TracedRunner
from modelwire.observability.tracing import parent_context, sampled

TRACE = "0af7651916cd43dd8448eb211c80319c"


class Upper(Model):
    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        return [str(item).upper() for item in batch]


def provider(sampler: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))  # synchronous: the test reads at once
    return tracer_provider, exporter


def test_sampled_follows_the_parent_and_starts_a_trace_without_one() -> None:
    assert sampled()  # no span: a child would start a trace (the sampler decides)
    assert sampled(parent_context(f"00-{TRACE}-b7ad6b7169203331-01"))
    assert not sampled(parent_context(f"00-{TRACE}-b7ad6b7169203331-00"))
    tracer_provider, _ = provider(ParentBased(ALWAYS_OFF))
    with tracer_provider.get_tracer("t").start_as_current_span("request"):
        assert not sampled()


def test_the_model_span_is_recorded_only_under_a_sampled_request() -> None:
    for sampler, expected in ((ParentBased(ALWAYS_ON), ["model predict upper", "request"]), (ALWAYS_OFF, [])):
        tracer_provider, exporter = provider(sampler)
        tracer = tracer_provider.get_tracer("t")
        runner = TracedRunner(ModelRunner(Upper("upper")), tracer)

        async def call(tracer: Any = tracer, runner: TracedRunner = runner) -> list[Any]:
            with tracer.start_as_current_span("request"):
                return await runner.run(["a"])

        assert asyncio.run(call()) == ["A"]
        assert [span.name for span in exporter.get_finished_spans()] == expected
