"""Accept-ahead (``protocols/grpc/accept.py``): calls taken by modelwire's acceptors behave as any call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from grpc_status import rpc_status

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.protocols.grpc import accept
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.server import GrpcListener, start_grpc_server
from modelwire.settings import GRPCSettings, LimitsSettings, Settings
from tests.models import EchoModel


@pytest.fixture
async def quiet_services(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> AsyncIterator[Services]:
    settings = make_settings(limits=LimitsSettings(request_timeout_s=10), grpc=GRPCSettings(accept_ahead=0))
    services = make_services(EchoModel(), settings=settings)
    await start_services(services)
    yield services
    await stop_services(services)


def test_the_installed_grpcio_has_what_accept_ahead_drives() -> None:
    assert accept.supported()


async def test_acceptors_run_per_hot_method_and_stop_with_the_listener(services: Services) -> None:
    listener = await start_grpc_server(services, "127.0.0.1", 0)
    assert listener.accept_ahead is not None
    assert listener.accept_ahead.active == services.settings.grpc.accept_ahead * len(accept.HOT_METHODS)
    await listener.stop(0)
    assert listener.accept_ahead.active == 0


async def test_calls_taken_ahead_keep_answers_errors_and_trailing_version(
    listener: GrpcListener, channel: grpc.aio.Channel
) -> None:
    stub = pb_grpc.PredictorStub(channel)

    async def good(i: int) -> None:
        call = stub.Predict(pb.Input(text=f"I love this product {i}"))
        output = await call
        assert output.sentiment == "positive"
        assert ("model-version", output.version) in tuple(await call.trailing_metadata())

    async def missing() -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Predict(pb.Input(text="x", model="nope"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        status = rpc_status.from_call(caught.value)
        assert status is not None
        assert status.details  # the rich ErrorInfo

    for _ in range(2):  # concurrent, then one at a time (both reach every outstanding request)
        await asyncio.gather(*(good(i) for i in range(48)), *(missing() for _ in range(16)))
    for i in range(20):
        await good(i)
        await missing()
    assert listener.accept_ahead is not None
    assert listener.accept_ahead.accepted > 0


async def test_calls_taken_ahead_keep_deadlines(listener: GrpcListener, channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.PredictorStub(channel)
    assert listener.accept_ahead is not None
    before = listener.accept_ahead.accepted

    async def late() -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Predict(pb.Input(text="zzz", model="slow"), timeout=0.3)
        return caught.value.code()

    codes = await asyncio.gather(*(late() for _ in range(20)))
    assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}
    assert (await stub.Predict(pb.Input(text="I love this product"))).sentiment == "positive"
    assert listener.accept_ahead.accepted > before


async def test_accept_ahead_off_serves_on_grpc_aio_alone(quiet_services: Services) -> None:
    listener = await start_grpc_server(quiet_services, "127.0.0.1", 0)
    try:
        assert listener.accept_ahead is not None
        assert listener.accept_ahead.active == 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            stub = pb_grpc.PredictorStub(channel)
            answers = await asyncio.gather(
                *(stub.Predict(pb.Input(text="hi", model="echo")) for _ in range(8))
            )
            assert len(answers) == 8
        assert listener.accept_ahead.accepted == 0
    finally:
        await listener.stop(0)


async def test_a_grpcio_without_the_entry_points_serves_on_grpc_aio_alone(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(accept._SHAPES, "_handle_rpc", ("not", "this", "shape"))
    assert not accept.supported()
    listener = await start_grpc_server(services, "127.0.0.1", 0)
    try:
        assert listener.accept_ahead is not None
        assert listener.accept_ahead.active == 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            stub = pb_grpc.PredictorStub(channel)
            answers = await asyncio.gather(*(stub.Predict(pb.Input(text="I love it")) for _ in range(8)))
            assert {a.sentiment for a in answers} == {"positive"}
    finally:
        await listener.stop(0)
