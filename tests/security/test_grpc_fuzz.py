"""Hypothesis against a real gRPC server: well-typed but adversarial messages on every service, and random
bytes as the request payload. A client's mistake is never INTERNAL or UNKNOWN, and the server keeps serving.

Bounded (``max_examples``, short deadlines) so the module runs in well under a minute.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as oip
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2_grpc as oip_grpc
from modelwire.protocols.grpc._generated.modelwire.v1 import (
    events_pb2,
    events_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
)
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from tests.models import EchoModel, SumModel
from tests.serving import ServeModule

# What a server may answer a client's mistake; INTERNAL and UNKNOWN are server bugs.
CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
# Streams that stay open on a valid request end by the client's deadline.
STREAM_OUTCOMES = CLIENT_ERRORS | {grpc.StatusCode.DEADLINE_EXCEEDED}
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def target(serve_module: ServeModule) -> str:
    server = serve_module(
        EchoModel(),
        SumModel("sum"),
        limits={"max_text_chars": 200, "max_batch_items": 16},
        events={"metrics_interval_s": 0.05},
    )
    return server.grpc_url.removeprefix("grpc://")


@pytest.fixture(scope="module")
def channel(target: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(target) as channel:
        yield channel


def outcome(call: Callable[[], Any]) -> grpc.StatusCode:
    """Make the call (reading at most a few messages of a stream); its status code."""
    try:
        result = call()
        if hasattr(result, "__next__"):
            for _ in itertools.islice(result, 3):
                pass
            result.cancel()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def assert_client_error(code: grpc.StatusCode) -> None:
    event(code.name)  # --hypothesis-show-statistics: how many examples got how far
    assert code in CLIENT_ERRORS, code


# -- strategies ------------------------------------------------------------------------------------------

text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=260)
short = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=24)
models = st.sampled_from(["", "sentiment", "echo", "sum", "nope"]) | short
versions = st.sampled_from(["", "1", "2"]) | short
int64 = st.integers(-(2**63), 2**63 - 1)
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32"]
datatypes = st.sampled_from([*DATATYPES, "FP64", "BYTES", "", "fp32", "STRING"])
shapes = st.lists(st.sampled_from([-1, 0, 1, 2, 3, 2**31, 2**62, -(2**63)]) | st.integers(-2, 8), max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | short,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short, inner, max_size=3),
    max_leaves=8,
)


def _value(data: Any) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


@st.composite
def infer_requests(draw: st.DrawFn) -> Any:
    request = oip.ModelInferRequest(model_name=draw(models), model_version=draw(versions), id=draw(short))
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(name=draw(st.sampled_from(["text", "values", "x"]) | short))
        tensor.datatype = draw(datatypes)
        tensor.shape.extend(draw(shapes))
        contents = tensor.contents
        kind = draw(
            st.sampled_from(["bool", "int", "int64", "uint", "uint64", "fp32", "fp64", "bytes", "none"])
        )
        if kind == "bool":
            contents.bool_contents.extend(draw(st.lists(st.booleans(), max_size=8)))
        elif kind == "int":
            contents.int_contents.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8)))
        elif kind == "int64":
            contents.int64_contents.extend(draw(st.lists(int64, max_size=8)))
        elif kind == "uint":
            contents.uint_contents.extend(draw(st.lists(st.integers(0, 2**32 - 1), max_size=8)))
        elif kind == "uint64":
            contents.uint64_contents.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=8)))
        elif kind == "fp32":
            contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=8)))
        elif kind == "fp64":
            contents.fp64_contents.extend(draw(st.lists(st.floats(), max_size=8)))
        elif kind == "bytes":
            contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=40), max_size=8)))
        for key in draw(st.lists(short, max_size=2)):
            _parameter(draw, tensor.parameters[key])
    if draw(st.booleans()):
        request.raw_input_contents.extend(draw(st.lists(st.binary(max_size=48), max_size=3)))
    for key in draw(st.lists(short, max_size=2)):
        _parameter(draw, request.parameters[key])
    for name in draw(st.lists(st.sampled_from(["echo", "length", "total", "sentiment"]) | short, max_size=2)):
        request.outputs.add(name=name)
    return request


@st.composite
def near_valid_infer_requests(draw: st.DrawFn) -> Any:
    """Requests the echo or sum model could answer, give or take a count, a shape or a byte."""
    request = oip.ModelInferRequest(id=draw(short))
    off = st.sampled_from([0] * 6 + [1, -1])  # mostly right, sometimes one off
    if draw(st.booleans()):
        request.model_name = "echo"
        items = draw(st.lists(st.binary(max_size=30) | text.map(str.encode), min_size=1, max_size=4))
        tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(items) + draw(off)])
        if draw(st.booleans()):
            raw = b"".join(len(item).to_bytes(4, "little") + item for item in items)
            request.raw_input_contents.append(raw[: len(raw) - draw(off.map(abs))])
        else:
            tensor.contents.bytes_contents.extend(items)
    else:
        request.model_name = "sum"
        rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        values = draw(
            st.lists(st.floats(width=32), min_size=rows * cols, max_size=rows * cols + draw(off.map(abs)))
        )
        datatype = draw(st.sampled_from(["FP32"] * 6 + ["FP64", "INT32"]))
        tensor = request.inputs.add(name="values", datatype=datatype, shape=[rows, cols])
        if draw(st.booleans()):
            request.raw_input_contents.append(struct.pack(f"<{len(values)}f", *values))
        else:
            tensor.contents.fp32_contents.extend(values)
    for name in draw(
        st.lists(st.sampled_from(["echo", "length", "total", "nope"]), max_size=draw(off.map(abs)) * 2)
    ):
        request.outputs.add(name=name)
    return request


def _parameter(draw: st.DrawFn, target: Any) -> None:
    choice = draw(st.sampled_from(["bool", "int64", "string", "double", "uint64"]))
    if choice == "bool":
        target.bool_param = draw(st.booleans())
    elif choice == "int64":
        target.int64_param = draw(int64)
    elif choice == "string":
        target.string_param = draw(short)
    elif choice == "double":
        target.double_param = draw(st.floats())
    else:
        target.uint64_param = draw(st.integers(0, 2**64 - 1))


@st.composite
def submit_requests(draw: st.DrawFn) -> Any:
    request = jobs_pb2.SubmitJobRequest(
        model=draw(st.sampled_from(["echo", "sum"]) | models),
        version=draw(versions),
        texts=draw(st.lists(text, max_size=4)),
        instances=[_value(v) for v in draw(st.lists(json_values, max_size=3))],
        callback_url=draw(st.sampled_from(["", "not a url", "ftp://x/y", "http://[::1", "http://"]) | short),
        idempotency_key=draw(st.sampled_from(["", "k"]) | short),
        kind=draw(st.sampled_from(["", "predict", "nope"])),  # "train" would train a model: not here
        content_type=draw(st.sampled_from(["", "text/csv", "application/x-ndjson", "nope/nope"]) | short),
    )
    request.metadata.update(draw(st.dictionaries(short, json_values, max_size=3)))
    return request


# -- typed messages ----------------------------------------------------------------------------------------


@FUZZ
@given(text=text, model=models, version=versions)
def test_predict(channel: grpc.Channel, text: str, model: str, version: str) -> None:
    stub = pb_grpc.PredictorStub(channel)
    request = pb.Input(text=text, model=model, version=version)
    assert_client_error(outcome(lambda: stub.Predict(request, timeout=10)))


@settings(FUZZ, max_examples=60)
@given(items=st.lists(st.tuples(short, text, models, versions), max_size=5))
def test_predict_stream(channel: grpc.Channel, items: list[tuple[str, str, str, str]]) -> None:
    stub = pb_grpc.PredictorStub(channel)
    inputs = [pb.StreamInput(id=i, text=t, model=m, version=v) for i, t, m, v in items]
    assert_client_error(outcome(lambda: stub.PredictStream(iter(inputs), timeout=10)))


@FUZZ
@given(request=infer_requests() | near_valid_infer_requests())
def test_model_infer(channel: grpc.Channel, request: Any) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(channel)
    assert_client_error(outcome(lambda: stub.ModelInfer(request, timeout=10)))


@settings(FUZZ, max_examples=40)
@given(requests=st.lists(infer_requests() | near_valid_infer_requests(), max_size=3))
def test_model_stream_infer(channel: grpc.Channel, requests: list[Any]) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(channel)
    assert_client_error(outcome(lambda: stub.ModelStreamInfer(iter(requests), timeout=10)))


@FUZZ
@given(request=submit_requests())
def test_jobs_submit(channel: grpc.Channel, request: Any) -> None:
    stub = jobs_pb2_grpc.JobsStub(channel)
    assert_client_error(outcome(lambda: stub.Submit(request, timeout=10)))


@settings(FUZZ, max_examples=100)
@given(
    job_id=short,
    offset=int64,
    limit=int64,
    status=st.integers(-3, 20),
    count=st.integers(-(2**31), 2**31 - 1),
)
def test_jobs_by_id(
    channel: grpc.Channel, job_id: str, offset: int, limit: int, status: int, count: int
) -> None:
    stub = jobs_pb2_grpc.JobsStub(channel)
    calls: list[Callable[[], Any]] = [
        lambda: stub.Get(jobs_pb2.GetJobRequest(id=job_id), timeout=10),
        lambda: stub.Cancel(jobs_pb2.CancelJobRequest(id=job_id), timeout=10),
        lambda: stub.Retry(jobs_pb2.RetryJobRequest(id=job_id), timeout=10),
        lambda: stub.List(jobs_pb2.ListJobsRequest(status=status, limit=count, cursor=job_id), timeout=10),
        lambda: stub.Results(jobs_pb2.JobResultsRequest(id=job_id, offset=offset, limit=limit), timeout=10),
    ]
    for call in calls:
        assert_client_error(outcome(call))
    assert outcome(lambda: stub.Watch(jobs_pb2.WatchJobRequest(id=job_id), timeout=0.5)) in STREAM_OUTCOMES


@settings(FUZZ, max_examples=40)
@given(
    topics=st.lists(st.sampled_from(["metrics", "models", "jobs/*", "*", "jobs/", ""]) | short, max_size=3)
)
def test_events_subscribe(channel: grpc.Channel, topics: list[str]) -> None:
    stub = events_pb2_grpc.EventsStub(channel)
    request = events_pb2.SubscribeRequest(topics=topics, last_event_id=",".join(topics)[:20])
    assert outcome(lambda: stub.Subscribe(request, timeout=0.5)) in STREAM_OUTCOMES


# -- raw bytes ---------------------------------------------------------------------------------------------

UNARY = [
    "/modelwire.v1.Predictor/Predict",
    "/modelwire.v1.BatchPredictor/PredictBatch",
    "/modelwire.v1.Predictor/ListModels",
    "/inference.GRPCInferenceService/ModelInfer",
    "/inference.GRPCInferenceService/ModelMetadata",
    "/inference.GRPCInferenceService/ModelReady",
    "/modelwire.v1.Jobs/Submit",
    "/modelwire.v1.Jobs/Get",
    "/modelwire.v1.Jobs/List",
    "/modelwire.v1.Jobs/Cancel",
    "/grpc.health.v1.Health/Check",
]
SERVER_STREAMS = ["/modelwire.v1.Events/Subscribe", "/modelwire.v1.Jobs/Watch", "/modelwire.v1.Jobs/Results"]
CLIENT_STREAMS = ["/modelwire.v1.Jobs/SubmitStream"]
BIDI = ["/modelwire.v1.Predictor/PredictStream", "/inference.GRPCInferenceService/ModelStreamInfer"]


@FUZZ
@given(method=st.sampled_from(UNARY), payload=st.binary(max_size=200))
def test_random_bytes_unary(channel: grpc.Channel, method: str, payload: bytes) -> None:
    call = channel.unary_unary(method)  # no serializers: the bytes go as they are
    assert_client_error(outcome(lambda: call(payload, timeout=10)))


@settings(FUZZ, max_examples=60)
@given(method=st.sampled_from(SERVER_STREAMS), payload=st.binary(max_size=100))
def test_random_bytes_server_stream(channel: grpc.Channel, method: str, payload: bytes) -> None:
    call = channel.unary_stream(method)
    assert outcome(lambda: call(payload, timeout=0.5)) in STREAM_OUTCOMES


@settings(FUZZ, max_examples=60)
@given(method=st.sampled_from(CLIENT_STREAMS + BIDI), payloads=st.lists(st.binary(max_size=100), max_size=3))
def test_random_bytes_client_stream(channel: grpc.Channel, method: str, payloads: list[bytes]) -> None:
    if method in CLIENT_STREAMS:
        unary = channel.stream_unary(method)
        assert_client_error(outcome(lambda: unary(iter(payloads), timeout=10)))
    else:
        bidi = channel.stream_stream(method)
        assert_client_error(outcome(lambda: bidi(iter(payloads), timeout=10)))


def _first_messages() -> dict[str, bytes]:
    infer = oip.ModelInferRequest(model_name="echo")
    infer.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hi")
    chunk = jobs_pb2.SubmitJobChunk()
    chunk.spec.model = "echo"
    chunk.spec.texts.append("hi")
    reflection = reflection_pb2.ServerReflectionRequest(list_services="")
    return {
        "/modelwire.v1.Predictor/PredictStream": pb.StreamInput(
            id="0", text="hi", model="echo"
        ).SerializeToString(),
        "/inference.GRPCInferenceService/ModelStreamInfer": infer.SerializeToString(),
        "/modelwire.v1.Jobs/SubmitStream": chunk.SerializeToString(),
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": reflection.SerializeToString(),
    }


@pytest.mark.parametrize("method", sorted(_first_messages()))
@pytest.mark.parametrize("position", ["first", "second"])
def test_a_malformed_message_in_a_stream_is_invalid_argument(
    channel: grpc.Channel, method: str, position: str
) -> None:
    good, bad = _first_messages()[method], b"\xff\xff\xff"
    messages = [bad] if position == "first" else [good, bad]
    if method in CLIENT_STREAMS:
        code = outcome(lambda: channel.stream_unary(method)(iter(messages), timeout=10))
    else:
        code = outcome(lambda: channel.stream_stream(method)(iter(messages), timeout=10))
    assert code is grpc.StatusCode.INVALID_ARGUMENT


def test_the_server_still_serves(channel: grpc.Channel) -> None:
    # Runs after the fuzzing above (file order): nothing it sent broke the listener or the models.
    reply = pb_grpc.PredictorStub(channel).Predict(pb.Input(text="I love this product"), timeout=10)
    assert reply.sentiment == "positive"
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
