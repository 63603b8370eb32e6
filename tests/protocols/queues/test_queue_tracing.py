"""A queue message is a CONSUMER span, child of the message's ``traceparent``, with the model's spans under
it (the same tracer every wire uses; off by default, when the consumer starts no span at all)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelwire.app.builder import build_services
from modelwire.app.components import QueueConsumers
from modelwire.app.lifecycle import Server
from modelwire.client.queues import QueueSender
from modelwire.observability import tracing
from modelwire.settings import Settings
from tests.models import EchoModel
from tests.protocols.queues.conftest import open_broker


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # synchronous: the test reads at once
    tracing.install(provider.get_tracer("modelwire"))
    yield exporter
    tracing.install(None)


@pytest.mark.parametrize("kind", ["rabbitmq", "nats-jetstream", "redis"])
async def test_a_queue_message_is_a_consumer_span_in_the_callers_trace(
    kind: str, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    trace_id, parent_span = secrets.token_hex(16), secrets.token_hex(8)
    async with open_broker(kind) as broker:
        settings = Settings(
            host="127.0.0.1",
            data_dir=tmp_path,
            models=[{"name": "echo", "source": "tests.models:EchoModel"}],
            queues=[broker.queue()],
        )
        services = build_services(settings, models=[EchoModel("echo")])
        server = Server(
            settings, services=services, rest=False, grpc=False, components=[QueueConsumers(settings)]
        )
        await server.start()
        try:
            async with QueueSender(broker.settings, durable=broker.durable, timeout=30) as sender:
                headers = {"traceparent": f"00-{trace_id}-{parent_span}-01", "x-request-id": "q-1"}
                answer = await sender.request(b'{"text": "hi"}', headers=headers)
                answered_with = sender.last_headers
        finally:
            await server.stop()
    assert json.loads(answer) == {"echo": "hi", "length": 2}
    assert answered_with["x-request-id"] == "q-1"
    spans = [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]
    (consumer,) = [s for s in spans if s.kind is otel_trace.SpanKind.CONSUMER]
    assert consumer.name.startswith("process ")
    assert consumer.parent is not None
    assert f"{consumer.parent.span_id:016x}" == parent_span
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.system"] == kind.removesuffix("-jetstream")
    assert consumer.attributes["messaging.operation.type"] == "process"
    children = {
        s.name for s in spans if s.parent is not None and s.parent.span_id == consumer.context.span_id
    }
    assert "batch wait" in children or "model predict echo" in children, [s.name for s in spans]
