"""The producers docs/queues.md shows (and its ``modelwire queue send`` lines) run, each as its own process,
against a consumer on the default names of all three brokers, serving the default sentiment model."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelwire.app.components import QueueConsumers
from modelwire.app.lifecycle import Server
from modelwire.settings import Settings
from tests.protocols.queues.conftest import AMQP_URL, NATS_URL, REDIS_URL, _require

DOC = Path(__file__).resolve().parents[3] / "docs" / "queues.md"
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.DOTALL)
pytestmark = pytest.mark.slow


def blocks(language: str) -> list[str]:
    """The doc's blocks up to "Events out" (its listener is run by tests/outbound/test_docs_listener.py)."""
    text = DOC.read_text().split("## Events out", 1)[0]
    return [body for lang, body in BLOCK.findall(text) if lang == language]


def send_commands() -> list[str]:
    return [
        line.split("#")[0].strip()
        for body in blocks("bash")
        for line in body.splitlines()
        if line.startswith("modelwire queue send")
    ]


@pytest.fixture
async def consumer(trained_data_dir: Path) -> AsyncIterator[None]:
    for url in (AMQP_URL, NATS_URL, REDIS_URL):
        _require(url)
    settings = Settings(host="127.0.0.1", data_dir=trained_data_dir, queues=[AMQP_URL, NATS_URL, REDIS_URL])
    server = Server(settings, rest=False, grpc=False, components=[QueueConsumers(settings)])
    await server.start()
    try:
        yield
    finally:
        await server.stop()
        await _delete_default_names()


async def _delete_default_names() -> None:
    import aio_pika
    import nats
    from redis.asyncio import Redis

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in ("modelwire.requests", "modelwire.requests.dlq"):
            with contextlib.suppress(Exception):
                await channel.queue_delete(name, if_empty=True)
    nc = await nats.connect(NATS_URL)
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_stream("MODELWIRE")
    await nc.close()
    client = Redis.from_url(REDIS_URL)
    await client.delete("modelwire:requests")
    await client.aclose()


async def run(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(60):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        raise
    assert process.returncode == 0, out.decode()
    return out.decode()


def test_the_doc_has_a_producer_per_broker() -> None:
    heads = [body.splitlines()[0] for body in blocks("python")]
    assert heads == [
        "# RabbitMQ, aio-pika",
        "# NATS core request-reply, nats-py",
        "# NATS JetStream (durable, at-least-once), nats-py",
        "# Redis Streams, redis-py",
    ]
    assert len(send_commands()) == 3


async def test_every_producer_and_queue_send_from_the_doc(consumer: None) -> None:
    for index, code in enumerate(blocks("python")):
        out = await run(sys.executable, "-c", code)
        assert "'sentiment': 'positive'" in out, out
        if index == 0:
            assert out.startswith("True "), out  # the answer carries the request's correlation id
        if index == 3:
            assert out.startswith("42 "), out
    for command in send_commands():
        argv = shlex.split(command)
        out = await run(sys.executable, "-m", "modelwire", *argv[1:], "--timeout", "30")
        assert '"sentiment":"positive"' in out.splitlines()[0], out
