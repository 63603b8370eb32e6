"""The queue consumer and the event sinks over TLS (``tls://`` NATS, ``rediss://``, ``amqps://``) against
brokers the test starts (``tls_brokers.py``): the broker's certificate checked against ``ca_file``, a client
certificate (``cert_file``/``key_file``) presented, and each refusal (an untrusted server, no client
certificate) stopping the start with a reason a person can act on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelwire.app.builder import build_services
from modelwire.app.components import QueueConsumers
from modelwire.app.lifecycle import Server
from modelwire.client.queues import QueueSender
from modelwire.errors import UnavailableError
from modelwire.security.certs import create_local_ca
from modelwire.settings import EventSinkSettings, QueueSettings, Settings
from tests.models import EchoModel
from tests.protocols.queues.tls_brokers import TlsBroker, nats_tls, rabbitmq_tls, redis_tls

pytestmark = pytest.mark.slow

_STARTERS = {"nats": nats_tls, "redis": redis_tls, "rabbitmq": rabbitmq_tls}


@pytest.fixture(params=list(_STARTERS))
async def tls_broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TlsBroker]:
    (tmp_path / "broker").mkdir()
    async with _STARTERS[request.param](tmp_path / "broker") as broker:
        yield broker


def queue(broker: TlsBroker, **overrides: Any) -> dict[str, Any]:
    files = {
        "ca_file": str(broker.certs.ca_cert),
        "cert_file": str(broker.certs.client_cert),
        "key_file": str(broker.certs.client_key),
    }
    return {"url": broker.url, **files, **overrides}


@contextlib.asynccontextmanager
async def consumer(tmp_path: Path, entry: dict[str, Any]) -> AsyncIterator[Server]:
    settings = Settings(
        host="127.0.0.1",
        data_dir=tmp_path,
        models=[{"name": "echo", "source": "tests.models:EchoModel"}],
        queues=[entry],
    )
    services = build_services(settings, models=[EchoModel("echo")])
    server = Server(
        settings, services=services, rest=False, grpc=False, components=[QueueConsumers(settings)]
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_request_reply_over_tls_with_a_client_certificate(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    entry = queue(tls_broker)
    async with consumer(tmp_path, entry):
        durable = [False, True] if tls_broker.kind == "nats" else [False]  # NATS: core and JetStream
        for through_jetstream in durable:
            async with QueueSender(QueueSettings(**entry), durable=through_jetstream, timeout=30) as sender:
                answer = await sender.request(b'{"text": "over tls"}')
                assert json.loads(answer) == {"echo": "over tls", "length": 8}
                assert sender.last_headers["model-version"] == "1"


async def test_queue_send_over_tls(tls_broker: TlsBroker, tmp_path: Path) -> None:
    """``modelwire queue send`` with ``--ca-file``/``--cert-file``/``--key-file``, a real process."""
    entry = queue(tls_broker)
    async with consumer(tmp_path, entry):
        command = [sys.executable, "-m", "modelwire", "queue", "send", tls_broker.url, "over tls"]
        command += ["--ca-file", entry["ca_file"], "--cert-file", entry["cert_file"]]
        command += ["--key-file", entry["key_file"], "--timeout", "30"]
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (out + err).decode()
    assert json.loads(out) == {"echo": "over tls", "length": 8}


async def test_a_broker_certificate_from_another_ca_is_refused(tls_broker: TlsBroker, tmp_path: Path) -> None:
    other = create_local_ca(tmp_path / "other-ca", hosts=("127.0.0.1",), days=2)
    with pytest.raises(UnavailableError, match=r"(?i)certificate verify failed"):
        async with consumer(tmp_path, queue(tls_broker, ca_file=str(other.ca_cert))):
            pass


async def test_without_a_client_certificate_the_broker_refuses(tls_broker: TlsBroker, tmp_path: Path) -> None:
    entry = {"url": tls_broker.url, "ca_file": str(tls_broker.certs.ca_cert)}
    # the broker's alert (certificate required) or, RabbitMQ at times, the connection reset before it
    with pytest.raises(UnavailableError, match=r"(?i)certificate|reset by peer"):
        async with consumer(tmp_path, entry):
            pass


async def test_an_event_sink_publishes_over_tls(tls_broker: TlsBroker) -> None:
    from modelwire.backends.resolve import open_event_transport

    sink = EventSinkSettings(**queue(tls_broker))
    transport = open_event_transport(sink)
    headers = {"ce-id": "1", "ce-type": "model.loaded", "ce-subject": "models"}
    async with listening(tls_broker, sink) as received:
        await transport.connect()
        try:
            await transport.send("models", b'{"type": "model.loaded"}', headers)
        finally:
            await transport.close()
        assert await received() == b'{"type": "model.loaded"}'


@contextlib.asynccontextmanager
async def listening(broker: TlsBroker, sink: EventSinkSettings) -> AsyncIterator[Any]:
    """The broker's own client, over TLS with the sink's files, listening where the sink publishes;
    yields ``await received()``: the next event's body."""
    if broker.kind == "nats":
        import nats

        nc = await nats.connect(sink.url, tls=sink.tls_context())
        sub = await nc.subscribe(f"{sink.destination_name}.models")
        await nc.flush()

        async def next_nats() -> bytes:
            return bytes((await sub.next_msg(timeout=10)).data)

        try:
            yield next_nats
        finally:
            await nc.close()
    elif broker.kind == "redis":
        from redis.asyncio import Redis

        redis = Redis.from_url(sink.url, **sink.redis_tls())

        async def next_redis() -> bytes:
            [(_id, fields)] = await redis.xrange(sink.destination_name)
            return bytes(fields[b"body"])

        try:
            yield next_redis
        finally:
            await redis.aclose()
    else:
        import aio_pika

        from modelwire.backends.urls import with_credentials

        url = with_credentials(sink.url, sink.username, sink.secret())
        async with await aio_pika.connect(url, ssl_context=sink.tls_context()) as connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                sink.destination_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            events = await channel.declare_queue(exclusive=True)
            await events.bind(exchange, routing_key="models")

            async def next_rabbitmq() -> bytes:
                async with events.iterator(timeout=10) as messages:
                    message = await anext(messages)
                    return message.body

            yield next_rabbitmq


def test_tls_files_need_a_tls_url_and_key_file_needs_cert_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"need a TLS URL \(amqps://, tls://, rediss://\), not amqp://"):
        QueueSettings(url="amqp://127.0.0.1:5672/", ca_file=tmp_path / "ca.pem")
    with pytest.raises(ValueError, match="give cert_file too"):
        QueueSettings(url="rediss://127.0.0.1:6380/0", key_file=tmp_path / "key.pem")
    missing = QueueSettings(url="tls://127.0.0.1:4222", ca_file=tmp_path / "nope.pem")
    with pytest.raises(ValueError, match=r"nope\.pem"):
        missing.tls_context()
    assert QueueSettings(url="nats://127.0.0.1:4222").tls_context() is None
    assert QueueSettings(url="redis://127.0.0.1:6379/0").redis_tls() == {}
