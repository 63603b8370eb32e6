"""GET /v1/events over real sockets: events, retry, heartbeat, resume, reset, errors, disconnects, headers."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from modelwire.app.lifecycle import Server
from modelwire.app.services import Services
from modelwire.events.bus import LocalEventBus
from modelwire.events.streaming import RESET_REASON
from tests.protocols.http.sse.conftest import RETRY_MS, decoded, sse_events, wait_until


async def test_events_arrive_with_id_type_and_data(
    client: httpx.AsyncClient, bus: LocalEventBus, services: Services
) -> None:
    stream = sse_events(client, "GET", "/v1/events", params={"topics": "jobs/a,models"})
    first = asyncio.create_task(anext(stream))
    await wait_until(lambda: bus.subscriber_count == 1, "the SSE client subscribed")
    assert services.metrics.live.connections("sse") == 1
    published = await bus.publish("jobs/a", "job.progress", {"done": 3, "text": "two\nlines"})
    await bus.publish("jobs/b", "job.progress", {"not": "subscribed"})
    loaded = await bus.publish("models", "model.loaded", {"name": "echo"})
    assert published is not None
    assert loaded is not None
    sse = await first
    assert sse.id == str(published.id)
    assert sse.event == "job.progress"
    assert decoded(sse) == published.to_dict()
    nxt = await anext(stream)
    assert (nxt.event, nxt.id) == ("model.loaded", str(loaded.id))
    await stream.aclose()


async def test_the_stream_starts_with_the_retry_hint(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/v1/events", params={"topics": "server"}) as response:
        first = await anext(response.aiter_bytes())
    assert first.startswith(f"retry: {RETRY_MS}\n\n".encode())


async def test_a_heartbeat_comment_keeps_an_idle_stream_alive(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/v1/events", params={"topics": "jobs/idle"}) as response:
        lines = response.aiter_lines()
        seen = [await anext(lines) for _ in range(4)]
    assert seen == [f"retry: {RETRY_MS}", "", ": heartbeat", ""]


async def test_metrics_snapshots_reach_a_subscriber(client: httpx.AsyncClient) -> None:
    stream = sse_events(client, "GET", "/v1/events", params={"topics": "metrics"})
    sse = await anext(stream)
    await stream.aclose()
    snapshot = decoded(sse)
    assert (sse.event, snapshot["topic"]) == ("metrics", "metrics")
    assert snapshot["data"]["protocols"]["sse"]["connections"] == 1  # this very stream
    assert {"name": "echo", "version": "1", "ready": True} in snapshot["data"]["models"]


@pytest.mark.parametrize("how", ["header", "query"])
async def test_last_event_id_resumes_after_that_event(
    client: httpx.AsyncClient, bus: LocalEventBus, how: str
) -> None:
    events = [await bus.publish("jobs/r", "step", {"n": n}) for n in range(4)]
    ids = [e.id for e in events if e is not None]
    resume = str(ids[1])
    options = {"headers": {"Last-Event-ID": resume}} if how == "header" else {}
    query = {"topics": "jobs/r"} | ({"last_event_id": resume} if how == "query" else {})
    stream = sse_events(client, "GET", "/v1/events", params=query, **options)
    replayed = [await anext(stream), await anext(stream)]
    assert [sse.id for sse in replayed] == [str(ids[2]), str(ids[3])]
    live = await bus.publish("jobs/r", "step", {"n": 4})
    assert live is not None
    assert (await anext(stream)).id == str(live.id)
    await stream.aclose()


async def test_the_header_wins_over_the_query(client: httpx.AsyncClient, bus: LocalEventBus) -> None:
    events = [await bus.publish("jobs/h", "step", {"n": n}) for n in range(3)]
    ids = [e.id for e in events if e is not None]
    params = {"topics": "jobs/h", "last_event_id": str(ids[0])}
    stream = sse_events(client, "GET", "/v1/events", params=params, headers={"Last-Event-ID": str(ids[1])})
    assert (await anext(stream)).id == str(ids[2])
    await stream.aclose()


async def test_reset_when_the_id_is_too_old(client: httpx.AsyncClient, bus: LocalEventBus) -> None:
    first = await bus.publish("jobs/old", "step", {})
    for _ in range(40):  # the replay ring keeps 16
        await bus.publish("jobs/old", "step", {})
    assert first is not None
    headers = {"Last-Event-ID": str(first.id)}
    stream = sse_events(client, "GET", "/v1/events", params={"topics": "jobs/old"}, headers=headers)
    reset = await anext(stream)
    assert reset.event == "reset"
    assert decoded(reset) == {"reason": RESET_REASON, "last_event_id": first.id}
    live = await bus.publish("jobs/old", "step", {"after": "reset"})
    assert live is not None
    assert (await anext(stream)).id == str(live.id)  # and then live events, nothing replayed
    await stream.aclose()


async def test_reset_for_an_id_that_is_not_one(client: httpx.AsyncClient) -> None:
    headers = {"Last-Event-ID": "from-another-server"}
    stream = sse_events(client, "GET", "/v1/events", params={"topics": "server"}, headers=headers)
    reset = await anext(stream)
    await stream.aclose()
    assert reset.event == "reset"
    assert decoded(reset)["last_event_id"] == "from-another-server"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"topics": "bogus"}, "topic"),
        ({"topics": "metrics,nope"}, "topic"),
        ({"topics": "metrics\r\nid: 1"}, "topic"),
        ({"topics": ""}, "topics"),
        ({}, "topics"),
    ],
)
async def test_bad_topics_are_a_json_400_before_any_stream(
    client: httpx.AsyncClient, bus: LocalEventBus, query: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/events", params=query)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["field"] == field
    assert bus.subscriber_count == 0


async def test_repeated_topics_parameters_add_up(client: httpx.AsyncClient, bus: LocalEventBus) -> None:
    stream = sse_events(client, "GET", "/v1/events", params=[("topics", "jobs/x"), ("topics", "jobs/y")])
    first = asyncio.create_task(anext(stream))
    await wait_until(lambda: bus.subscriber_count == 1, "subscribed")
    await bus.publish("jobs/y", "step", {})
    assert (await first).event == "step"
    await stream.aclose()


async def test_a_disconnect_frees_the_subscription_at_once(
    live: Server, bus: LocalEventBus, services: Services
) -> None:
    # A raw socket: the client reads the first bytes, then hangs up without a word.
    reader, writer = await asyncio.open_connection("127.0.0.1", live.http_port)
    writer.write(b"GET /v1/events?topics=jobs/gone HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"retry: ")
    assert head.startswith(b"HTTP/1.1 200")
    assert bus.subscriber_count == 1
    assert services.metrics.live.connections("sse") == 1
    writer.close()
    await writer.wait_closed()
    # No event is published and the heartbeat is not what notices: the ASGI disconnect is.
    await wait_until(lambda: bus.subscriber_count == 0, "the subscription was released")
    await wait_until(lambda: services.metrics.live.connections("sse") == 0, "the connection was counted out")
    assert 'modelwire_open_connections{protocol="sse"} 0.0' in services.metrics.render().decode()


async def test_a_slow_reader_gets_an_error_event_and_the_end(
    client: httpx.AsyncClient, bus: LocalEventBus
) -> None:
    async with client.stream("GET", "/v1/events", params={"topics": "jobs/flood"}) as response:
        await wait_until(lambda: bus.subscriber_count == 1, "subscribed")
        # The client reads nothing while big events pile up: socket buffers fill, then its queue (8).
        payload = "x" * 65536
        for i in range(5000):
            await bus.publish("jobs/flood", "chunk", {"i": i, "payload": payload}, ephemeral=True)
            await asyncio.sleep(0)
            if bus.dropped:
                break
        assert bus.dropped == 1
        assert bus.subscriber_count == 0
        body = b"".join([chunk async for chunk in response.aiter_bytes()])  # the stream ends by itself
    blocks = body.decode().split("\n\n")
    assert blocks[-1] == ""
    last = blocks[-2]
    assert last.startswith("event: error\ndata: ")
    error = json.loads(last.removeprefix("event: error\ndata: "))
    assert error["code"] == "RESOURCE_EXHAUSTED"
    assert "events were waiting unread" in error["message"]


async def test_shutdown_ends_the_stream(live: Server, client: httpx.AsyncClient, bus: LocalEventBus) -> None:
    stream = sse_events(client, "GET", "/v1/events", params={"topics": "server"})
    first = asyncio.create_task(anext(stream))
    await wait_until(lambda: bus.subscriber_count == 1, "subscribed")
    stopping = asyncio.create_task(live.stop())
    assert (await first).event == "server.stopping"
    assert [sse async for sse in stream] == []  # and then the stream ends cleanly
    await stopping


async def test_headers_over_http1(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/v1/events", params={"topics": "server"}) as response:
        assert response.http_version == "HTTP/1.1"
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["connection"] == "keep-alive"
        assert "content-length" not in response.headers


async def test_headers_over_http2_leave_out_connection(live: Server) -> None:
    url = f"http://127.0.0.1:{live.http_port}"
    async with (
        httpx.AsyncClient(base_url=url, http1=False, http2=True, timeout=10) as h2,
        h2.stream("GET", "/v1/events", params={"topics": "server"}) as response,
    ):
        assert response.http_version == "HTTP/2"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "connection" not in response.headers  # connection-specific headers are illegal in HTTP/2
        first = await anext(response.aiter_bytes())
        assert first.startswith(b"retry: ")


async def test_both_routes_are_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    events = paths["/v1/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert events["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    assert {p["name"] for p in events["parameters"]} == {"topics", "last_event_id", "Last-Event-ID"}
    for path in ("/v1/models/{name}/predict/stream", "/v1/models/{name}/versions/{version}/predict/stream"):
        stream = paths[path]["post"]
        assert "text/event-stream" in stream["responses"]["200"]["content"]
        assert stream["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "PredictStreamRequest"
        )
        assert "404" in stream["responses"]
