"""The client against a real server, with the same assertions over REST and gRPC (the ``url`` fixture)."""

from __future__ import annotations

import asyncio

import pytest

from modelwire import (
    AsyncClient,
    Client,
    DeadlineExceededError,
    Health,
    InternalError,
    InvalidInputError,
    ModelNotFoundError,
    ModelwireError,
    NotFoundError,
    Prediction,
    UnavailableError,
)
from tests.serving import ThreadedServer


async def test_predict_returns_the_seed_answer(url: str) -> None:
    async with AsyncClient(url) as client:
        prediction = await client.predict("I love this product")
    assert isinstance(prediction, Prediction)
    assert prediction.sentiment == "positive"
    assert prediction.confidence is not None
    assert 0.8 < prediction.confidence <= 1.0
    assert prediction.to_dict() == {"sentiment": "positive", "confidence": prediction.confidence}


async def test_predict_negative(url: str) -> None:
    async with AsyncClient(url) as client:
        prediction = await client.predict("This was a terrible, boring waste of time.")
    assert prediction.sentiment == "negative"


async def test_predict_other_model_keeps_its_whole_output(url: str) -> None:
    async with AsyncClient(url) as client:
        prediction = await client.predict("hello", model="echo", version="1")
    assert prediction.sentiment is None
    assert prediction.confidence is None
    assert prediction.output == {"echo": "hello", "length": 5}


async def test_batch_keeps_order_and_puts_item_errors_in_place(url: str) -> None:
    texts = ["I love this product", "", "This was a terrible, boring waste of time."]
    async with AsyncClient(url) as client:
        results = await client.predict_batch(texts)
    assert len(results) == 3
    first, second, third = results
    assert isinstance(first, Prediction)
    assert first.sentiment == "positive"
    assert isinstance(second, InvalidInputError)
    assert isinstance(third, Prediction)
    assert third.sentiment == "negative"


async def test_batch_of_many_matches_single_predictions(url: str) -> None:
    texts = [f"item {i}" for i in range(50)]
    async with AsyncClient(url) as client:
        results = await client.predict_batch(texts, model="echo")
    assert [r.output["echo"] for r in results if isinstance(r, Prediction)] == texts


async def test_empty_batch_is_empty(url: str) -> None:
    async with AsyncClient(url) as client:
        assert await client.predict_batch([]) == []


async def test_empty_text_is_invalid_with_a_field(url: str) -> None:
    async with AsyncClient(url) as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.predict("   ")
    assert "empty" in caught.value.message
    if url.startswith("http"):  # the gRPC Predict call names no field for an item's error (yet)
        assert caught.value.field == "$.text"


async def test_non_string_text_is_refused_before_sending(url: str) -> None:
    async with AsyncClient(url) as client:
        with pytest.raises(InvalidInputError):
            await client.predict(42)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await client.predict_batch("not a list")
        with pytest.raises(InvalidInputError) as caught:
            await client.predict_batch(["ok", None])  # type: ignore[list-item]
    assert caught.value.field == "$.texts[1]"


@pytest.mark.parametrize(("model", "version"), [("no-such-model", None), ("sentiment", "999")])
async def test_unknown_model_or_version_is_not_found(url: str, model: str, version: str | None) -> None:
    async with AsyncClient(url) as client:
        with pytest.raises(NotFoundError):
            await client.predict("hello", model=model, version=version)
        with pytest.raises(NotFoundError):
            await client.predict_batch(["hello"], model=model, version=version)


@pytest.mark.parametrize(("model", "version"), [("no-such-model", None), ("sentiment", "999")])
async def test_unknown_model_or_version_raises_model_not_found(
    url: str, model: str, version: str | None
) -> None:
    """The documented subclass, not only its NotFoundError parent, on REST and gRPC alike."""
    async with AsyncClient(url) as client:
        with pytest.raises(ModelNotFoundError):
            await client.predict("hello", model=model, version=version)
        with pytest.raises(ModelNotFoundError):
            await client.predict_batch(["hello"], model=model, version=version)
    with Client(url) as sync, pytest.raises(ModelNotFoundError):
        sync.predict("hello", model=model, version=version)


