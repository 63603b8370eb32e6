"""modelwire.v1.Events/Subscribe with a real grpcio client: events, resume, errors, cancel, deadline, end."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from modelwire.app.lifecycle import begin_shutdown, start_services, stop_services
from modelwire.app.services import Services
from modelwire.events.bus import Event, LocalEventBus
from modelwire.events.streaming import FOREIGN_ID, RESET_REASON
from modelwire.protocols.grpc._generated.modelwire.v1 import events_pb2, events_pb2_grpc
from modelwire.protocols.grpc.events import EventConverter
from modelwire.protocols.grpc.server import GrpcListener
from modelwire.settings import EventsSettings, Settings
from tests.models import EchoModel
from tests.protocols.grpc.richstatus import rich_details
from tests.protocols.grpc.test_grpcurl import GRPCURL, grpcurl


@pytest.fixture
async def services(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> AsyncIterator[Services]:
    """Overrides the folder's: small event bounds and a fast metrics snapshot."""
    settings = make_settings(events=EventsSettings(queue_size=8, replay_size=16, metrics_interval_s=0.1))
    services = make_services(EchoModel(), settings=settings, default=False)
    await start_services(services)
    yield services
    await stop_services(services)


@pytest.fixture
def bus(services: Services) -> LocalEventBus:
    assert isinstance(services.events, LocalEventBus)
    return services.events


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> events_pb2_grpc.EventsStub:
    return events_pb2_grpc.EventsStub(channel)


def request(*topics: str, last_event_id: str = "") -> events_pb2.SubscribeRequest:
    return events_pb2.SubscribeRequest(topics=list(topics), last_event_id=last_event_id)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_events_arrive_with_their_fields(
    stub: events_pb2_grpc.EventsStub, bus: LocalEventBus, services: Services
) -> None:
    call = stub.Subscribe(request("models", "jobs/*"), timeout=10)
    await wait_until(lambda: bus.subscriber_count == 1, "subscribed")
    assert services.metrics.live.connections("grpc") == 1
    loaded = await bus.publish("models", "model.loaded", {"name": "echo", "version": "1", "ready": True})
    await bus.publish("server", "server.ready", {"not": "subscribed"})
    progress = await bus.publish("jobs/9", "job.progress", {"done": 2, "of": [1, 2], "note": None})
    assert loaded is not None
    assert progress is not None
    first = await call.read()
    assert (first.id, first.topic, first.type) == (str(loaded.id), "models", "model.loaded")
    assert first.time == pytest.approx(loaded.time)
    assert json_format.MessageToDict(first.data) == {"name": "echo", "version": "1", "ready": True}
    second = await call.read()
    assert (second.id, second.topic) == (str(progress.id), "jobs/9")
    assert json_format.MessageToDict(second.data) == {"done": 2.0, "of": [1.0, 2.0], "note": None}
    call.cancel()


async def test_metrics_snapshots_arrive(stub: events_pb2_grpc.EventsStub) -> None:
    call = stub.Subscribe(request("metrics"), timeout=10)
    event = await call.read()
    call.cancel()
    data = json_format.MessageToDict(event.data)
    assert (event.topic, event.type) == ("metrics", "metrics")
    assert data["protocols"]["grpc"]["connections"] == 1  # this very call
    assert data["models"] == [{"name": "echo", "version": "1", "ready": True}]


async def test_resume_after_last_event_id(stub: events_pb2_grpc.EventsStub, bus: LocalEventBus) -> None:
    events = [await bus.publish("jobs/r", "step", {"n": n}) for n in range(3)]
    ids = [str(e.id) for e in events if e is not None]
    call = stub.Subscribe(request("jobs/r", last_event_id=ids[0]), timeout=10)
    assert [(await call.read()).id for _ in range(2)] == ids[1:]
    call.cancel()


@pytest.mark.parametrize("too_old", [True, False], ids=["evicted", "foreign"])
async def test_reset_first_when_the_id_cannot_be_resumed(
    stub: events_pb2_grpc.EventsStub, bus: LocalEventBus, too_old: bool
) -> None:
    first = await bus.publish("jobs/o", "step", {})
    for _ in range(40):
        await bus.publish("jobs/o", "step", {})
    assert first is not None
    last = str(first.id) if too_old else "not-an-id"
    call = stub.Subscribe(request("jobs/o", last_event_id=last), timeout=10)
    reset = await call.read()
    assert (reset.type, reset.id) == ("reset", "")
    assert json_format.MessageToDict(reset.data) == {"reason": RESET_REASON, "last_event_id": last}
    live = await bus.publish("jobs/o", "step", {"live": True})
    assert live is not None
    assert (await call.read()).id == str(live.id)
    call.cancel()


