"""The life of a connection: events, keep-alive, idle timeout, shutdown, limits, the echo endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close

from modelwire.app.services import Services
from tests.protocols.http.ws.conftest import ws_url
from tests.serving import ThreadedServer


def services(server: ThreadedServer) -> Services:
    assert server.server is not None
    assert server.server.services is not None
    return server.server.services


def publish(server: ThreadedServer, topic: str, type_: str, data: dict[str, Any]) -> None:
    bus = services(server).events
    server._call(lambda: bus.publish(topic, type_, data))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], Close]:
    """Every message until the server closes, and the close frame it sent."""
    messages = []
    try:
        while True:
            messages.append(await receive(ws))
    except ConnectionClosed as closed:
        close = closed.rcvd
    assert close is not None, "the server closed without a close frame"
    return messages, close


async def next_op(ws: ClientConnection, op: str, **match: Any) -> dict[str, Any]:
    """The next message with this ``op`` (and fields), skipping others (metrics ticks, pings)."""
    while True:
        message = await receive(ws)
        if message.get("op") == op and all(message.get(k) == v for k, v in match.items()):
            return message


async def test_subscribe_receive_events_and_unsubscribe(server: ThreadedServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "metrics", "id": "s1"}))
        assert await next_op(ws, "subscribed") == {"op": "subscribed", "topic": "metrics", "id": "s1"}
        tick = await next_op(ws, "event", topic="metrics")
        assert isinstance(tick["id"], int)
        assert tick["type"] == "metrics"
        assert tick["data"]["protocols"]["ws"]["connections"] >= 1
        await ws.send(json.dumps({"op": "subscribe", "topic": "models"}))
        assert (await next_op(ws, "subscribed"))["topic"] == "models"
        publish(server, "models", "model.loaded", {"name": "x", "version": "9", "ready": True})
        loaded = await next_op(ws, "event", topic="models")
        assert (loaded["type"], loaded["data"]["version"]) == ("model.loaded", "9")
        assert loaded["id"] > tick["id"]

        await ws.send(json.dumps({"op": "unsubscribe", "topic": "metrics", "id": 2}))
        assert await next_op(ws, "unsubscribed") == {"op": "unsubscribed", "topic": "metrics", "id": 2}
        publish(server, "models", "model.unloaded", {"name": "x", "version": "9", "ready": False})
        await next_op(ws, "event", type="model.unloaded")  # ticks queued before the ack may come first
        await asyncio.sleep(0.3)  # three metrics intervals: a tick would be published if still subscribed
        publish(server, "models", "model.loaded", {"name": "y", "version": "1", "ready": True})
        after = await receive(ws)
        assert (after["op"], after["topic"], after["data"]["name"]) == ("event", "models", "y")


async def test_predictions_and_events_share_the_socket(server: ThreadedServer) -> None:
    async with connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "metrics"}))
        for i in range(20):
            await ws.send(json.dumps({"id": i, "op": "predict", "text": "I love this product"}))
        answered: set[int] = set()
        events = 0
        while len(answered) < 20 or not events:
            message = await receive(ws)
            if message.get("op") == "event":
                events += 1
            elif "sentiment" in message:
                answered.add(message["id"])
        assert answered == set(range(20))


async def test_a_slow_event_reader_is_told_and_closed_1013(
    start_server: Callable[..., ThreadedServer],
) -> None:
    server = start_server(events={"queue_size": 4})
    async with connect(ws_url(server)) as stuck, connect(ws_url(server)) as keeping_up:
        for ws in (stuck, keeping_up):
            await ws.send(json.dumps({"op": "subscribe", "topic": "models"}))
            assert (await next_op(ws, "subscribed"))["topic"] == "models"
        blob = "z" * 100_000
        for i in range(300):  # ~30 MB, paced by the reader that keeps up; ``stuck`` never reads
            publish(server, "models", "model.loaded", {"i": i, "blob": blob})
            assert (await next_op(keeping_up, "event"))["data"]["i"] == i
        await keeping_up.send(json.dumps({"id": 1, "op": "predict", "text": "I love this product"}))
        assert (await receive(keeping_up))["id"] == 1
        messages, close = await until_closed(stuck)
    seen = sum(1 for m in messages if m["op"] == "event")
    assert 0 < seen < 300  # what the socket buffers held when the bus dropped it
    assert close.code == 1013
    assert "dropped" in close.reason
    errors = [m for m in messages if m["op"] == "error"]
    assert all(e["error"]["code"] == "RESOURCE_EXHAUSTED" for e in errors)  # sent if the socket had room


async def test_pings(start_server: Callable[..., ThreadedServer]) -> None:
    server = start_server(ping_interval_s=0.1)
    async with connect(ws_url(server), ping_interval=None) as ws:
        pong = await ws.ping(b"hello")  # protocol ping: answered by the server's WebSocket stack
        assert await pong >= 0
        await ws.send(json.dumps({"op": "ping", "id": 3}))  # what a browser can send
        assert await next_op(ws, "pong") == {"op": "pong", "id": 3}
        ping = await next_op(ws, "ping")  # the server's keep-alive on a quiet socket
        assert isinstance(ping["time"], float)


async def test_idle_timeout_closes_1000(start_server: Callable[..., ThreadedServer]) -> None:
    server = start_server(idle_timeout_s=0.5, ping_interval_s=0.1)
    async with connect(ws_url(server), ping_interval=None) as ws:
        messages, close = await until_closed(ws)
    assert messages  # keep-alive pings, which do not count as activity
    assert {m["op"] for m in messages} == {"ping"}
    assert close.code == 1000
    assert "idle" in close.reason


async def test_shutdown_answers_in_flight_then_closes_1001(
    start_server: Callable[..., ThreadedServer],
) -> None:
    server = start_server(max_inflight=4)
    dataplane = services(server).dataplane
    async with connect(ws_url(server, "/v1/models/slow/ws")) as ws:
        for i in range(10):
            await ws.send(json.dumps({"id": i, "op": "predict", "text": f"t{i}"}))
        for _ in range(1000):  # SlowModel takes 0.3 s: wait until the server has read up to its cap
            if dataplane.inflight == 4:
                break
            await asyncio.sleep(0.005)
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        replies, close = await until_closed(ws)
        await stopping
    # What was read is answered; the rest was never read (the server stopped reading at its cap).
    assert sorted(r["id"] for r in replies) == [0, 1, 2, 3]
    assert all(r["echo"] == f"t{r['id']}" for r in replies)
    assert close.code == 1001


async def test_connection_cap_refuses_at_the_handshake(start_server: Callable[..., ThreadedServer]) -> None:
    server = start_server(max_connections=2)
    live = services(server).metrics.live
    async with connect(ws_url(server)) as first, connect(ws_url(server, "/v1/models/echo/ws")):
        assert live.connections("ws") == 2
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(server)):
                pass
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "1"
        assert json.loads(refused.value.response.body or b"")["error"]["code"] == "UNAVAILABLE"
        await first.close()
        for _ in range(500):  # the server notices the close on its own time
            if live.connections("ws") < 2:
                break
            await asyncio.sleep(0.01)
        async with connect(ws_url(server)) as third:
            await third.send(json.dumps({"id": 1, "op": "predict", "text": "hi"}))
            assert (await receive(third))["id"] == 1
    for _ in range(500):
        if live.connections("ws") == 0:
            break
        await asyncio.sleep(0.01)
    assert live.connections("ws") == 0
    assert 'modelwire_open_connections{protocol="ws"} 0.0' in services(server).metrics.render().decode()


async def test_echo_endpoint(server: ThreadedServer) -> None:
    async with connect(ws_url(server, "/v1/ws/echo")) as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"


async def test_echo_is_off_by_default(start_server: Callable[..., ThreadedServer]) -> None:
    """A disabled echo is a route that does not exist: 404 and the error body of any unknown route."""
    server = start_server(echo=False)
    for path in ("/v1/ws/echo", "/v1/ws/nothing-here"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(server, path)):
                pass
        response = refused.value.response
        assert response.status_code == 404, path
        assert response.headers["Content-Type"] == "application/json"
        error = json.loads(response.body or b"")["error"]
        assert error["code"] == "NOT_FOUND"
        assert path in error["message"]


def frame(opcode: int, payload: bytes, *, masked: bool = True, rsv: int = 0) -> bytes:
    """One raw client frame (RFC 6455 section 5.2), for violations no well-behaved client sends."""
    head = bytes([0x80 | rsv << 4 | opcode])
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    else:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def raw_exchange(server: ThreadedServer, path: str, data: bytes) -> bytes:
    """Handshake by hand, send ``data``, return what the server sends back until it closes."""
    host, port = server.http_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def close_code(data: bytes) -> int | None:
    assert data[0] == 0x88, f"expected a close frame, got {data[:16]!r}"
    return struct.unpack("!H", data[2:4])[0] if data[1] >= 2 else None


@pytest.mark.parametrize(
    ("violation", "codes"),
    [
        # granian's stack fails these connections itself, with a close frame that carries no code
        # (RFC 6455 7.1.7 allows that; the status is a SHOULD); see docs/decisions.md.
        (frame(1, b"\xff\xfe"), (None, 1007)),  # text that is not UTF-8
        (frame(1, b"hi", rsv=1), (None, 1002)),  # reserved bit without an extension
        (frame(1, b"hi", masked=False), (None, 1002)),  # unmasked client frame
        (frame(8, struct.pack("!H", 999)), (1002,)),  # close with an invalid code
        (frame(8, struct.pack("!H", 4000)), (4000,)),  # a valid close is echoed
    ],
)
async def test_protocol_violations_fail_the_connection(
    server: ThreadedServer, violation: bytes, codes: tuple[int | None, ...]
) -> None:
    for path in ("/v1/ws", "/v1/ws/echo"):
        assert close_code(await raw_exchange(server, path, violation)) in codes
    async with connect(ws_url(server)) as ws:  # and the server keeps serving
        await ws.send(json.dumps({"id": 1, "op": "predict", "text": "hi"}))
        assert (await receive(ws))["id"] == 1


async def test_shutdown_with_idle_sockets(start_server: Callable[..., ThreadedServer]) -> None:
    server = start_server()
    async with connect(ws_url(server)) as subscribed, connect(ws_url(server, "/v1/ws/echo")) as echo:
        await subscribed.send(json.dumps({"op": "subscribe", "topic": "server"}))
        assert (await next_op(subscribed, "subscribed"))["topic"] == "server"
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        messages, close = await until_closed(subscribed)
        _, echo_close = await until_closed(echo)
        await stopping
    assert [m["type"] for m in messages if m["op"] == "event"] == ["server.stopping"]
    assert close.code == 1001
    assert echo_close.code == 1001


async def test_topics_per_socket_are_bounded(server: ThreadedServer) -> None:
    async with connect(ws_url(server)) as ws:
        for i in range(64):
            await ws.send(json.dumps({"op": "subscribe", "topic": f"jobs/job-{i}", "id": i}))
            assert (await next_op(ws, "subscribed"))["id"] == i
        await ws.send(json.dumps({"op": "subscribe", "topic": "jobs/one-too-many", "id": "x"}))
        error = await next_op(ws, "error")
        assert (error["id"], error["error"]["field"]) == ("x", "$.topic")
        await ws.send(json.dumps({"op": "subscribe", "topic": "jobs/job-3", "id": "again"}))
        assert (await next_op(ws, "subscribed"))["id"] == "again"  # one it already has is fine
