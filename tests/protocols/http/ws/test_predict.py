"""Predictions over a real WebSocket: both subprotocols, pipelining, per-message errors, backpressure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from modelwire.model.base import Model
from tests.models import EchoModel
from tests.protocols.http.ws.conftest import MAX_INFLIGHT, MAX_MESSAGE, GateModel, ws_url
from tests.serving import ThreadedServer


async def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


def model(server: ThreadedServer, name: str) -> Model:
    assert server.server is not None
    assert server.server.services is not None
    return server.server.services.registry.get(name).model


async def test_predict_over_json(server: ThreadedServer) -> None:
    async with connect(ws_url(server), subprotocols=["modelwire.v1.json"]) as ws:
        assert ws.subprotocol == "modelwire.v1.json"
        reply = await ask(ws, {"id": "r1", "op": "predict", "text": "I love this product"})
        assert reply["id"] == "r1"
        assert reply["sentiment"] == "positive"
        assert 0.5 < reply["confidence"] <= 1.0
        assert await ask(ws, {"id": 2, "op": "predict", "text": "hello", "model": "echo"}) == {
            "id": 2,
            "version": "1",  # which version answered
            "echo": "hello",
            "length": 5,
        }


async def test_no_subprotocol_means_json_text_frames(server: ThreadedServer) -> None:
    async with connect(ws_url(server)) as ws:
        assert ws.subprotocol is None
        await ws.send(json.dumps({"id": 1, "op": "predict", "text": "An awful, boring film."}))
        raw = await ws.recv()
        assert isinstance(raw, str)
        assert json.loads(raw)["sentiment"] == "negative"


async def test_predict_over_msgpack_binary_frames(server: ThreadedServer) -> None:
    offer = ["chat.v9", "modelwire.v1.msgpack", "modelwire.v1.json"]
    async with connect(ws_url(server), subprotocols=offer) as ws:
        assert ws.subprotocol == "modelwire.v1.msgpack"  # the client's first one we speak
        await ws.send(msgspec.msgpack.encode({"id": 7, "op": "predict", "text": "I love this product"}))
        raw = await ws.recv()
        assert isinstance(raw, bytes)
        reply = msgspec.msgpack.decode(raw)
        assert reply["id"] == 7
        assert reply["sentiment"] == "positive"
        await ws.send(msgspec.msgpack.encode({"id": 8, "op": "predict", "text": 5}))
        error = msgspec.msgpack.decode(await ws.recv())
        assert error["op"] == "error"
        assert error["id"] == 8
        assert error["error"]["field"] == "$.text"


async def test_pipelined_requests_are_all_answered_by_id_and_batched(server: ThreadedServer) -> None:
    echo = model(server, "echo")
    assert isinstance(echo, EchoModel)
    echo.calls.clear()
    ids: list[str | int] = [f"s{i}" if i % 2 else i for i in range(300)]
    async with connect(ws_url(server, "/v1/models/echo/ws")) as ws:
        for request_id in ids:
            await ws.send(json.dumps({"id": request_id, "op": "predict", "text": f"text {request_id}"}))
        replies = [json.loads(await ws.recv()) for _ in ids]
    assert sorted(map(str, (r["id"] for r in replies))) == sorted(map(str, ids))
    assert all(r["echo"] == f"text {r['id']}" for r in replies)  # each id got its own answer
    assert max(len(call) for call in echo.calls) > 1  # through the same batching as REST


async def test_model_endpoint(server: ThreadedServer) -> None:
    async with connect(ws_url(server, "/v1/models/echo/ws")) as ws:
        assert await ask(ws, {"id": 1, "op": "predict", "text": "hi", "version": "1"}) == {
            "id": 1,
            "version": "1",
            "echo": "hi",
            "length": 2,
        }
        reply = await ask(ws, {"id": 2, "op": "predict", "text": "hi", "model": "sentiment"})
        assert reply["op"] == "error"
        assert reply["error"]["field"] == "$.model"
        assert await ask(ws, {"id": 3, "op": "predict", "text": "ok", "model": "echo"}) == {
            "id": 3,
            "version": "1",
            "echo": "ok",
            "length": 2,
        }


async def test_unknown_model(server: ThreadedServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server, "/v1/models/nope/ws")):
            pass
    assert refused.value.response.status_code == 404
    assert json.loads(refused.value.response.body or b"")["error"]["code"] == "NOT_FOUND"
    async with connect(ws_url(server)) as ws:
        reply = await ask(ws, {"id": "m", "op": "predict", "text": "hi", "model": "nope"})
        assert reply["op"] == "error"
        assert reply["id"] == "m"
        assert reply["error"]["code"] == "NOT_FOUND"
        reply = await ask(ws, {"id": "v", "op": "predict", "text": "hi", "version": "42"})
        assert (reply["id"], reply["error"]["code"]) == ("v", "NOT_FOUND")


async def test_unknown_subprotocol_is_refused_at_the_handshake(server: ThreadedServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server), subprotocols=["graphql-ws"]):
            pass
    response = refused.value.response
    assert response.status_code == 400
    error = json.loads(response.body or b"")["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["field"] == "Sec-WebSocket-Protocol"
    assert "modelwire.v1.msgpack" in error["message"]


@pytest.mark.parametrize(
    ("payload", "bad_id", "field"),
    [
        ("{not json", None, "$"),
        ('"a string"', None, "$"),
        ('{"op": "predict", "text": "no id"}', None, "$.id"),
        ('{"id": 5, "op": "teleport"}', 5, "$.op"),
        ('{"id": 6, "text": "no op"}', 6, "$.op"),
        ('{"id": "w", "op": "predict", "text": ["not", "a", "string"]}', "w", "$.text"),
        ('{"id": "t", "op": "subscribe", "topic": "everything"}', "t", "$.topic"),
    ],
)
async def test_malformed_message_gets_an_error_and_the_socket_stays_open(
    server: ThreadedServer, payload: str, bad_id: Any, field: str
) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(payload)
        reply = json.loads(await ws.recv())
        assert reply["op"] == "error"
        assert reply["id"] == bad_id
        assert reply["error"]["code"] == "INVALID_ARGUMENT"
        assert reply["error"]["field"] == field
        assert reply["error"]["message"]
        ok = await ask(ws, {"id": "after", "op": "predict", "text": "I love this product"})
        assert ok["sentiment"] == "positive"


@pytest.mark.parametrize(
    ("message", "code", "field"),
    [
        ({"model": "echo", "text": "bad"}, "INVALID_ARGUMENT", None),
        ({"model": "echo", "text": "x" * 2001}, "PAYLOAD_TOO_LARGE", "$.text"),
        ({"model": "echo", "instance": 3}, "INVALID_ARGUMENT", None),
        ({"model": "broken", "text": "boom"}, "INTERNAL", None),
    ],
)
async def test_a_failed_prediction_is_an_error_reply(
    server: ThreadedServer, message: dict[str, Any], code: str, field: str | None
) -> None:
    async with connect(ws_url(server)) as ws:
        reply = await ask(ws, {"id": "e", "op": "predict", **message})
        assert reply["op"] == "error"
        assert reply["id"] == "e"
        assert reply["error"]["code"] == code
        assert "secret" not in reply["error"]["message"]
        if field:
            assert reply["error"]["field"] == field
        if code == "INTERNAL":
            assert reply["error"]["details"]["error_id"]
        assert (await ask(ws, {"id": 1, "op": "predict", "text": "good"}))["id"] == 1


async def test_oversize_message_closes_1009(server: ThreadedServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"id": 1, "op": "predict", "text": "a" * MAX_MESSAGE}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert str(MAX_MESSAGE) in closed.value.rcvd.reason


@pytest.mark.parametrize(("subprotocols", "frame"), [(None, b"{}"), (["modelwire.v1.msgpack"], "{}")])
async def test_a_frame_of_the_wrong_type_closes_1003(
    server: ThreadedServer, subprotocols: list[Any] | None, frame: str | bytes
) -> None:
    async with connect(ws_url(server), subprotocols=subprotocols) as ws:
        await ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1003


async def test_an_internal_failure_closes_1011_with_the_error_id(server: ThreadedServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"id": 1, "op": "predict", "text": "x", "model": "odd"}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011
    assert "error_id=" in closed.value.rcvd.reason
    async with connect(ws_url(server)) as ws:  # the server itself is fine
        assert (await ask(ws, {"id": 2, "op": "predict", "text": "fine"}))["id"] == 2


async def inflight(server: ThreadedServer) -> int:
    assert server.server is not None
    assert server.server.services is not None
    return server.server.services.dataplane.inflight


async def wait_for(condition: Callable[[], Any], what: str) -> None:
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


async def test_at_the_inflight_cap_the_server_stops_reading(server: ThreadedServer, gate: GateModel) -> None:
    sent = 200
    async with (
        connect(ws_url(server, "/v1/models/gate/ws")) as flooder,
        connect(ws_url(server)) as other,
    ):
        for i in range(sent):
            await flooder.send(json.dumps({"id": i, "op": "predict", "text": f"t{i}"}))

        async def capped() -> bool:
            return await inflight(server) >= MAX_INFLIGHT

        await wait_for(capped, "the flooding socket to reach its in-flight cap")
        # Another socket is answered while the first is held at its cap...
        for i in range(5):
            assert (await ask(other, {"id": i, "op": "predict", "text": "hi", "model": "echo"}))["id"] == i
        # ... and the held socket took no more than its cap into the data plane: the rest waits unread.
        assert await inflight(server) == MAX_INFLIGHT
        gate.gate.set()
        replies = [json.loads(await flooder.recv()) for _ in range(sent)]
    assert sorted(r["id"] for r in replies) == list(range(sent))


async def test_a_client_that_never_reads_does_not_stall_the_others(server: ThreadedServer) -> None:
    total, text = 8000, "x" * 1900
    echo = model(server, "echo")
    assert isinstance(echo, EchoModel)
    echo.calls.clear()
    async with connect(ws_url(server, "/v1/models/echo/ws")) as sink:

        async def flood() -> None:
            for i in range(total):
                await sink.send(json.dumps({"id": i, "op": "predict", "text": text}))

        flooding = asyncio.create_task(flood())
        async with connect(ws_url(server)) as other:
            for i in range(20):
                reply = await ask(other, {"id": i, "op": "predict", "text": "I love this product"})
                assert reply["sentiment"] == "positive"
        answered = sum(len(call) for call in echo.calls)
        # The server answered only what the socket buffers hold, then stopped reading the sink.
        assert answered < total
        assert not flooding.done()
        ids = set()
        while len(ids) < total:  # start reading: everything is answered, nothing was lost
            ids.add(json.loads(await sink.recv())["id"])
        await flooding
    assert ids == set(range(total))
