"""The queue contract, the same over every broker (``conftest.broker``: RabbitMQ, NATS core, NATS JetStream,
Redis Streams): request/reply with correlation, batches, error answers, dead letters once, auth, a burst
answered exactly once, and a consumer killed mid-burst losing nothing.

The consumer runs in-process (``Server`` with ``QueueConsumers``, the ``consume`` role's parts) on the echo
model, whose answer repeats the request's text: an answer matched to the wrong request shows. The producer
is ``modelwire.client.queues.QueueSender`` (the broker's own client, as another service would use it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from modelwire.client.queues import QueueSender
from modelwire.security.principal import Scope
from modelwire.settings import QueueSettings
from tests.models import EchoModel
from tests.protocols.queues.conftest import BrokerUnderTest, Start


def sender(broker: BrokerUnderTest, **kwargs: Any) -> QueueSender:
    return QueueSender(broker.settings, durable=broker.durable, timeout=kwargs.pop("timeout", 20.0), **kwargs)


async def ask(broker: BrokerUnderTest, message: Any, **kwargs: Any) -> Any:
    async with sender(broker) as s:
        return json.loads(await s.request(json.dumps(message).encode(), **kwargs))


async def test_request_reply_with_correlation(broker: BrokerUnderTest, start: Start) -> None:
    await start()
    words = [f"word-{i}" for i in range(40)]
    async with sender(broker) as s:
        answers = await asyncio.gather(*(s.request(json.dumps({"text": w}).encode()) for w in words))
    assert [json.loads(a) for a in answers] == [{"echo": w, "length": len(w)} for w in words]


async def test_msgpack_in_msgpack_out(broker: BrokerUnderTest, start: Start) -> None:
    await start()
    async with sender(broker) as s:
        data = await s.request(msgspec.msgpack.encode({"text": "hi"}), content_type="application/msgpack")
    assert msgspec.msgpack.decode(data) == {"echo": "hi", "length": 2}


async def test_a_batch_answers_each_item_in_order(broker: BrokerUnderTest, start: Start) -> None:
    await start()
    answer = await ask(broker, {"texts": ["a", "bad", "ccc"]})
    assert answer["predictions"][0] == {"echo": "a", "length": 1}
    assert answer["predictions"][1]["error"]["code"] == "INVALID_ARGUMENT"
    assert answer["predictions"][1]["error"]["field"] == "$.texts[1]"
    assert answer["predictions"][2] == {"echo": "ccc", "length": 3}


@pytest.mark.parametrize(
    ("message", "headers", "code"),
    [
        ({"text": "bad"}, {}, "INVALID_ARGUMENT"),  # the model refuses it
        ({"text": "hi", "model": "nope"}, {}, "NOT_FOUND"),
        ({"text": "hi"}, {"model": "nope"}, "NOT_FOUND"),  # the model in a header
    ],
)
async def test_an_error_comes_back_as_an_error_answer(
    broker: BrokerUnderTest, start: Start, message: Any, headers: dict[str, str], code: str
) -> None:
    await start()
    answer = await ask(broker, message, headers=headers)
    assert answer["error"]["code"] == code
    assert await broker.dead_letters(expect=0, timeout=0) == []  # an error answer is not a dead letter


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"text": "a", "texts": ["b"]}', "exactly one of"),
        (b'{"text": "' + b"x" * 2000 + b'"}', "the limit is 1024"),
    ],
)
async def test_a_malformed_message_is_dead_lettered_once_with_its_reason(
    broker: BrokerUnderTest, start: Start, body: bytes, reason: str
) -> None:
    await start(queue={"max_message_bytes": 1024})
    async with sender(broker) as s:
        answer = json.loads(await s.request(body))
        assert answer["error"]["code"] in ("INVALID_ARGUMENT", "PAYLOAD_TOO_LARGE")
        # a later message is answered: the bad one is not redelivered in a loop
        assert json.loads(await s.request(b'{"text": "after"}')) == {"echo": "after", "length": 5}
    dead = await broker.dead_letters(expect=1)
    assert len(dead) == 1
    assert dead[0][0] == body
    assert reason in dead[0][1]


async def test_auth_refusal_and_a_key_that_passes(broker: BrokerUnderTest, start: Start) -> None:
    server = await start(auth={"mode": "on"})
    assert server.services is not None
    key, _ = server.services.security.keys.create({Scope.PREDICT})
    refused = await ask(broker, {"text": "hi"})
    assert refused["error"]["code"] == "UNAUTHENTICATED"
    wrong = await ask(broker, {"text": "hi"}, headers={"authorization": "Bearer mw_nope"})
    assert wrong["error"]["code"] == "UNAUTHENTICATED"
    assert await ask(broker, {"text": "hi"}, headers={"authorization": f"Bearer {key}"}) == {
        "echo": "hi",
        "length": 2,
    }
    assert await ask(broker, {"text": "hi"}, headers={"x-api-key": key}) == {"echo": "hi", "length": 2}


async def test_a_burst_is_answered_exactly_once(broker: BrokerUnderTest, start: Start) -> None:
    await start(queue={"prefetch": 32})
    count = 2000
    async with sender(broker, timeout=60.0) as s:
        answers = await asyncio.gather(
            *(s.request(json.dumps({"text": f"m{i}"}).encode()) for i in range(count))
        )
        await asyncio.sleep(0)  # nothing to wait for: every answer is in; a late duplicate would count
    assert [json.loads(a)["echo"] for a in answers] == [f"m{i}" for i in range(count)]
    assert s.duplicates == 0


async def test_idempotency_key_answers_a_duplicate_the_same(broker: BrokerUnderTest, start: Start) -> None:
    await start()
    headers = {"idempotency-key": "k-1"}
    first = await ask(broker, {"text": "once"}, headers=headers)
    again = await ask(broker, {"text": "twice"}, headers=headers)  # the same key: the first answer
    assert first == again == {"echo": "once", "length": 4}


def test_queue_settings_keep_the_password_out_of_the_url() -> None:
    queue = QueueSettings(url="amqp://user:s3cret@127.0.0.1:5672/")
    assert "s3cret" not in queue.url
    assert "s3cret" not in repr(queue)
    assert queue.secret() == "s3cret"
    assert queue.username == "user"


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
async def test_rabbitmq_uses_an_existing_classic_queue_as_it_is(
    broker: BrokerUnderTest, start: Start
) -> None:
    import aio_pika

    async with await aio_pika.connect(broker.url) as connection:
        channel = await connection.channel()
        await channel.declare_queue(broker.settings.queue_name, durable=True)  # classic
    await start()
    assert await ask(broker, {"text": "classic"}) == {"echo": "classic", "length": 7}


async def test_the_answer_carries_the_request_id_and_model(broker: BrokerUnderTest, start: Start) -> None:
    await start()
    async with sender(broker) as s:
        await s.request(b'{"text": "hi"}', headers={"x-request-id": "req-7", "traceparent": TRACEPARENT})
        headers = s.last_headers
    assert headers["x-request-id"] == "req-7"
    assert headers["traceparent"] == TRACEPARENT
    assert headers["model"] == "echo"
    assert headers["model-version"] == "1"


async def test_the_answer_names_the_version_that_produced_it(broker: BrokerUnderTest, start: Start) -> None:
    server = await start(models=[EchoModel("echo", "1"), EchoModel("echo", "2")])
    assert server.services is not None
    default = server.services.dataplane.resolve_version("echo")
    other = "1" if default == "2" else "2"

    async def answered(message: Any, **headers: str) -> tuple[Any, dict[str, str]]:
        async with sender(broker) as s:
            data = await s.request(json.dumps(message).encode(), headers=headers)
            return json.loads(data), s.last_headers

    answer, headers = await answered({"text": "hi"})
    assert answer == {"echo": "hi", "length": 2}
    assert (headers["model"], headers["model-version"]) == ("echo", default)
    _, headers = await answered({"text": "hi", "version": other})
    assert headers["model-version"] == other
    _, headers = await answered({"texts": ["a", "b"]}, version=other)  # the version in a header
    assert headers["model-version"] == other
    refused, headers = await answered({"text": "bad", "version": other})  # the model answered: an error
    assert refused["error"]["code"] == "INVALID_ARGUMENT"
    assert headers["model-version"] == other
    unknown, headers = await answered({"text": "hi", "version": "9"})  # no version ran
    assert unknown["error"]["code"] == "NOT_FOUND"
    assert "model-version" not in headers
    assert headers["model"] == "echo"
    assert headers["x-request-id"]


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
