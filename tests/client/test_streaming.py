"""``stream_predict`` (WebSocket, gRPC) and ``events`` (SSE, WebSocket, gRPC) against a real server.

The same assertions run over every wire; what differs between wires (resuming is SSE and gRPC only) is
tested as such.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelwire import (
    AsyncClient,
    Client,
    ConfigurationError,
    ErrorCode,
    Event,
    InvalidInputError,
    ModelNotFoundError,
    ModelwireError,
    NotFoundError,
    Prediction,
    StreamedPrediction,
    UnavailableError,
)
from modelwire.settings import Settings
from tests.models import EchoModel, ErrorModel, SlowModel
from tests.serving import ServeModule, ThreadedServer

PREDICT_WIRES = ["ws", "grpc"]
EVENT_WIRES = ["sse", "ws", "grpc"]


SETTINGS: dict[str, Any] = {
    "events": {"metrics_interval_s": 0.2},
    "limits": {"request_timeout_s": 5.0, "shutdown_grace_s": 1.0},
}


def _settings(data_dir: Path) -> Settings:
    return Settings(host="127.0.0.1", http_port=0, grpc_port=0, data_dir=data_dir, **SETTINGS)


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    return serve_module(EchoModel("echo"), SlowModel("slow", delay_s=0.05), ErrorModel("broken"), **SETTINGS)


def url_for(server: ThreadedServer, wire: str) -> str:
    return server.grpc_url if wire == "grpc" else server.http_url


def publish(server: ThreadedServer, topic: str, type_: str, data: dict[str, Any]) -> int:
    assert server.server is not None
    assert server.server.services is not None
    bus = server.server.services.events
    event = server._call(lambda: bus.publish(topic, type_, data))
    assert event is not None
    return event.id


def subscribers(server: ThreadedServer) -> int:
    assert server.server is not None
    assert server.server.services is not None
    return server.server.services.events.subscriber_count


async def collect(stream: AsyncIterator[StreamedPrediction]) -> dict[int, Prediction | ModelwireError]:
    found: dict[int, Prediction | ModelwireError] = {}
    async for item in stream:
        assert isinstance(item, StreamedPrediction)
        assert item.index not in found
        found[item.index] = item.result
    return found


# -- stream_predict --------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", PREDICT_WIRES)
async def test_stream_predict_answers_every_text_with_its_index(server: ThreadedServer, wire: str) -> None:
    texts = ["I love this product", "", "This was a terrible, boring waste of time."]
    async with AsyncClient(url_for(server, wire)) as client:
        results = await collect(client.stream_predict(texts))
    assert sorted(results) == [0, 1, 2]
    assert isinstance(results[0], Prediction)
    assert results[0].sentiment == "positive"
    assert isinstance(results[1], InvalidInputError)  # an empty text fails alone
    assert isinstance(results[2], Prediction)
    assert results[2].sentiment == "negative"


@pytest.mark.parametrize("wire", PREDICT_WIRES)
async def test_stream_predict_many_inputs_map_back_to_their_texts(server: ThreadedServer, wire: str) -> None:
    texts = [f"text number {i}" for i in range(200)] + ["bad"]
    async with AsyncClient(url_for(server, wire)) as client:
        results = await collect(client.stream_predict(texts, model="echo", version="1"))
    assert len(results) == len(texts)
    for index, text in enumerate(texts[:-1]):
        result = results[index]
        assert isinstance(result, Prediction)
        assert result.output["echo"] == text
    assert isinstance(results[200], InvalidInputError)
    assert "refuses" in results[200].message


@pytest.mark.parametrize("wire", PREDICT_WIRES)
async def test_stream_predict_is_a_stream_not_a_batch(server: ThreadedServer, wire: str) -> None:
    """The next input is only produced after the previous answer arrived: a buffering client would hang."""
    answered = asyncio.Queue[int]()

    async def texts() -> AsyncIterator[str]:
        for i in range(5):
            yield f"item {i}"
            assert await answered.get() == i

    seen = []
    async with AsyncClient(url_for(server, wire)) as client, asyncio.timeout(60):
        async for item in client.stream_predict(texts(), model="echo"):
            seen.append(item.index)
            await answered.put(item.index)
    assert seen == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("wire", PREDICT_WIRES)
async def test_stream_predict_unknown_model_fails_the_stream(server: ThreadedServer, wire: str) -> None:
    async with AsyncClient(url_for(server, wire)) as client:
        with pytest.raises(NotFoundError):
            await collect(client.stream_predict(["hello"], model="nope"))


@pytest.mark.parametrize("wire", PREDICT_WIRES)
@pytest.mark.parametrize(("model", "version"), [("nope", None), ("echo", "999")])
async def test_stream_predict_unknown_model_or_version_is_model_not_found(
    server: ThreadedServer, wire: str, model: str, version: str | None
) -> None:
    """gRPC fails the whole stream (the model is read from its first input); a WebSocket message names its
    own model, so there it is that item's error. Either way, the documented subclass."""
    async with AsyncClient(url_for(server, wire)) as client:
        try:
            found = await collect(client.stream_predict(["hello"], model=model, version=version))
        except ModelNotFoundError:
            return
    assert isinstance(found[0], ModelNotFoundError), found


