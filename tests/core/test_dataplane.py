from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelwire import (
    Datatype,
    DeadlineExceededError,
    ErrorCode,
    InvalidInputError,
    Model,
    ModelNotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    Settings,
    TensorSpec,
    UnavailableError,
)
from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.core.dataplane import CallContext
from modelwire.core.tensors import InferRequest, RequestedOutput, Tensor
from modelwire.settings import BatchingSettings, LimitsSettings
from tests.core.conftest import RunningServices
from tests.models import EchoModel, ErrorModel, SlowModel

CTX = CallContext("test")


class GateModel(Model):
    """Async model: items named ``"wait…"`` are held until the test opens ``gate``; others answer at once."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def __init__(self, name: str = "gate", version: str = "1", **options: Any) -> None:
        super().__init__(name, version, **options)
        self.calls: list[list[Any]] = []
        self.cancelled = 0
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        self.calls.append(list(batch))
        self.entered.set()
        if any(str(item).startswith("wait") for item in batch):
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return [f"out:{item}" for item in batch]


def no_batching(make_settings: Callable[..., Settings], **limits: Any) -> Settings:
    return make_settings(batching=BatchingSettings(enabled=False), limits=LimitsSettings(**limits))


async def items(*pairs: tuple[str, Any]) -> AsyncIterator[tuple[str, Any]]:
    for pair in pairs:
        yield pair


# -- answers ------------------------------------------------------------------------------------------


async def test_predict_and_infer_answer_per_item(running_services: RunningServices) -> None:
    async with running_services(EchoModel()) as services:
        plane = services.dataplane
        assert await plane.predict("echo", "hi", ctx=CTX) == {"echo": "hi", "length": 2}
        good, bad = await plane.infer("echo", ["ok", "bad"], ctx=CTX)
        assert good == {"echo": "ok", "length": 2}
        assert isinstance(bad, InvalidInputError)
        with pytest.raises(InvalidInputError, match="refuses"):
            await plane.predict("echo", "bad", ctx=CTX)


async def test_versions_are_addressable(running_services: RunningServices) -> None:
    async with running_services(EchoModel("echo", "1"), EchoModel("echo", "2")) as services:
        plane = services.dataplane
        assert await plane.predict("echo", "x", version="1", ctx=CTX) == {"echo": "x", "length": 1}
        with pytest.raises(ModelNotFoundError, match="versions: 1, 2"):
            await plane.predict("echo", "x", version="3", ctx=CTX)
        with pytest.raises(ModelNotFoundError, match="served: echo"):
            await plane.predict("nope", "x", ctx=CTX)


async def test_a_model_that_raises_is_an_internal_error_with_an_id(running_services: RunningServices) -> None:
    async with running_services(ErrorModel("broken")) as services:
        with pytest.raises(Exception) as info:
            await services.dataplane.predict("broken", "x", ctx=CTX)
        error = info.value
        assert getattr(error, "code", None) is ErrorCode.INTERNAL
        assert "secret" not in str(error)
        assert getattr(error, "details", {})["error_id"]


# -- limits -------------------------------------------------------------------------------------------


async def test_too_many_items_is_payload_too_large(
    running_services: RunningServices, make_settings: Callable[..., Settings]
) -> None:
    echo = EchoModel()
    async with running_services(
        echo, settings=make_settings(limits=LimitsSettings(max_batch_items=3))
    ) as svc:
        assert len(await svc.dataplane.infer("echo", ["a", "b", "c"], ctx=CTX)) == 3
        with pytest.raises(PayloadTooLargeError, match="4 items; the limit is 3") as info:
            await svc.dataplane.infer("echo", ["a", "b", "c", "d"], ctx=CTX)
    assert info.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert sum(len(call) for call in echo.calls) == 3  # the refused batch never reached the model


async def test_too_long_a_text_is_payload_too_large(
    running_services: RunningServices, make_settings: Callable[..., Settings]
) -> None:
    echo = EchoModel()
    async with running_services(
        echo, settings=make_settings(limits=LimitsSettings(max_text_chars=10))
    ) as svc:
        assert await svc.dataplane.predict("echo", "x" * 10, ctx=CTX) == {"echo": "x" * 10, "length": 10}
        with pytest.raises(PayloadTooLargeError, match="11 characters") as info:
            await svc.dataplane.infer("echo", ["fine", "y" * 11], ctx=CTX)
    assert info.value.details == {"index": 1}
    assert echo.calls == [["x" * 10]]


async def test_an_empty_batch_is_invalid_input(running_services: RunningServices) -> None:
    echo = EchoModel()
    async with running_services(echo) as services:
        with pytest.raises(InvalidInputError, match="empty"):
            await services.dataplane.infer("echo", [], ctx=CTX)
    assert echo.calls == []


# -- deadlines ----------------------------------------------------------------------------------------


async def test_a_deadline_already_past_never_calls_the_model(running_services: RunningServices) -> None:
    echo = EchoModel()
    async with running_services(echo) as services:
        with pytest.raises(DeadlineExceededError, match="before the model was called") as info:
            await services.dataplane.predict("echo", "x", ctx=CallContext("test", time.monotonic() - 1))
    assert info.value.code is ErrorCode.DEADLINE_EXCEEDED
    assert echo.calls == []


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "unbatched"])
async def test_a_model_slower_than_the_request_timeout(
    running_services: RunningServices, make_settings: Callable[..., Settings], batching: bool
) -> None:
    settings = make_settings(
        limits=LimitsSettings(request_timeout_s=0.5), batching=BatchingSettings(enabled=batching)
    )
    async with asyncio.timeout(20):  # guards against a hang, not a measurement
        async with running_services(SlowModel("slow", delay_s=3600), EchoModel(), settings=settings) as svc:
            with pytest.raises(DeadlineExceededError, match=r"did not answer within 0\.5 s"):
                await svc.dataplane.predict("slow", "x", ctx=CTX)
            assert svc.dataplane.inflight == 0
            # the server keeps serving the next request
            assert await svc.dataplane.predict("echo", "next", ctx=CTX) == {"echo": "next", "length": 4}
        # ...and stopping does not wait for the abandoned call to the hung model


async def test_a_client_deadline_shorter_than_the_timeout_wins(running_services: RunningServices) -> None:
    gate = GateModel()
    async with running_services(gate) as services:
        with pytest.raises(DeadlineExceededError):
            await services.dataplane.predict("gate", "wait", ctx=CallContext("test", time.monotonic() + 0.05))
        assert gate.calls == [["wait"]]


# -- load shedding and shutdown -----------------------------------------------------------------------


async def test_over_max_inflight_is_overloaded_with_retry_after(
    running_services: RunningServices, make_settings: Callable[..., Settings]
) -> None:
    gate = GateModel()
    async with running_services(gate, settings=no_batching(make_settings, max_inflight=1)) as services:
        plane = services.dataplane
        first = asyncio.ensure_future(plane.predict("gate", "wait", ctx=CTX))
        await gate.entered.wait()
        assert plane.inflight == 1

        with pytest.raises(OverloadedError) as info:
            await plane.predict("gate", "now", ctx=CTX)
        assert info.value.retry_after_s is not None
        assert info.value.retry_after_s > 0
        assert info.value.code is ErrorCode.UNAVAILABLE
        assert gate.calls == [["wait"]]  # the shed request never reached the model

        gate.gate.set()
        assert await first == "out:wait"
        assert plane.inflight == 0
        assert await plane.predict("gate", "now", ctx=CTX) == "out:now"


async def test_after_stop_accepting_requests_are_unavailable(running_services: RunningServices) -> None:
    async with running_services(EchoModel()) as services:
        plane = services.dataplane
        assert plane.ready()
        plane.stop_accepting()
        assert not plane.ready()
        assert plane.live()
        with pytest.raises(UnavailableError, match="shutting down") as info:
            await plane.predict("echo", "x", ctx=CTX)
        assert info.value.retry_after_s is not None


async def test_after_stop_requests_are_unavailable(make_services: Callable[..., Services]) -> None:
    services = make_services(EchoModel(), default=False)
    await start_services(services)
    await stop_services(services)
    with pytest.raises(UnavailableError):
        await services.dataplane.predict("echo", "x", ctx=CTX)


async def test_stop_lets_an_in_flight_request_finish(running_services: RunningServices) -> None:
    gate = GateModel()
    async with running_services(gate) as services:
        in_flight = asyncio.ensure_future(services.dataplane.predict("gate", "wait", ctx=CTX))
        await gate.entered.wait()
        stopping = asyncio.ensure_future(stop_services(services))
        await asyncio.sleep(0)
        gate.gate.set()
        await stopping
        assert await in_flight == "out:wait"


# -- streams ------------------------------------------------------------------------------------------


async def test_stream_yields_every_id_exactly_once(running_services: RunningServices) -> None:
    async with running_services(EchoModel()) as services:
        source = items(*((f"id-{i}", "bad" if i == 7 else f"text {i}") for i in range(30)))
        out = [pair async for pair in services.dataplane.stream("echo", source, ctx=CTX)]

    ids = [request_id for request_id, _ in out]
    assert sorted(ids) == sorted(f"id-{i}" for i in range(30))
    assert len(ids) == len(set(ids))
    answers = dict(out)
    assert isinstance(answers["id-7"], InvalidInputError)
    assert answers["id-3"] == {"echo": "text 3", "length": 6}


async def test_stream_answers_as_soon_as_each_is_ready(
    running_services: RunningServices, make_settings: Callable[..., Settings]
) -> None:
    gate = GateModel()
    async with running_services(gate, settings=no_batching(make_settings)) as services:
        stream = services.dataplane.stream("gate", items(("slow", "wait"), ("fast", "now")), ctx=CTX)
        assert await anext(stream) == ("fast", "out:now")
        gate.gate.set()
        assert await anext(stream) == ("slow", "out:wait")
        with pytest.raises(StopAsyncIteration):
            await anext(stream)


async def test_closing_a_stream_early_cancels_what_is_pending(
    running_services: RunningServices, make_settings: Callable[..., Settings]
) -> None:
    gate = GateModel()
    async with running_services(gate, settings=no_batching(make_settings)) as services:
        plane = services.dataplane
        stream = plane.stream("gate", items(("a", "now"), ("b", "wait-1"), ("c", "wait-2")), ctx=CTX)
        assert await anext(stream) == ("a", "out:now")
        await stream.aclose()
        assert gate.cancelled == 2
        assert plane.inflight == 0


async def test_stream_of_an_unknown_model(running_services: RunningServices) -> None:
    async with running_services(EchoModel()) as services:
        with pytest.raises(ModelNotFoundError):
            await anext(services.dataplane.stream("nope", items(("a", "x")), ctx=CTX))


# -- tensors ------------------------------------------------------------------------------------------


async def test_infer_tensors_with_the_sentiment_model(running_services: RunningServices) -> None:
    request = InferRequest(
        [Tensor("text", "BYTES", [2, 1], [b"I love this product", b"a terrible, boring waste of time"])],
        id="req-1",
    )
    async with running_services(default=True) as services:
        response = await services.dataplane.infer_tensors("sentiment", request, ctx=CTX)
        (only,) = (
            await services.dataplane.infer_tensors(
                "sentiment",
                InferRequest(request.inputs, outputs=[RequestedOutput("confidence")]),
                ctx=CTX,
            )
        ).outputs

    assert (response.model_name, response.model_version, response.id) == ("sentiment", "1", "req-1")
    sentiment, confidence = response.outputs
    assert sentiment.name == "sentiment"
    assert sentiment.datatype == "BYTES"
    assert sentiment.shape == [2]
    assert sentiment.data == ["positive", "negative"]
    assert confidence.datatype == "FP32"
    assert confidence.data[0] > 0.8
    assert only.name == "confidence"


async def test_infer_tensors_fails_the_request_when_an_item_fails(running_services: RunningServices) -> None:
    request = InferRequest([Tensor("text", "BYTES", [2], [b"fine", b"bad"])])
    async with running_services(EchoModel()) as services:
        with pytest.raises(InvalidInputError, match="refuses"):
            await services.dataplane.infer_tensors("echo", request, ctx=CTX)
        with pytest.raises(InvalidInputError, match="must be BYTES"):
            await services.dataplane.infer_tensors(
                "echo", InferRequest([Tensor("text", "INT64", [1], [1])]), ctx=CTX
            )


# -- metadata and metrics -----------------------------------------------------------------------------


async def test_metadata_and_readiness(running_services: RunningServices) -> None:
    async with running_services(EchoModel("echo", "1"), EchoModel("echo", "2")) as services:
        plane = services.dataplane
        assert plane.server_metadata()["name"] == "modelwire"
        assert "binary_tensor_data" in plane.server_metadata()["extensions"]
        assert plane.model_ready("echo")
        meta = plane.model_metadata("echo")
        assert meta["versions"] == ["1", "2"]
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        assert [o["name"] for o in meta["outputs"]] == ["echo", "length"]
        (listed,) = plane.list_models()
        assert listed["default_version"] == "2"
        assert listed["versions"] == [{"version": "1", "ready": True}, {"version": "2", "ready": True}]


def samples(services: Services) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = services.metrics.render().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_requests_by_protocol_model_and_code(
    running_services: RunningServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    rest, grpc = CallContext("rest"), CallContext("grpc")
    async with running_services(EchoModel()) as services:
        plane = services.dataplane
        await plane.infer("echo", ["a"], ctx=rest)
        await plane.infer("echo", ["b", "c", "d"], ctx=rest)
        await plane.infer("echo", ["e"], ctx=grpc)
        with pytest.raises(InvalidInputError):
            await plane.infer("echo", [], ctx=rest)
        with pytest.raises(ModelNotFoundError):
            await plane.infer("no-such-model-with-a-long-name", ["x"], ctx=rest)
        got = samples(services)

    def requests(protocol: str, model: str, code: str) -> float:
        key = (("code", code), ("model", model), ("protocol", protocol))
        return got.get(("modelwire_requests_total", key), 0.0)

    assert requests("rest", "echo", "OK") == 2
    assert requests("grpc", "echo", "OK") == 1
    assert requests("rest", "echo", "INVALID_ARGUMENT") == 1
    assert requests("rest", "unknown", "NOT_FOUND") == 1  # arbitrary names never become labels
    assert not [key for key in got if ("model", "no-such-model-with-a-long-name") in key[1]]
    assert got[("modelwire_batch_size_count", (("model", "echo"),))] == 3
    assert got[("modelwire_batch_size_sum", (("model", "echo"),))] == 5
    assert got[("modelwire_request_duration_seconds_count", (("model", "echo"), ("protocol", "rest")))] == 3
    assert got[("modelwire_inflight_requests", (("protocol", "rest"),))] == 0
    assert got[("modelwire_model_ready", (("model", "echo"), ("version", "1")))] == 1


async def test_a_shed_request_is_counted(
    running_services: RunningServices, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    async with running_services(EchoModel(), settings=make_settings()) as services:
        services.dataplane.stop_accepting()
        with pytest.raises(UnavailableError):
            await services.dataplane.infer("echo", ["x"], ctx=CTX)
        got = samples(services)
    key = (("code", "UNAVAILABLE"), ("model", "echo"), ("protocol", "test"))
    assert got[("modelwire_requests_total", key)] == 1
