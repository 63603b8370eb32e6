"""POST /v1/models/{name}/predict/stream over real sockets: one event per item as it finishes, then done."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from modelwire.app.lifecycle import Server
from modelwire.app.services import Services
from tests.protocols.http.sse.conftest import GateModel, decoded, sse_events, wait_until


async def collect(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(sse.event, decoded(sse)) async for sse in sse_events(client, "POST", url, json=body)]


async def test_one_prediction_per_item_then_done(client: httpx.AsyncClient) -> None:
    texts = ["I love this product", "An awful, boring film.", "Absolutely wonderful acting"]
    events = await collect(client, "/v1/models/sentiment/predict/stream", {"texts": texts})
    assert events[-1] == ("done", {"count": 3, "errors": 0})
    predictions = sorted(
        (data for kind, data in events[:-1] if kind == "prediction"), key=lambda d: d["index"]
    )
    assert len(events) == 4
    assert [p["index"] for p in predictions] == [0, 1, 2]
    assert [p["sentiment"] for p in predictions] == ["positive", "negative", "positive"]
    assert all(0.5 <= p["confidence"] <= 1 for p in predictions)


async def test_same_answers_as_the_batch_endpoint(client: httpx.AsyncClient) -> None:
    texts = ["great", "terrible", "fine I guess", "a masterpiece"]
    batch = (await client.post("/v1/models/sentiment/predict", json={"texts": texts})).json()["predictions"]
    events = await collect(client, "/v1/models/sentiment/predict/stream", {"texts": texts})
    streamed = {data["index"]: data for kind, data in events if kind == "prediction"}
    assert [{k: v for k, v in streamed[i].items() if k != "index"} for i in range(4)] == batch


async def test_a_bad_item_is_its_own_error_event_and_the_rest_still_answer(client: httpx.AsyncClient) -> None:
    events = await collect(client, "/v1/models/echo/predict/stream", {"texts": ["a", "bad", "ccc"]})
    by_index = {data["index"]: (kind, data) for kind, data in events if kind != "done"}
    assert by_index[0] == ("prediction", {"echo": "a", "length": 1, "index": 0})
    assert by_index[2] == ("prediction", {"echo": "ccc", "length": 3, "index": 2})
    kind, error = by_index[1]
    assert kind == "error"
    assert error["error"]["code"] == "INVALID_ARGUMENT"
    assert error["error"]["field"] == "$.texts[1]"
    assert "bad" in error["error"]["message"]
    assert events[-1] == ("done", {"count": 3, "errors": 1})


async def test_an_item_over_the_size_limit_names_its_own_index(client: httpx.AsyncClient) -> None:
    events = await collect(client, "/v1/models/echo/predict/stream", {"texts": ["ok", "x" * 1001]})
    (error,) = [data for kind, data in events if kind == "error"]
    assert error["index"] == 1
    assert error["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert error["error"]["field"] == "$.texts[1]"
    assert "details" not in error["error"]  # not the index within a one-item call


async def test_instances_for_a_non_text_model(client: httpx.AsyncClient) -> None:
    events = await collect(client, "/v1/models/sum/predict/stream", {"instances": [[1, 2], [3.5, 4]]})
    results = {data["index"]: data["result"] for kind, data in events if kind == "prediction"}
    assert results == {0: 3.0, 1: 7.5}


async def test_an_explicit_version(client: httpx.AsyncClient) -> None:
    events = await collect(client, "/v1/models/echo/versions/1/predict/stream", {"texts": ["v"]})
    assert events == [
        ("prediction", {"echo": "v", "length": 1, "index": 0}),
        ("done", {"count": 1, "errors": 0}),
    ]


async def test_items_stream_as_each_finishes(client: httpx.AsyncClient, services: Services) -> None:
    gate = services.registry.get("gate").model
    assert isinstance(gate, GateModel)
    stream = sse_events(client, "POST", "/v1/models/gate/predict/stream", json={"texts": ["wait", "now"]})
    first = await anext(stream)  # arrives while "wait" is still held back by the model
    assert (first.event, decoded(first)) == ("prediction", {"text": "now", "index": 1})
    gate.gate.set()
    rest = [(sse.event, decoded(sse)) async for sse in stream]
    assert rest == [("prediction", {"text": "wait", "index": 0}), ("done", {"count": 2, "errors": 0})]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/models/nope/predict/stream", {"texts": ["a"]}, 404, "NOT_FOUND"),
        ("/v1/models/echo/versions/9/predict/stream", {"texts": ["a"]}, 404, "NOT_FOUND"),
        ("/v1/models/echo/predict/stream", {"texts": []}, 400, "INVALID_ARGUMENT"),
        ("/v1/models/echo/predict/stream", {"texts": ["a"], "instances": [1]}, 400, "INVALID_ARGUMENT"),
        ("/v1/models/echo/predict/stream", {"text": "one"}, 400, "INVALID_ARGUMENT"),
        ("/v1/models/echo/predict/stream", {"texts": [1, 2]}, 400, "INVALID_ARGUMENT"),
        ("/v1/models/echo/predict/stream", {"texts": ["a"] * 17}, 413, "PAYLOAD_TOO_LARGE"),
    ],
)
async def test_request_errors_are_json_before_the_stream_starts(
    client: httpx.AsyncClient, services: Services, path: str, body: Any, status: int, code: str
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert services.metrics.live.connections("sse") == 0


async def test_malformed_json_and_wrong_media_type(client: httpx.AsyncClient) -> None:
    url = "/v1/models/echo/predict/stream"
    bad = await client.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "INVALID_ARGUMENT")
    text = await client.post(url, content=b"texts=a", headers={"content-type": "text/plain"})
    assert text.status_code == 415


async def test_a_client_leaving_mid_stream_cancels_the_unfinished_items(
    live: Server, services: Services
) -> None:
    body = b'{"texts": ["one", "two", "three"]}'
    reader, writer = await asyncio.open_connection("127.0.0.1", live.http_port)
    writer.write(
        b"POST /v1/models/slow/predict/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    await wait_until(lambda: services.dataplane.inflight == 3, "the three items are running")
    assert services.metrics.live.connections("sse") == 1
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: services.dataplane.inflight == 0, "the items were cancelled")
    await wait_until(lambda: services.metrics.live.connections("sse") == 0, "the connection was counted out")
    assert 'code="CANCELLED",model="slow",protocol="sse"' in services.metrics.render().decode()


async def test_items_are_counted_under_the_sse_protocol(
    client: httpx.AsyncClient, services: Services
) -> None:
    await collect(client, "/v1/models/echo/predict/stream", {"texts": ["a", "b"]})
    assert 'modelwire_requests_total{code="OK",model="echo",protocol="sse"} 2.0' in (
        services.metrics.render().decode()
    )