@pytest.mark.parametrize("wire", PREDICT_WIRES)
async def test_stream_predict_model_failure_is_internal_per_item(server: ThreadedServer, wire: str) -> None:
    async with AsyncClient(url_for(server, wire)) as client:
        results = await collect(client.stream_predict(["a", "b"], model="broken"))
    assert sorted(results) == [0, 1]
    for result in results.values():
        assert isinstance(result, ModelwireError)
        assert result.code is ErrorCode.INTERNAL
        assert "secret" not in result.message


@pytest.mark.parametrize("wire", PREDICT_WIRES)
async def test_stream_predict_refuses_non_text_input(server: ThreadedServer, wire: str) -> None:
    async with AsyncClient(url_for(server, wire)) as client:
        with pytest.raises(InvalidInputError) as caught:
            await collect(client.stream_predict(["fine", 42]))  # type: ignore[list-item]
        assert caught.value.field == "$.texts[1]"
        with pytest.raises(InvalidInputError):
            await collect(client.stream_predict("one string"))


@pytest.mark.parametrize("wire", PREDICT_WIRES)
async def test_stream_predict_empty_input_yields_nothing(server: ThreadedServer, wire: str) -> None:
    async with AsyncClient(url_for(server, wire)) as client:
        assert await collect(client.stream_predict([])) == {}


@pytest.mark.parametrize("wire", [*PREDICT_WIRES, "sse"])
async def test_unreachable_server_is_unavailable(refused_port: int, wire: str) -> None:
    scheme = "grpc" if wire == "grpc" else "http"
    async with AsyncClient(f"{scheme}://127.0.0.1:{refused_port}", timeout=5) as client:
        call = anext(client.events(["metrics"])) if wire == "sse" else collect(client.stream_predict(["a"]))
        with pytest.raises(UnavailableError):
            await call


@pytest.mark.parametrize(
    ("scheme", "transport"),
    [("http", "grpc"), ("grpc", "ws"), ("grpc", "sse"), ("http", "pigeon")],
)
async def test_a_transport_the_url_cannot_reach_is_a_configuration_error(scheme: str, transport: str) -> None:
    async with AsyncClient(f"{scheme}://127.0.0.1:1") as client:
        with pytest.raises(ConfigurationError):
            await anext(client.events(["metrics"], transport=transport))  # type: ignore[arg-type]


# -- events ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", EVENT_WIRES)
async def test_events_deliver_metrics_and_published_events(server: ThreadedServer, wire: str) -> None:
    async with AsyncClient(url_for(server, wire)) as client, asyncio.timeout(60):
        stream = client.events(["metrics", "models"], transport=wire)  # type: ignore[arg-type]
        first = await anext(stream)
        assert isinstance(first, Event)
        assert first.topic == "metrics"
        assert first.type == "metrics"
        assert isinstance(first.id, int)
        assert first.time > 0
        assert set(first.data["protocols"]) >= {"rest", "grpc", "ws", "sse"}

        extra = {"name": "extra", "version": "7", "ready": True}
        published = publish(server, "models", "model.loaded", extra)
        async for event in stream:
            if event.topic == "models":
                break
        assert event.id == published
        assert event.type == "model.loaded"
        assert dict(event.data) == extra
        await stream.aclose()


@pytest.mark.parametrize("wire", ["sse", "grpc"])
async def test_events_resume_after_the_last_event_id(server: ThreadedServer, wire: str) -> None:
    ids = [publish(server, "server", "test.tick", {"n": n}) for n in range(3)]
    async with AsyncClient(url_for(server, wire)) as client, asyncio.timeout(60):
        stream = client.events("server", last_event_id=ids[0], transport=wire)  # type: ignore[arg-type]
        replayed = [await anext(stream), await anext(stream)]
        await stream.aclose()
    assert [e.id for e in replayed] == ids[1:]
    assert [e.data["n"] for e in replayed] == [1, 2]