async def test_model_failure_is_internal_with_an_error_id_and_no_secret(url: str) -> None:
    async with AsyncClient(url) as client:
        with pytest.raises(InternalError) as caught:
            await client.predict("anything", model="broken")
    assert caught.value.error_id
    assert "secret" not in str(caught.value)
    assert caught.value.error_id not in caught.value.message


async def test_client_timeout_is_deadline_exceeded(url: str) -> None:
    async with AsyncClient(url, timeout=0.2) as client:
        with pytest.raises(DeadlineExceededError):
            await client.predict("hello", model="slow")
        # the connection is still usable after a timed-out call
        assert (await client.predict("hello", model="echo")).output["echo"] == "hello"


async def test_models_lists_versions_and_readiness(url: str) -> None:
    async with AsyncClient(url) as client:
        models = {m.name: m for m in await client.models()}
    assert {"sentiment", "echo", "slow", "broken"} <= set(models)
    sentiment = models["sentiment"]
    assert sentiment.default_version == "1"
    assert [v.version for v in sentiment.versions] == ["1"]
    assert sentiment.ready
    assert sentiment.platform == "numpy"


async def test_health_is_live_and_ready(url: str) -> None:
    async with AsyncClient(url) as client:
        assert await client.health() == Health(live=True, ready=True)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
async def test_unreachable_server_is_unavailable(scheme: str, refused_port: int) -> None:
    async with AsyncClient(f"{scheme}://127.0.0.1:{refused_port}", timeout=5) as client:
        with pytest.raises(UnavailableError, match="cannot reach"):
            await client.predict("hello")
        with pytest.raises(UnavailableError):
            await client.health()


async def test_concurrent_calls_share_one_client(url: str) -> None:
    async with AsyncClient(url) as client:
        results = await asyncio.gather(*(client.predict(f"text {i}", model="echo") for i in range(20)))
    assert [r.output["echo"] for r in results] == [f"text {i}" for i in range(20)]


async def test_http2_prior_knowledge(server: ThreadedServer) -> None:
    async with AsyncClient(server.http_url, http2=True) as client:
        assert (await client.predict("I love this product")).sentiment == "positive"
        transport = client._transport
        assert transport is not None
        assert getattr(transport, "http_version", None) == "HTTP/2"


def test_sync_client_has_the_same_answers(url: str) -> None:
    with Client(url) as client:
        assert client.predict("I love this product").sentiment == "positive"
        results = client.predict_batch(["good", "bad"], model="echo")
        assert isinstance(results[1], ModelwireError)
        assert client.health().ready
        assert "sentiment" in {m.name for m in client.models()}
        with pytest.raises(NotFoundError):
            client.predict("hello", model="no-such-model")


async def test_sync_client_works_inside_a_running_loop(url: str) -> None:
    # Its private loop runs in its own thread, so a caller's loop does not get in the way.
    with Client(url) as client:
        assert client.predict("I love this product").sentiment == "positive"


def test_ctrl_c_while_waiting_cancels_the_call(server: ThreadedServer) -> None:
    import _thread
    import threading

    with Client(server.http_url) as client:
        client.health()  # start the private loop
        loop = client._loop
        assert loop is not None
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            client.predict("hello", model="slow")  # answers after 2 s
        timer.join()
        pending = asyncio.run_coroutine_threadsafe(_other_tasks(), loop).result(5)
        assert pending == 0
        assert client.predict("hello", model="echo").output["echo"] == "hello"


async def _other_tasks() -> int:
    await asyncio.sleep(0.05)  # let the cancellation land
    return len(asyncio.all_tasks()) - 1
