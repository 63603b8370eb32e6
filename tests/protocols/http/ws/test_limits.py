"""WebSocket rate limits on a real server: messages per connection (error, then close 1008) and
connections per principal (429 at the handshake), on only when rate limits are."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from modelwire.settings import RateLimitSettings, Settings
from tests.models import EchoModel
from tests.protocols.http.ws.conftest import ws_url
from tests.protocols.http.ws.test_session import receive, services, until_closed
from tests.serving import ThreadedServer


@pytest.fixture
def start(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., ThreadedServer]]:
    """``start(**rate_limits)``: a server with those ``rate_limits`` settings; stopped at the end."""
    started: list[ThreadedServer] = []

    def run(**rate_limits: Any) -> ThreadedServer:
        server = ThreadedServer(make_settings(rate_limits=RateLimitSettings(**rate_limits)), EchoModel())
        started.append(server)
        return server.start()

    try:
        yield run
    finally:
        for server in started:
            server.stop()


async def test_messages_over_the_rate_get_an_error_then_a_flood_is_closed_1008(
    start: Callable[..., ThreadedServer],
) -> None:
    burst = 3
    server = start(enabled=True, ws_messages_per_s=0.1, ws_message_burst=burst)  # a token every 10 s
    async with connect(ws_url(server, "/v1/models/echo/ws")) as ws:
        for i in range(burst):
            await ws.send(json.dumps({"id": i, "op": "predict", "text": f"t{i}"}))
            reply = await receive(ws)
            assert (reply["id"], reply["echo"]) == (i, f"t{i}")
        for i in range(burst, 2 * burst):  # refused, answered, the socket stays open
            await ws.send(json.dumps({"id": i, "op": "predict", "text": "late"}))
            reply = await receive(ws)
            assert reply["id"] == i
            assert reply["op"] == "error"
            assert reply["error"]["code"] == "RESOURCE_EXHAUSTED"
            assert 0 < reply["error"]["retry_after_s"] <= 10
        await ws.send(json.dumps({"id": 99, "op": "ping"}))  # past twice the burst: closed
        replies, close = await until_closed(ws)
    assert replies == []
    assert close.code == 1008
    assert "message rate limit" in close.reason


async def test_a_client_that_waits_retry_after_is_served(start: Callable[..., ThreadedServer]) -> None:
    server = start(enabled=True, ws_messages_per_s=2.0, ws_message_burst=1)
    async with connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"id": 1, "op": "ping"}))
        assert (await receive(ws))["op"] == "pong"
        await ws.send(json.dumps({"id": 2, "op": "ping"}))
        refused = await receive(ws)
        assert refused["error"]["code"] == "RESOURCE_EXHAUSTED"
        await asyncio.sleep(refused["error"]["retry_after_s"])
        await ws.send(json.dumps({"id": 3, "op": "ping"}))
        assert await receive(ws) == {"id": 3, "op": "pong"}


async def test_connections_per_principal_are_refused_at_the_handshake_with_429(
    start: Callable[..., ThreadedServer],
) -> None:
    server = start(enabled=True, ws_connections_per_principal=2)
    live = services(server).metrics.live
    async with connect(ws_url(server)) as first, connect(ws_url(server, "/v1/models/echo/ws")):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(server)):
                pass
        response = refused.value.response
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        error = json.loads(response.body or b"")["error"]
        assert error["code"] == "RESOURCE_EXHAUSTED"
        assert "ws_connections_per_principal" in error["message"]
        await first.close()
        for _ in range(500):  # the server notices the close on its own time
            if live.connections("ws") < 2:
                break
            await asyncio.sleep(0.01)
        async with connect(ws_url(server)) as third:
            await third.send(json.dumps({"id": 1, "op": "ping"}))
            assert (await receive(third))["op"] == "pong"


async def test_off_by_default_on_loopback_without_auth(start: Callable[..., ThreadedServer]) -> None:
    server = start(ws_connections_per_principal=1, ws_messages_per_s=0.1, ws_message_burst=1)
    async with connect(ws_url(server)) as first, connect(ws_url(server)) as second:
        for ws in (first, second):
            for i in range(3):
                await ws.send(json.dumps({"id": i, "op": "ping"}))
                assert (await receive(ws))["op"] == "pong"


async def test_a_refused_flood_does_not_stop_other_sockets(start: Callable[..., ThreadedServer]) -> None:
    server = start(enabled=True, ws_messages_per_s=0.1, ws_message_burst=1)
    async with connect(ws_url(server)) as flood, connect(ws_url(server)) as calm:
        for i in range(3):
            await flood.send(json.dumps({"id": i, "op": "ping"}))
        _replies, close = await until_closed(flood)
        assert close.code == 1008
        await calm.send(json.dumps({"id": 1, "op": "ping"}))
        assert (await receive(calm))["op"] == "pong"
