"""Events out (``[[event_sinks]]``, ``outbound/events.py``): a job's events arrive on each broker (RabbitMQ's
topic exchange, NATS subjects, a Redis stream) as CloudEvents envelopes, only the chosen topics; with the
broker down the server still answers and the drops are counted in ``/metrics``.

The listeners use each broker's own client, as another service would. Brokers as in the queue tests
(``tests/protocols/queues/conftest.py``): skipped when unreachable, unless ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwire.app.builder import build_services
from modelwire.app.lifecycle import Server
from modelwire.errors import ConfigurationError
from modelwire.events.bus import Event, LocalEventBus
from modelwire.jobs.manager import JobRequest
from modelwire.observability.metrics import Metrics
from modelwire.outbound.events import EventSink, cloudevent, subject_of
from modelwire.settings import Settings
from tests.models import EchoModel
from tests.protocols.queues.conftest import AMQP_URL, NATS_URL, REDIS_URL, _require
from tests.serving import ThreadedServer

Received = list[tuple[str, dict[str, Any]]]
"""(the broker's name for the event: routing key, subject or the stream's topic field; the envelope)"""


async def _listen_rabbitmq(tag: str, received: Received) -> tuple[dict[str, Any], Callable[[], Any]]:
    import aio_pika

    exchange_name = f"test.{tag}.events"
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="#")

    async def on_message(message: Any) -> None:
        async with message.process():
            received.append((message.routing_key, json.loads(message.body)))

    await queue.consume(on_message)

    async def cleanup() -> None:
        await channel.exchange_delete(exchange_name)
        await connection.close()

    return {"url": AMQP_URL, "destination": exchange_name}, cleanup


async def _listen_nats(tag: str, received: Received) -> tuple[dict[str, Any], Callable[[], Any]]:
    import nats

    prefix = f"test_{tag}.events"
    nc = await nats.connect(NATS_URL)

    async def on_message(msg: Any) -> None:
        received.append((msg.subject.removeprefix(prefix + "."), json.loads(msg.data)))

    await nc.subscribe(prefix + ".>", cb=on_message)
    await nc.flush()
    return {"url": NATS_URL, "destination": prefix}, nc.close


async def _listen_redis(tag: str, received: Received) -> tuple[dict[str, Any], Callable[[], Any]]:
    from redis.asyncio import Redis

    stream = f"test-{tag}:events"
    client = Redis.from_url(REDIS_URL)
    stop = asyncio.Event()

    async def read() -> None:
        last = "0-0"
        while not stop.is_set():
            reply = await client.xread({stream: last}, count=100, block=200)
            for _key, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id
                    received.append((fields[b"topic"].decode(), json.loads(fields[b"body"])))

    reader = asyncio.create_task(read())

    async def cleanup() -> None:
        stop.set()
        await reader
        await client.delete(stream)
        await client.aclose()

    return {"url": REDIS_URL, "destination": stream}, cleanup


LISTENERS = {"rabbitmq": _listen_rabbitmq, "nats": _listen_nats, "redis": _listen_redis}
URLS = {"rabbitmq": AMQP_URL, "nats": NATS_URL, "redis": REDIS_URL}


@pytest.fixture(params=sorted(LISTENERS))
async def listener(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, dict[str, Any], Received]]:
    """``(kind, the [[event_sinks]] entry, what arrived)``: a listener on a destination of the test's own."""
    kind: str = request.param
    _require(URLS[kind])
    received: Received = []
    sink, cleanup = await LISTENERS[kind](uuid.uuid4().hex[:10], received)
    try:
        yield kind, sink, received
    finally:
        await cleanup()


def types(received: Received) -> list[str]:
    return [envelope["type"] for _, envelope in received]


async def arrived(received: Received, done: Callable[[Received], bool], timeout: float = 20.0) -> Received:
    """``received`` once ``done(received)`` (a bounded wait)."""
    try:
        async with asyncio.timeout(timeout):
            while not done(received):
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"the events did not arrive within {timeout} s; got {[r[1]['type'] for r in received]}")
    return received


