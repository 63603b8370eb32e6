"""Coalescing on the gateway's hop (``gateway/coalesce.py``): requests that reach a gateway together for one
model version become one ``BatchPredictor/PredictBatch`` call, which the model service runs as one batch;
each caller gets its own answer or error, its own deadline, its own trace.

A real model service and a real gateway (REST and gRPC on 127.0.0.1, port 0) in this process, so that the
test can hold the model (``GatedEchoModel``) while requests pile up, and count the model service's calls in
its metrics."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from modelwire.app.builder import build_services
from modelwire.app.components import UpstreamRouter
from modelwire.app.lifecycle import Server
from modelwire.app.services import Services
from modelwire.gateway.coalesce import UNSUPPORTED, Coalescer, Item, UpstreamMissing
from modelwire.observability import tracing
from modelwire.protocols.grpc._generated.modelwire.v1 import batch_pb2
from modelwire.settings import Settings
from tests.gateway.models import GatedEchoModel


@dataclass
class Hop:
    model: GatedEchoModel
    service: Server
    gateway: Server
    gateway_services: Services
    url: str

    def upstream_calls(self) -> int:
        """``PredictBatch`` (and ``Predict``) calls the model service's data plane answered."""
        assert self.service.services is not None
        value = self.service.services.metrics.registry.get_sample_value(
            "modelwire_requests_total", {"protocol": "grpc", "model": "echo", "code": "OK"}
        )
        return int(value or 0)


async def start_hop(tmp_path: Path, **gateway: Any) -> Hop:
    model = GatedEchoModel("echo")
    values: dict[str, Any] = {"host": "127.0.0.1", "http_port": 0, "grpc_port": 0}
    service_settings = Settings(data_dir=tmp_path / "service", **values)
    service = Server(service_settings, services=build_services(service_settings, models=[model]), rest=False)
    await service.start()
    upstream = {"upstreams": (f"127.0.0.1:{service.grpc_port}",), "coalesce_max_calls": 1, **gateway}
    settings = Settings(data_dir=tmp_path / "gateway", gateway=upstream, **values)
    built = build_services(settings, models=[])
    server = Server(settings, services=built, components=[UpstreamRouter(settings)])
    await server.start()
    return Hop(model, service, server, built, f"http://127.0.0.1:{server.http_port}")


@pytest.fixture
async def hop(tmp_path: Path) -> AsyncIterator[Hop]:
    started = await start_hop(tmp_path)
    yield started
    await stop(started)


async def stop(hop: Hop) -> None:
    hop.model.hold.set()
    hop.model.block.set()
    await hop.gateway.stop()
    await hop.service.stop()


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while not check():
            await asyncio.sleep(0.01)


def post(http: httpx.AsyncClient, text: str, **headers: str) -> Any:
    return http.post("/v1/models/echo/predict", json={"text": text}, headers=headers)


async def held(hop: Hop, http: httpx.AsyncClient, texts: list[str], **headers: str) -> list[httpx.Response]:
    """One request holds the model; ``texts`` arrive meanwhile and wait at the gateway; then the hold ends."""
    first = asyncio.ensure_future(post(http, "hold"))
    await until(lambda: bool(hop.model.calls))
    rest = [asyncio.ensure_future(post(http, text, **headers)) for text in texts]
    await until(lambda: hop.gateway_services.dataplane.inflight == len(texts) + 1)  # all queued at the hop
    hop.model.hold.set()
    replies = await asyncio.gather(first, *rest)
    assert replies[0].json() == {"echo": "hold"}
    return list(replies[1:])


async def test_concurrent_requests_become_one_upstream_call(hop: Hop) -> None:
    texts = [f"t{i}" for i in range(20)]
    async with httpx.AsyncClient(base_url=hop.url, timeout=30) as http:
        replies = await held(hop, http, texts)
    assert [reply.json() for reply in replies] == [{"echo": text} for text in texts]  # each its own
    assert all(reply.headers["model-version"] == "1" for reply in replies)
    assert hop.upstream_calls() == 2  # the one holding the model, then the twenty together
    assert sorted(hop.model.calls[1]) == sorted(texts)  # run as one batch on the model service


async def test_a_bad_item_fails_only_its_caller(hop: Hop) -> None:
    texts = ["a", "bad", "b", "c"]
    async with httpx.AsyncClient(base_url=hop.url, timeout=30) as http:
        replies = await held(hop, http, texts)
    assert [reply.status_code for reply in replies] == [200, 400, 200, 200]
    error = replies[1].json()["error"]
    assert (error["code"], error["message"], error["field"]) == ("INVALID_ARGUMENT", "a bad item", "$.text")
    assert hop.upstream_calls() == 2


async def test_the_call_carries_the_earliest_deadline_and_a_later_one_is_answered(tmp_path: Path) -> None:
    hop = await start_hop(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=hop.url, timeout=30) as http:
            first = asyncio.ensure_future(post(http, "hold"))
            await until(lambda: bool(hop.model.calls))
            short = asyncio.ensure_future(post(http, "block", **{"Request-Timeout": "1"}))
            long = asyncio.ensure_future(post(http, "patient", **{"Request-Timeout": "60"}))
            await until(lambda: hop.gateway_services.dataplane.inflight == 3)
            hop.model.hold.set()
            assert (await first).status_code == 200
            # "block" and "patient" went up together, with the earliest (1 s) deadline: the model holds that
            # call until the short one has failed at its deadline; the patient one is sent again and answered.
            short_reply = await short
            assert short_reply.status_code == 504
            hop.model.block.set()
            long_reply = await long
        assert long_reply.status_code == 200, long_reply.text
        assert long_reply.json() == {"echo": "patient"}
        together = hop.model.calls.index(["block", "patient"])
        time_left = hop.model.time_left[together]
        assert time_left is not None
        assert time_left <= 1.0  # the short caller's deadline, not 60 s
        assert hop.model.calls[-1] == ["patient"]
    finally:
        await stop(hop)


