"""The listener itself: ports, SO_REUSEPORT, message limits, a stop that lets in-flight calls finish."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import grpc
import pytest
from grpc_status import rpc_status

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.errors import ConfigurationError
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.server import GrpcListener, start_grpc_server
from modelwire.settings import GRPCSettings, LimitsSettings, Settings
from tests.models import SlowModel


async def test_a_port_in_use_fails_fast(services: Services) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}"):
            await start_grpc_server(services, "127.0.0.1", port)


async def test_reuse_port_lets_workers_share_a_port(services: Services) -> None:
    first = await start_grpc_server(services, "127.0.0.1", 0, reuse_port=True)
    try:
        second = await start_grpc_server(services, "127.0.0.1", first.port, reuse_port=True)
        assert second.port == first.port
        await second.stop(0)
        with pytest.raises(ConfigurationError):
            await start_grpc_server(services, "127.0.0.1", first.port, reuse_port=False)
    finally:
        await first.stop(0)


async def test_messages_over_the_configured_size_are_refused(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        grpc=GRPCSettings(max_message_bytes=4096), limits=LimitsSettings(max_text_chars=100_000)
    )
    services = make_services(settings=settings)
    await start_services(services)
    listener = await start_grpc_server(services, "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            stub = pb_grpc.PredictorStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Predict(pb.Input(text="I love it " * 1000))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert rpc_status.from_call(caught.value) is None  # refused by grpc, before modelwire
            assert (await stub.Predict(pb.Input(text="I love this product"))).sentiment == "positive"
    finally:
        await listener.stop(0)
        await stop_services(services)


async def test_stop_lets_an_in_flight_call_finish(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> None:
    services = make_services(SlowModel("slow", delay_s=0.5), settings=make_settings())
    await start_services(services)
    listener: GrpcListener = await start_grpc_server(services, "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            stub = pb_grpc.PredictorStub(channel)
            call = asyncio.ensure_future(stub.Predict(pb.Input(text="wait for me", model="slow")))
            await asyncio.sleep(0.2)
            await listener.stop(grace=5)
            output = await call
            assert output.result["echo"] == "wait for me"
    finally:
        await stop_services(services)
