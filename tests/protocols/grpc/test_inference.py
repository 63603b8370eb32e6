"""inference.GRPCInferenceService on a real server: tritonclient.grpc, typed and raw tensors, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as oip
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2_grpc as oip_grpc
from modelwire.protocols.grpc.server import GrpcListener
from tests.protocols.grpc.richstatus import rich_details


@pytest.fixture
def triton_client(listener: GrpcListener) -> Iterator[triton.InferenceServerClient]:
    """tritonclient's sync client: call it through asyncio.to_thread, the server runs on this loop."""
    client = triton.InferenceServerClient(f"127.0.0.1:{listener.port}")
    yield client
    client.close()


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Any:
    return oip_grpc.GRPCInferenceServiceStub(channel)


async def test_tritonclient_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert await asyncio.to_thread(triton_client.is_server_live)
    assert await asyncio.to_thread(triton_client.is_server_ready)
    assert await asyncio.to_thread(triton_client.is_model_ready, "sentiment")
    server = await asyncio.to_thread(triton_client.get_server_metadata)
    assert server.name == "modelwire"
    assert "binary_tensor_data" in server.extensions
    model = await asyncio.to_thread(triton_client.get_model_metadata, "sentiment")
    assert model.name == "sentiment"
    assert list(model.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("text", "BYTES", [-1])]
    assert {(t.name, t.datatype) for t in model.outputs} == {("sentiment", "BYTES"), ("confidence", "FP32")}


async def test_tritonclient_infer(triton_client: triton.InferenceServerClient) -> None:
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(
        np.array([b"I love this product", b"Dreadful and boring, I hated it"], dtype=object)
    )
    result = await asyncio.to_thread(triton_client.infer, "sentiment", [text], request_id="r-1")
    assert result.get_response().id == "r-1"
    assert result.as_numpy("sentiment").tolist() == [b"positive", b"negative"]
    confidence = result.as_numpy("confidence")
    assert confidence.dtype == np.float32
    assert confidence.shape == (2,)
    assert confidence[0] > 0.8
    assert 0.5 <= confidence[1] <= 1.0


async def test_tritonclient_requested_outputs(triton_client: triton.InferenceServerClient) -> None:
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(["I love this product"], dtype=object))
    outputs = [triton.InferRequestedOutput("confidence")]
    result = await asyncio.to_thread(triton_client.infer, "sentiment", [text], outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["confidence"]
    assert result.as_numpy("sentiment") is None


async def test_tritonclient_errors(triton_client: triton.InferenceServerClient) -> None:
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hi"], dtype=object))
    with pytest.raises(InferenceServerException) as caught:
        await asyncio.to_thread(triton_client.infer, "nope", [text])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as caught:
        await asyncio.to_thread(triton_client.infer, "broken", [text])
    assert caught.value.status() == "StatusCode.INTERNAL"
    assert "error_id=" in caught.value.message()
    assert "secret" not in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        await asyncio.to_thread(triton_client.get_model_config, "sentiment")
    assert caught.value.status() == "StatusCode.UNIMPLEMENTED"


def _typed_request(*texts: bytes, model: str = "sentiment") -> Any:
    request = oip.ModelInferRequest(model_name=model, id="typed")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    tensor.contents.bytes_contents.extend(texts)
    return request


async def test_typed_contents_are_answered_typed(stub: Any) -> None:
    response = await stub.ModelInfer(_typed_request(b"I love this product", b"awful"))
    assert response.id == "typed"
    assert (response.model_name, response.model_version) == ("sentiment", "1")
    assert list(response.raw_output_contents) == []
    outputs = {o.name: o for o in response.outputs}
    assert list(outputs["sentiment"].contents.bytes_contents) == [b"positive", b"negative"]
    assert list(outputs["sentiment"].shape) == [2]
    assert outputs["confidence"].contents.fp32_contents[0] > 0.8


async def test_raw_contents_are_answered_raw(stub: Any) -> None:
    request = oip.ModelInferRequest(model_name="echo")
    request.inputs.add(name="text", datatype="BYTES", shape=[2])
    request.raw_input_contents.append(b"\x02\x00\x00\x00hi\x03\x00\x00\x00abc")
    response = await stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["echo", "length"]
    assert list(response.raw_output_contents) == [
        b"\x02\x00\x00\x00hi\x03\x00\x00\x00abc",
        np.array([2, 3], dtype="<i8").tobytes(),
    ]


async def test_wrong_datatype_is_invalid_argument_with_the_field(stub: Any) -> None:
    request = oip.ModelInferRequest(model_name="sentiment")
    tensor = request.inputs.add(name="text", datatype="FP32", shape=[1])
    tensor.contents.fp32_contents.append(1.0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "BYTES" in (caught.value.details() or "")
    violation = rich_details(caught.value)["BadRequest"].field_violations[0]
    assert violation.field == "inputs.text.datatype"


@pytest.mark.parametrize(
    ("raw", "shape"),
    [
        ([b"\x02\x00\x00\x00hi", b"extra"], [1]),
        ([b"\x09\x00\x00\x00hi"], [1]),
        ([b"\x02\x00\x00\x00hi"], [3]),
    ],
    ids=["more-raw-than-inputs", "truncated", "wrong-shape"],
)
async def test_malformed_raw_input_is_invalid_argument(stub: Any, raw: list[bytes], shape: list[int]) -> None:
    request = oip.ModelInferRequest(model_name="sentiment")
    request.inputs.add(name="text", datatype="BYTES", shape=shape)
    request.raw_input_contents.extend(raw)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_model_ready_for_an_unknown_model_is_not_found(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelReady(oip.ModelReadyRequest(name="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stream_infer_reports_errors_and_goes_on(stub: Any) -> None:
    async def requests() -> AsyncIterator[Any]:
        yield _typed_request(b"I love this product")
        yield _typed_request(b"hello", model="nope")
        yield _typed_request(b"what a wonderful day")

    responses = [r async for r in stub.ModelStreamInfer(requests())]
    assert [bool(r.error_message) for r in responses] == [False, True, False]
    assert "nope" in responses[1].error_message
    for response in (responses[0], responses[2]):
        sentiment = next(o for o in response.infer_response.outputs if o.name == "sentiment")
        assert list(sentiment.contents.bytes_contents) == [b"positive"]