async def test_with_coalescing_off_each_request_is_its_own_call(tmp_path: Path) -> None:
    hop = await start_hop(tmp_path, coalesce=False)
    try:
        texts = [f"t{i}" for i in range(6)]
        async with httpx.AsyncClient(base_url=hop.url, timeout=30) as http:
            replies = await held(hop, http, texts)
        assert [reply.json() for reply in replies] == [{"echo": text} for text in texts]
        assert hop.upstream_calls() == 7
    finally:
        await stop(hop)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # synchronous: the test reads at once
    tracing.install(provider.get_tracer("modelwire"))
    yield exporter
    tracing.install(None)


async def test_each_item_has_its_own_span_in_its_callers_trace(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    hop = await start_hop(tmp_path)
    try:
        traces = [secrets.token_hex(16) for _ in range(3)]
        async with httpx.AsyncClient(base_url=hop.url, timeout=30) as http:
            first = asyncio.ensure_future(post(http, "hold"))
            await until(lambda: bool(hop.model.calls))
            rest = [
                asyncio.ensure_future(
                    post(
                        http,
                        f"t{i}",
                        traceparent=f"00-{trace}-{secrets.token_hex(8)}-01",
                        **{"x-request-id": f"rid-{i}"},
                    )
                )
                for i, trace in enumerate(traces)
            ]
            await until(lambda: hop.gateway_services.dataplane.inflight == 4)
            hop.model.hold.set()
            replies = await asyncio.gather(first, *rest)
        assert all(reply.status_code == 200 for reply in replies)
        assert hop.model.calls[1] == ["t0", "t1", "t2"]  # one call, one batch
        spans = exporter.get_finished_spans()
        items = [s for s in spans if s.name == "modelwire.v1.BatchPredictor/PredictBatch item"]
        hops = {
            s.context.span_id: s
            for s in spans
            if s.name == "modelwire.v1.BatchPredictor/PredictBatch" and s.kind is SpanKind.CLIENT
        }
        for i, trace in enumerate(traces):
            (item,) = [
                s for s in items if s.attributes and s.attributes["modelwire.request_id"] == f"rid-{i}"
            ]
            assert f"{item.context.trace_id:032x}" == trace  # in its caller's trace
            assert item.parent is not None
            assert item.parent.span_id in hops  # under its caller's hop span
            assert item.kind is SpanKind.SERVER
            assert item.attributes is not None
            assert item.attributes["modelwire.batch.size"] == 3
    finally:
        await stop(hop)


async def test_a_caller_that_leaves_before_its_call_is_not_sent(hop: Hop) -> None:
    async with httpx.AsyncClient(base_url=hop.url, timeout=30) as http:
        first = asyncio.ensure_future(post(http, "hold"))
        await until(lambda: bool(hop.model.calls))
        stays = asyncio.ensure_future(post(http, "stays"))
        leaves = asyncio.ensure_future(post(http, "leaves"))
        await until(lambda: hop.gateway_services.dataplane.inflight == 3)
        leaves.cancel()  # the client goes away: the gateway cancels its request
        await until(lambda: hop.gateway_services.dataplane.inflight == 2)
        hop.model.hold.set()
        assert (await first).status_code == 200
        assert (await stays).json() == {"echo": "stays"}
    assert hop.model.calls[1:] == [["stays"]]


async def test_a_model_service_without_predict_batch_turns_coalescing_off() -> None:
    sent: list[Any] = []

    async def send(request: Any, timeout: float | None, metadata: tuple[tuple[str, str], ...]) -> Any:
        sent.append(request)
        raise UpstreamMissing  # what RemoteModel raises for UNIMPLEMENTED without modelwire's details

    coalescer = Coalescer("m", "1", send, dict, max_batch=8, max_calls=1)
    item = Item(batch_pb2.BatchItem(text="x"), deadline=None)
    assert await coalescer.run([item]) == [UNSUPPORTED]  # RemoteModel sends it with Predict instead
    assert not coalescer.supported
    assert await coalescer.run([item]) == [UNSUPPORTED]
    assert len(sent) == 1  # asked once, not again
    await coalescer.close()


async def test_a_call_stays_under_the_byte_limit() -> None:
    sizes: list[int] = []
    release = asyncio.Event()

    async def send(request: Any, timeout: float | None, metadata: tuple[tuple[str, str], ...]) -> Any:
        sizes.append(len(request.items))
        await release.wait()
        reply = batch_pb2.BatchResponse(version="1")
        for item in request.items:
            reply.results.add(id=item.id).output.result.update({"echo": item.text})
        return reply

    coalescer = Coalescer("m", "1", send, dict, max_batch=8, max_calls=1, max_bytes=1000)

    def item(text: str, size: int) -> Item:
        return Item(batch_pb2.BatchItem(text=text), deadline=None, size=size)

    first = asyncio.ensure_future(coalescer.run([item("first", 10)]))
    await until(lambda: sizes == [1])
    rest = [asyncio.ensure_future(coalescer.run([item(t, 400)])) for t in "abcde"]
    await until(lambda: len(coalescer._queue) == 5)
    release.set()
    answers = await asyncio.gather(first, *rest)
    assert [a[0]["echo"] for a in answers] == ["first", "a", "b", "c", "d", "e"]
    assert sizes == [1, 2, 2, 1]  # 400 + 400 fits in 1000; a third would not
    await coalescer.close()