async def test_a_jobs_events_arrive_on_the_broker(
    listener: tuple[str, dict[str, Any], Received], tmp_path: Path
) -> None:
    kind, sink, received = listener
    settings = Settings(
        host="127.0.0.1",
        data_dir=tmp_path,
        models=[{"name": "echo", "source": "tests.models:EchoModel"}],
        event_sinks=[{**sink, "topics": ["jobs/*"]}],
    )
    services = build_services(settings, models=[EchoModel("echo")])
    server = Server(settings, services=services, rest=False, grpc=False)
    await server.start()  # model.loaded went out on "models": not a chosen topic
    try:
        assert server.services is not None

        async def rows() -> AsyncIterator[list[str]]:
            yield ["a", "bb"]

        job, _ = await server.services.jobs.submit(JobRequest("echo"), rows())
        topic = f"jobs/{job['id']}"
        await arrived(received, lambda got: "job.succeeded" in types(got))
    finally:
        await server.stop()
    assert types(received)[0] == "job.queued"  # the first event out: nothing from "models"
    assert types(received)[-1] == "job.succeeded"
    # RabbitMQ's routing key and the NATS subject (after its prefix) are jobs.<id>; Redis's field is the topic
    assert {name for name, _ in received} == {topic if kind == "redis" else subject_of(topic)}
    envelope = received[-1][1]
    assert envelope["specversion"] == "1.0"
    assert envelope["subject"] == envelope["topic"] == topic
    assert envelope["data"]["id"] == job["id"]
    assert envelope["data"]["status"] == "succeeded"
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["time"].endswith("Z")
    ids = [int(e["id"]) for _, e in received]
    assert ids == sorted(ids)  # in the order they were published


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["amqp://127.0.0.1:{}/", "nats://127.0.0.1:{}", "redis://127.0.0.1:{}/0"])
def test_a_broker_down_never_holds_the_server_and_drops_are_counted(
    scheme: str, make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = scheme.format(_closed_port())  # nothing listens there
    settings = make_settings(
        data_dir=tmp_path,
        models=[{"name": "echo", "source": "tests.models:EchoModel"}],
        event_sinks=[{"url": url, "topics": ["jobs/*", "models"], "buffer": 2}],
    )
    server = ThreadedServer(settings)
    with caplog.at_level(logging.WARNING, logger="modelwire.events"):
        server.start()
        try:
            with httpx.Client(base_url=server.http_url, timeout=10) as client:
                assert client.post("/v1/models/echo/predict", json={"text": "hi"}).json() == {
                    "echo": "hi",
                    "length": 2,
                }
                for _ in range(3):  # queued, running, succeeded each: more than the buffer holds
                    assert client.post("/v1/jobs", json={"model": "echo", "inputs": ["a"]}).status_code == 202
                deadline = time.monotonic() + 20  # bounded: the jobs run in the background
                while (dropped := _dropped(client.get("/metrics").text)) < 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert dropped >= 4, "the drops were not counted within 20 s: " + client.get("/metrics").text
                assert client.post("/v1/models/echo/predict", json={"text": "ok"}).status_code == 200
        finally:
            server.stop()
    warnings = [r for r in caplog.records if "cannot publish events" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # logged once, however many retries


def _dropped(metrics: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("modelwire_events_out_total{") and 'outcome="dropped"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class _NoBroker:
    kind = "rabbitmq"
    display = "nowhere"

    async def connect(self) -> None:
        raise ConnectionError("refused")

    async def send(self, subject: str, body: bytes, headers: Any) -> None:
        raise AssertionError("never connected")

    async def close(self) -> None:
        pass


async def test_the_buffer_keeps_the_newest_and_counts_the_rest() -> None:
    bus = LocalEventBus()
    metrics = Metrics()
    sink = EventSink(_NoBroker(), ["jobs/*"], buffer=3, metrics=metrics)
    sink.attach(bus)
    for i in range(5):
        await bus.publish(f"jobs/j{i}", "job.queued", {"id": f"j{i}"})
    await bus.publish("models", "model.loaded", {"name": "echo"})  # not chosen: not buffered, not dropped
    assert sink.pending == 3
    assert sink.dropped == 2
    assert metrics.events_out.labels("rabbitmq", "dropped")._value.get() == 2


def test_the_envelope_is_a_cloudevent_with_the_sse_fields() -> None:
    event = Event(1796637600123, "jobs/ab12", "job.succeeded", {"id": "ab12"}, time=1796637600.25)
    envelope = cloudevent(event, "modelwire://host/1")
    assert envelope == {
        "specversion": "1.0",
        "id": "1796637600123",
        "source": "modelwire://host/1",
        "type": "job.succeeded",
        "subject": "jobs/ab12",
        "topic": "jobs/ab12",
        "time": "2026-12-07T10:00:00.250Z",
        "datacontenttype": "application/json",
        "data": {"id": "ab12"},
    }
    assert subject_of("jobs/ab12") == "jobs.ab12"


def test_an_unknown_topic_stops_the_start() -> None:
    with pytest.raises(ConfigurationError, match="unknown topic 'job'"):
        EventSink(_NoBroker(), ["job"], buffer=1, metrics=Metrics())


def test_a_kafka_sink_is_refused_with_the_reason(tmp_path: Path) -> None:
    settings = Settings(host="127.0.0.1", data_dir=tmp_path, event_sinks=[{"url": "kafka://127.0.0.1:9092"}])
    with pytest.raises(ConfigurationError, match="kafka:// is not supported yet"):
        build_services(settings, models=[EchoModel("echo")])


class Relay:
    """A TCP relay to a broker on a port of its own: ``cut()`` closes it and every connection through it
    (the broker "goes down" for the sink), ``resume()`` listens on the same port again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def resume(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()


async def test_the_sink_reconnects_and_sends_what_waited(
    listener: tuple[str, dict[str, Any], Received], tmp_path: Path
) -> None:
    _kind, sink, received = listener
    url = urllib.parse.urlsplit(sink["url"])
    relay = Relay(url.hostname or "127.0.0.1", url.port or 0)
    await relay.resume()
    userinfo = url.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + f"127.0.0.1:{relay.port}"
    through = urllib.parse.urlunsplit(url._replace(netloc=netloc))
    settings = Settings(
        host="127.0.0.1",
        data_dir=tmp_path,
        models=[{"name": "echo", "source": "tests.models:EchoModel"}],
        event_sinks=[{**sink, "url": through, "topics": ["jobs/*"], "buffer": 100}],
    )
    services = build_services(settings, models=[EchoModel("echo")])
    server = Server(settings, services=services, rest=False, grpc=False)
    await server.start()

    async def job_done() -> str:
        async def rows() -> AsyncIterator[list[str]]:
            yield ["a"]

        job, _ = await services.jobs.submit(JobRequest("echo"), rows())
        async with asyncio.timeout(20):
            while (await services.jobs.get(job["id"]))["status"] != "succeeded":
                await asyncio.sleep(0.02)
        return str(job["id"])

    def finished(job_id: str) -> Callable[[Received], bool]:
        return lambda got: any(e["type"] == "job.succeeded" and e["data"]["id"] == job_id for _, e in got)

    try:
        first = await job_done()
        await arrived(received, finished(first))
        await relay.cut()
        second = await job_done()  # its events wait in the buffer while the broker is away
        await relay.resume()
        await arrived(received, finished(second))
    finally:
        await server.stop()
        await relay.cut()
    assert next(e["type"] for _, e in received if e["data"]["id"] == second) == "job.queued"
    assert services.event_sinks[0].dropped == 0