@pytest.mark.parametrize("wire", ["sse", "grpc"])
async def test_events_too_old_an_id_starts_with_a_reset(server: ThreadedServer, wire: str) -> None:
    async with AsyncClient(url_for(server, wire)) as client, asyncio.timeout(60):
        stream = client.events(["models"], last_event_id=1, transport=wire)  # type: ignore[arg-type]
        first = await anext(stream)
        await stream.aclose()
    assert first.is_reset
    assert first.id is None
    assert "reason" in first.data


async def test_events_over_websocket_cannot_resume(server: ThreadedServer) -> None:
    async with AsyncClient(server.http_url) as client:
        with pytest.raises(ConfigurationError, match="SSE or gRPC"):
            await anext(client.events(["models"], last_event_id=5, transport="ws"))


@pytest.mark.parametrize("topics", [["nope"], [], "jobs/", ["metrics", "bad topic"]])
async def test_events_unknown_topics_are_refused_before_connecting(topics: Any) -> None:
    async with AsyncClient("http://127.0.0.1:1") as client:
        with pytest.raises(InvalidInputError):
            await anext(client.events(topics))


async def test_events_bad_last_event_id_is_refused() -> None:
    async with AsyncClient("http://127.0.0.1:1") as client:
        with pytest.raises(InvalidInputError):
            await anext(client.events(["models"], last_event_id="yesterday"))


@pytest.mark.parametrize("wire", EVENT_WIRES)
def test_events_end_when_the_server_shuts_down(trained_data_dir: Path, wire: str) -> None:
    running = ThreadedServer(_settings(trained_data_dir)).start()
    stopped = False
    try:
        with Client(url_for(running, wire)) as client:
            stream = client.events(["metrics", "server"], transport=wire)  # type: ignore[arg-type]
            assert next(stream).type == "metrics"  # subscribed (the stream connects on first use)
            stopper = threading.Thread(target=running.stop)
            stopper.start()
            stopped = True
            rest = list(stream)  # ends, without an error
            stopper.join(30)
        # The last word before the end says why.
        assert [e.type for e in rest if e.topic == "server"] == ["server.stopping"]
    finally:
        if not stopped:
            running.stop()


async def test_aclose_closes_streams_left_open(server: ThreadedServer) -> None:
    before = subscribers(server)
    client = AsyncClient(server.http_url)
    stream = client.events(["metrics"])
    assert (await anext(stream)).type == "metrics"  # then left without closing it, as `break` does
    assert subscribers(server) == before + 1
    await client.aclose()
    for _ in range(200):  # the server notices the closed connection; bounded wait
        if subscribers(server) == before:
            break
        await asyncio.sleep(0.05)
    assert subscribers(server) == before


# -- the sync client -------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", PREDICT_WIRES)
def test_sync_stream_predict_reads_a_generator_as_answers_come(server: ThreadedServer, wire: str) -> None:
    def texts() -> Iterator[str]:
        yield "I love this product"
        yield "This was a terrible, boring waste of time."

    with Client(url_for(server, wire)) as client:
        results = {item.index: item.result for item in client.stream_predict(texts())}
    assert [r.sentiment for _, r in sorted(results.items()) if isinstance(r, Prediction)] == [
        "positive",
        "negative",
    ]


@pytest.mark.parametrize("wire", EVENT_WIRES)
def test_sync_events_leaving_early_closes_the_subscription(server: ThreadedServer, wire: str) -> None:
    before = subscribers(server)
    with Client(url_for(server, wire)) as client:
        stream = client.events(["metrics"], transport=wire)  # type: ignore[arg-type]
        event = next(stream)
        assert event.type == "metrics"
        assert subscribers(server) == before + 1
        stream.close()
        # The server notices the closed connection; wait for it, bounded.
        deadline = threading.Event()
        for _ in range(200):
            if subscribers(server) == before:
                break
            deadline.wait(0.05)
        assert subscribers(server) == before


def test_sync_stream_errors_are_the_error_tree(refused_port: int) -> None:
    with Client(f"http://127.0.0.1:{refused_port}") as client, pytest.raises(UnavailableError):
        list(client.stream_predict(["hello"]))
