"""Hypothesis-generated WebSocket traffic against a real server: valid-ish ops with wrong fields, any JSON
or msgpack value, garbage text and bytes, on the JSON and msgpack subprotocols, in text and binary frames.

Whatever a client sends, the server answers its mistakes as the client's (an ``error`` reply, or a close
with a client-side code such as 1003/1008/1009), never with an internal error (an ``INTERNAL`` reply or a
1011 close), and it keeps serving: the same connection (or, once closed, a new one) still answers a ping.
Bounded: ``MAX_EXAMPLES`` connections, each with a time limit.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from modelwire.settings import LimitsSettings, WebSocketSettings
from tests.models import EchoModel
from tests.protocols.http.ws.conftest import ws_url
from tests.serving import ServeModule, ThreadedServer

MAX_EXAMPLES = 150
CLIENT_CLOSE_CODES = {1002, 1003, 1007, 1008, 1009}
"""Closes that blame the client (protocol error, wrong frame type, bad data, policy, too big)."""
SUBPROTOCOLS = [None, "modelwire.v1.json", "modelwire.v1.msgpack"]


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    return serve_module(
        EchoModel(),
        trained=False,
        limits=LimitsSettings(max_text_chars=2000),
        ws=WebSocketSettings(max_message_bytes=64 * 1024),
    )


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["echo", "sentiment", "nope", "jobs/*", "jobs/x", "metrics", "*", ""])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
msgpack_only = st.binary(max_size=20) | st.builds(
    msgspec.msgpack.Ext, st.integers(0, 127), st.binary(max_size=8)
)
messages = st.fixed_dictionaries(
    {"op": st.sampled_from(["predict", "subscribe", "unsubscribe", "ping", "nope"]) | values},
    optional={
        "id": values,
        "text": values,
        "instance": values | msgpack_only,
        "model": values,
        "version": values,
        "topic": values,
    },
)


@st.composite
def frames(draw: st.DrawFn, subprotocol: str | None) -> str | bytes:
    """One frame: usually a message encoded as the subprotocol wants, sometimes anything at all."""
    kind = draw(st.sampled_from(["message", "message", "message", "value", "text", "bytes"]))
    binary = subprotocol == "modelwire.v1.msgpack"
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    value = draw(messages if kind == "message" else values)
    if binary:
        return msgspec.msgpack.encode(value)
    value = json.loads(json.dumps(value, allow_nan=True, default=repr))  # msgpack-only values as text
    return json.dumps(value)


async def ping(ws: ClientConnection, binary: bool) -> list[dict[str, Any]]:
    """Ping on ``ws``; every reply up to the pong (``ConnectionClosed`` if the server closed instead)."""
    probe = {"op": "ping", "id": "probe"}
    await ws.send(msgspec.msgpack.encode(probe) if binary else json.dumps(probe))
    replies = []
    while True:
        raw = await ws.recv()
        reply = msgspec.msgpack.decode(raw) if isinstance(raw, bytes) else json.loads(raw)
        replies.append(reply)
        if reply.get("op") == "pong" and reply.get("id") == "probe":
            return replies


async def exchange(url: str, subprotocol: str | None, sent: list[str | bytes]) -> None:
    binary = subprotocol == "modelwire.v1.msgpack"
    offered: Any = [subprotocol] if subprotocol else None
    replies: list[dict[str, Any]] = []
    close: ConnectionClosed | None = None
    async with asyncio.timeout(20):
        async with connect(url, subprotocols=offered, max_size=None) as ws:
            try:
                for frame in sent:
                    await ws.send(frame)
                replies = await ping(ws, binary)
            except ConnectionClosed as closed:
                close = closed
        if close is not None and close.rcvd is not None:
            assert close.rcvd.code in CLIENT_CLOSE_CODES, close.rcvd
        elif close is not None:
            # granian drops the TCP connection as soon as it has sent its close frame, so a client still
            # sending may see a reset instead of that frame; only a close the client asked for can do that
            wrong_type = any(isinstance(frame, bytes) != binary for frame in sent)
            assert wrong_type, f"the connection ended with no close frame: {close!r}"
        for reply in replies:
            if reply.get("op") == "error":
                assert reply["error"]["code"] != "INTERNAL", reply
        async with connect(url, subprotocols=offered) as ws:  # still serving
            assert (await ping(ws, binary))[-1]["op"] == "pong"


@st.composite
def conversations(draw: st.DrawFn) -> tuple[str | None, list[str | bytes]]:
    subprotocol = draw(st.sampled_from(SUBPROTOCOLS))
    return subprotocol, draw(st.lists(frames(subprotocol), min_size=1, max_size=3))


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(conversation=conversations())
def test_no_client_message_is_an_internal_error(
    server: ThreadedServer, conversation: tuple[str | None, list[str | bytes]]
) -> None:
    subprotocol, sent = conversation
    asyncio.run(exchange(ws_url(server), subprotocol, sent))
