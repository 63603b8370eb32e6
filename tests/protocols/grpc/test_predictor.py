"""modelwire.v1.Predictor on a real grpc.aio server: predictions, the seed contract, errors, deadlines."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from modelwire.app.services import Services
from modelwire.core.dataplane import CallContext
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.server import GrpcListener
from tests.protocols.grpc.richstatus import rich_details


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Any:
    return pb_grpc.PredictorStub(channel)


async def test_predict_positive(stub: Any) -> None:
    output = await stub.Predict(pb.Input(text="I love this product"))
    assert output.sentiment == "positive"
    assert output.confidence > 0.8
    assert (output.model, output.version) == ("sentiment", "1")
    assert output.result["sentiment"] == "positive"


async def test_predict_negative(stub: Any) -> None:
    output = await stub.Predict(pb.Input(text="Terrible, boring, a waste of money. I hated it."))
    assert output.sentiment == "negative"
    assert 0.5 <= output.confidence <= 1.0


async def test_predict_other_model_fills_result(stub: Any) -> None:
    output = await stub.Predict(pb.Input(text="hello", model="echo", version="1"))
    assert output.sentiment == ""
    assert dict(output.result) == {"echo": "hello", "length": 5.0}


def _seed_messages() -> tuple[type[Any], type[Any]]:
    """The seed's messages exactly (text = 1; sentiment = 1, confidence = 2), built apart from ours."""
    file = descriptor_pb2.FileDescriptorProto(name="seed/predictor.proto", package="seed", syntax="proto3")
    request = file.message_type.add(name="Input")
    request.field.add(name="text", number=1, type=9, label=1)
    response = file.message_type.add(name="Output")
    response.field.add(name="sentiment", number=1, type=9, label=1)
    response.field.add(name="confidence", number=2, type=2, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("seed.Input")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("seed.Output")),
    )


async def test_a_seed_client_still_works(channel: grpc.aio.Channel) -> None:
    seed_input, seed_output = _seed_messages()
    predict = channel.unary_unary(
        "/modelwire.v1.Predictor/Predict",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=seed_output.FromString,
    )
    output = await predict(seed_input(text="I love this product"))
    assert output.sentiment == "positive"
    assert output.confidence > 0.8