@pytest.mark.parametrize("topics", [("bogus",), ("metrics", "jobs/a b"), ()])
async def test_bad_topics_are_invalid_argument(
    stub: events_pb2_grpc.EventsStub, bus: LocalEventBus, topics: tuple[str, ...]
) -> None:
    call = stub.Subscribe(request(*topics), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call.read()
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = rich_details(failure.value)
    assert details["ErrorInfo"].reason == "INVALID_ARGUMENT"
    assert details["BadRequest"].field_violations[0].field in ("topic", "topics")
    assert bus.subscriber_count == 0


async def test_cancel_frees_the_subscription(
    stub: events_pb2_grpc.EventsStub, bus: LocalEventBus, services: Services
) -> None:
    call = stub.Subscribe(request("server"))
    await wait_until(lambda: bus.subscriber_count == 1, "subscribed")
    call.cancel()
    await wait_until(lambda: bus.subscriber_count == 0, "the subscription was released")
    await wait_until(lambda: services.metrics.live.connections("grpc") == 0, "counted out")
    assert 'modelwire_open_connections{protocol="grpc"} 0.0' in services.metrics.render().decode()


async def test_the_deadline_ends_the_stream(stub: events_pb2_grpc.EventsStub, bus: LocalEventBus) -> None:
    call = stub.Subscribe(request("server"), timeout=0.5)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        async for _ in call:
            pass
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_until(lambda: bus.subscriber_count == 0, "the subscription was released")


async def test_a_slow_reader_is_dropped_with_resource_exhausted(
    stub: events_pb2_grpc.EventsStub, bus: LocalEventBus
) -> None:
    call = stub.Subscribe(request("jobs/flood"), timeout=60)
    await wait_until(lambda: bus.subscriber_count == 1, "subscribed")
    # The client reads nothing while big events pile up: flow-control windows fill, then its queue (8).
    payload = "x" * 65536
    for i in range(5000):
        await bus.publish("jobs/flood", "chunk", {"i": i, "payload": payload}, ephemeral=True)
        await asyncio.sleep(0)
        if bus.dropped:
            break
    assert bus.dropped == 1
    assert bus.subscriber_count == 0
    received: list[events_pb2.Event] = []

    async def read_all() -> None:
        async for event in call:
            received.append(event)

    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await read_all()
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "events were waiting unread" in (failure.value.details() or "")
    assert received  # what was already on the wire arrived first


async def test_shutdown_ends_the_stream(stub: events_pb2_grpc.EventsStub, services: Services) -> None:
    call = stub.Subscribe(request("server"), timeout=10)
    await wait_until(lambda: services.events.subscriber_count == 1, "subscribed")
    await begin_shutdown(services)
    assert [event.type async for event in call] == ["server.stopping"]
    assert await call.code() == grpc.StatusCode.OK


async def test_a_subscription_during_shutdown_ends_at_once(
    stub: events_pb2_grpc.EventsStub, services: Services
) -> None:
    await begin_shutdown(services)
    call = stub.Subscribe(request("*"), timeout=10)
    assert [event async for event in call] == []
    assert await call.code() == grpc.StatusCode.OK


@pytest.mark.skipif(not Path(GRPCURL).exists(), reason="grpcurl (dev dependency) is not installed")
async def test_grpcurl_finds_and_calls_events_by_reflection(listener: GrpcListener) -> None:
    target = f"127.0.0.1:{listener.port}"
    code, out, err = await grpcurl(target, "describe", "modelwire.v1.Events")
    assert code == 0, err
    assert "rpc Subscribe ( .modelwire.v1.SubscribeRequest ) returns ( stream .modelwire.v1.Event )" in out
    code, out, err = await grpcurl("-d", '{"topics": ["nope"]}', target, "modelwire.v1.Events/Subscribe")
    assert code != 0
    assert "InvalidArgument" in err
    assert "unknown topic 'nope'" in err


def test_converter_renders_any_json_able_data() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    event = Event(7, "jobs/1", "job.progress", {"n": (1, 2), "when": when, "nested": {"ok": True}})
    message = EventConverter.from_domain(event)
    assert (message.id, message.topic, message.type) == ("7", "jobs/1", "job.progress")
    assert json_format.MessageToDict(message.data) == {
        "n": [1.0, 2.0],
        "when": "2026-01-02T03:04:05",
        "nested": {"ok": True},
    }


def test_converter_reads_the_request() -> None:
    assert EventConverter.to_domain(request("models", " metrics ")) == ({"models", "metrics"}, None)
    assert EventConverter.to_domain(request("*", last_event_id="42")) == ({"*"}, 42)
    assert EventConverter.to_domain(request("*", last_event_id="x"))[1] == FOREIGN_ID
