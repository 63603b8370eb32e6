"""Message framing without I/O: subprotocol choice, every client message shape, server messages."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from modelwire.errors import ErrorCode, InvalidInputError, ModelNotFoundError
from modelwire.events.bus import Event
from modelwire.protocols.http.ws import framing
from modelwire.protocols.http.ws.framing import Codec, Malformed, Ping, Predict, Subscribe, Unsubscribe


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ([], None),
        (["modelwire.v1.json"], "modelwire.v1.json"),
        (["modelwire.v1.msgpack"], "modelwire.v1.msgpack"),
        (["chat", "modelwire.v1.msgpack", "modelwire.v1.json"], "modelwire.v1.msgpack"),
    ],
)
def test_select_subprotocol(offered: list[str], chosen: str | None) -> None:
    assert framing.select_subprotocol(offered) == chosen


def test_an_unknown_only_offer_is_refused() -> None:
    with pytest.raises(InvalidInputError) as caught:
        framing.select_subprotocol(["chat", "v2.json"])
    assert caught.value.field == "Sec-WebSocket-Protocol"
    assert "chat" in caught.value.message
    assert "modelwire.v1.json" in caught.value.message


@pytest.mark.parametrize(
    ("message", "op"),
    [
        ({"id": 1, "op": "predict", "text": "hi"}, Predict(1, "hi", "text")),
        ({"id": "a", "op": "predict", "instance": [1, 2]}, Predict("a", [1, 2], "instance")),
        (
            {"id": "a", "op": "predict", "text": "hi", "model": "echo", "version": "2"},
            Predict("a", "hi", "text", "echo", "2"),
        ),
        ({"op": "subscribe", "topic": "metrics"}, Subscribe("metrics")),
        ({"op": "subscribe", "topic": "jobs/*", "id": 7}, Subscribe("jobs/*", 7)),
        ({"op": "unsubscribe", "topic": "models", "id": "x"}, Unsubscribe("models", "x")),
        ({"op": "ping"}, Ping()),
        ({"op": "ping", "id": 3}, Ping(3)),
    ],
)
def test_well_formed_messages(message: dict[str, Any], op: framing.Op) -> None:
    assert framing.parse(message) == op


@pytest.mark.parametrize(
    ("message", "bad_id", "field", "words"),
    [
        ([1, 2], None, "$", "object"),
        ({"op": "predict", "text": "hi"}, None, "$.id", "needs an 'id'"),
        ({"id": 1.5, "op": "predict", "text": "hi"}, None, "$.id", "string or an integer"),
        ({"id": True, "op": "predict", "text": "hi"}, None, "$.id", "string or an integer"),
        ({"id": 4, "text": "hi"}, 4, "$.op", "no 'op'"),
        ({"id": 4, "op": "launch"}, 4, "$.op", "unknown op 'launch'"),
        ({"id": "q", "op": "predict", "text": 12}, "q", "$.text", "must be a string"),
        ({"id": "q", "op": "predict"}, "q", "$", "exactly one"),
        ({"id": "q", "op": "predict", "text": "a", "instance": 1}, "q", "$", "exactly one"),
        ({"id": "q", "op": "predict", "text": "a", "model": 3}, "q", "$.model", "must be a string"),
        ({"id": "q", "op": "predict", "text": "a", "version": 1}, "q", "$.version", "must be a string"),
        ({"id": 9, "op": "subscribe"}, 9, "$.topic", "needs a 'topic'"),
        ({"id": 9, "op": "subscribe", "topic": "secrets"}, 9, "$.topic", "unknown topic"),
    ],
)
def test_malformed_messages_name_the_id_and_field(message: Any, bad_id: Any, field: str, words: str) -> None:
    result = framing.parse(message)
    assert isinstance(result, Malformed)
    assert result.id == bad_id
    assert result.error.code is ErrorCode.INVALID_ARGUMENT
    assert result.error.field == field
    assert words in result.error.message


@pytest.mark.parametrize("subprotocol", [None, framing.JSON, framing.MSGPACK])
def test_codec_round_trip(subprotocol: str | None) -> None:
    codec = Codec(subprotocol)
    message = {"id": 1, "op": "predict", "text": "héllo"}
    raw = msgspec.msgpack.encode(message) if codec.binary else msgspec.json.encode(message).decode()
    assert codec.decode(raw) == Predict(1, "héllo", "text")
    out = codec.encode(framing.prediction(1, {"sentiment": "positive"}))
    assert isinstance(out, bytes if codec.binary else str)
    decoded = msgspec.msgpack.decode(out) if codec.binary else msgspec.json.decode(out)
    assert decoded == {"id": 1, "sentiment": "positive"}


@pytest.mark.parametrize(("subprotocol", "payload"), [(None, "{nope"), (framing.MSGPACK, b"\xc1")])
def test_undecodable_payloads(subprotocol: str | None, payload: str | bytes) -> None:
    result = Codec(subprotocol).decode(payload)
    assert isinstance(result, Malformed)
    assert result.id is None
    assert result.error.field == "$"
    assert ("msgpack" if subprotocol else "JSON") in result.error.message


def test_server_messages() -> None:
    assert framing.prediction("a", {"echo": "x"}) == {"id": "a", "echo": "x"}
    assert framing.prediction(2, 41.5) == {"id": 2, "result": 41.5}
    err = ModelNotFoundError("no model 'x'")
    assert framing.error(5, err) == {
        "op": "error",
        "id": 5,
        "error": {"code": "NOT_FOUND", "message": "no model 'x'", "reason": "MODEL_NOT_FOUND"},
    }
    assert framing.ack("subscribed", "metrics", None) == {"op": "subscribed", "topic": "metrics"}
    assert framing.ack("unsubscribed", "models", 3) == {"op": "unsubscribed", "topic": "models", "id": 3}
    assert framing.pong(None) == {"op": "pong"}
    assert framing.pong("p") == {"op": "pong", "id": "p"}
    assert framing.ping(12.5) == {"op": "ping", "time": 12.5}
    event = Event(10, "models", "model.loaded", {"name": "echo"}, time=1.0)
    assert framing.event(event) == {
        "op": "event",
        "topic": "models",
        "id": 10,
        "type": "model.loaded",
        "time": 1.0,
        "data": {"name": "echo"},
    }