async def test_unknown_model_is_not_found(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Predict(pb.Input(text="hi", model="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (caught.value.details() or "")
    assert rich_details(caught.value)["ErrorInfo"].reason == "NOT_FOUND"


async def test_unknown_version_is_not_found(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Predict(pb.Input(text="hi", version="99"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("model", "version"), [("nope", ""), ("", "99")])
async def test_unknown_model_or_version_says_so_in_error_info(stub: Any, model: str, version: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Predict(pb.Input(text="hi", model=model, version=version))
    info = rich_details(caught.value)["ErrorInfo"]
    assert (info.reason, info.metadata["reason"]) == ("NOT_FOUND", "MODEL_NOT_FOUND")


@pytest.mark.parametrize("text", ["", "   "])
async def test_empty_text_is_invalid_argument(stub: Any, text: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Predict(pb.Input(text=text))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(caught.value)["ErrorInfo"].reason == "INVALID_ARGUMENT"


async def test_text_over_the_limit_is_resource_exhausted(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Predict(pb.Input(text="good " * 1000))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_details(caught.value)["ErrorInfo"].reason == "PAYLOAD_TOO_LARGE"


async def test_model_error_is_internal_with_an_error_id_and_no_secret(
    stub: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Predict(pb.Input(text="anything", model="broken"))
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    message = error.details() or ""
    assert "secret" not in message
    assert "Traceback" not in message
    assert b"secret" not in b"".join(v for _, v in error.trailing_metadata() or () if isinstance(v, bytes))
    error_id = rich_details(error)["ErrorInfo"].metadata["error_id"]
    assert f"error_id={error_id}" in message
    assert error_id in caplog.text  # the same id is in the server log
    # ... and the server keeps serving
    assert (await stub.Predict(pb.Input(text="I love this product"))).sentiment == "positive"


async def test_client_deadline_bounds_the_model_call(stub: Any, services: Services) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Predict(pb.Input(text="zzz", model="slow"), timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server stops waiting for the (5 s) model too, instead of holding the request.
    for _ in range(50):
        if services.dataplane.inflight == 0:
            break
        await asyncio.sleep(0.02)
    assert services.dataplane.inflight == 0
    assert asyncio.get_running_loop().time() - started < 2.0
    assert (await stub.Predict(pb.Input(text="I love this product"))).sentiment == "positive"


async def _inputs(items: list[tuple[str, str]], **fields: str) -> AsyncIterator[Any]:
    for request_id, text in items:
        yield pb.StreamInput(id=request_id, text=text, **fields)
        await asyncio.sleep(0)


async def test_predict_stream_answers_every_id_once(stub: Any) -> None:
    texts = ["I love this product", "What a terrible film", "great!", "awful, just awful"]
    items = [(f"id-{i}", texts[i % len(texts)]) for i in range(40)]
    outputs = [out async for out in stub.PredictStream(_inputs(items))]
    assert sorted(out.id for out in outputs) == sorted(request_id for request_id, _ in items)
    by_id = {out.id: out for out in outputs}
    assert all(out.WhichOneof("result") == "output" for out in outputs)
    assert by_id["id-0"].output.sentiment == "positive"
    assert by_id["id-1"].output.sentiment == "negative"


async def test_predict_stream_item_errors_keep_the_stream_open(stub: Any) -> None:
    items = [("a", "hello"), ("b", "bad"), ("c", "world")]
    outputs = {out.id: out async for out in stub.PredictStream(_inputs(items, model="echo"))}
    assert set(outputs) == {"a", "b", "c"}
    assert outputs["a"].output.result["echo"] == "hello"
    assert outputs["c"].output.result["echo"] == "world"
    assert outputs["b"].WhichOneof("result") == "error"
    assert outputs["b"].error.code == "INVALID_ARGUMENT"
    assert "bad" in outputs["b"].error.message


async def test_predict_stream_internal_item_error_has_an_id(stub: Any) -> None:
    outputs = [out async for out in stub.PredictStream(_inputs([("x", "boom")], model="broken"))]
    (out,) = outputs
    assert out.error.code == "INTERNAL"
    assert out.error.error_id
    assert "secret" not in out.error.message


async def test_predict_stream_unknown_model_is_not_found(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [out async for out in stub.PredictStream(_inputs([("x", "hi")], model="nope"))]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_predict_stream_refuses_a_second_model(stub: Any) -> None:
    async def inputs() -> AsyncIterator[Any]:
        yield pb.StreamInput(id="1", text="hi", model="echo")
        await asyncio.sleep(0.05)
        yield pb.StreamInput(id="2", text="hi", model="sentiment")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [out async for out in stub.PredictStream(inputs())]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(caught.value)["BadRequest"].field_violations[0].field == "model"


async def test_empty_stream_ends_cleanly(stub: Any) -> None:
    assert [out async for out in stub.PredictStream(_inputs([]))] == []


async def test_listener_reports_its_port(listener: GrpcListener) -> None:
    assert listener.port > 0


async def test_client_deadline_reaches_the_core(
    stub: Any, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[CallContext] = []
    predict = services.dataplane.predict

    async def spy(*args: Any, ctx: CallContext, **kwargs: Any) -> Any:
        seen.append(ctx)
        return await predict(*args, ctx=ctx, **kwargs)

    monkeypatch.setattr(services.dataplane, "predict", spy)
    before = time.monotonic()
    await stub.Predict(pb.Input(text="I love this product"), timeout=5.0)
    await stub.Predict(pb.Input(text="I love this product"))
    with_deadline, without = seen
    assert with_deadline.protocol == "grpc"
    assert with_deadline.deadline is not None
    # grpc computes the time remaining on its own clock, so allow its rounding (a few ms) on top of 5 s.
    assert before + 4.0 < with_deadline.deadline <= time.monotonic() + 5.5
    assert without.deadline is None


async def test_shutting_down_is_unavailable_with_retry_info(stub: Any, services: Services) -> None:
    services.dataplane.stop_accepting()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Predict(pb.Input(text="I love this product"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(caught.value)["RetryInfo"].retry_delay.seconds == 1


async def test_list_models(stub: Any) -> None:
    response = await stub.ListModels(pb.ListModelsRequest())
    models = {m.name: m for m in response.models}
    assert {"sentiment", "echo", "broken", "slow"} <= set(models)
    sentiment = models["sentiment"]
    assert (sentiment.default_version, sentiment.platform) == ("1", "numpy")
    assert [(v.version, v.ready) for v in sentiment.versions] == [("1", True)]
