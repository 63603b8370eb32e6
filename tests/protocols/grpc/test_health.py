"""grpc.health.v1.Health (Check, Watch) and server reflection, as grpcurl and load balancers use them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.protocols.grpc.server import SERVICE_NAMES, GrpcListener, start_grpc_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def health(channel: grpc.aio.Channel) -> Any:
    return health_pb2_grpc.HealthStub(channel)


@pytest.mark.parametrize("service", ["", *SERVICE_NAMES])
async def test_check_is_serving(health: Any, service: str) -> None:
    response = await health.Check(health_pb2.HealthCheckRequest(service=service))
    assert response.status == SERVING


async def test_check_unknown_service_is_not_found(health: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_follows_readiness_and_ends_on_stop(
    health: Any, services: Services, listener: GrpcListener
) -> None:
    call = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAMES[0]))
    assert (await asyncio.wait_for(call.read(), 5)).status == SERVING
    services.dataplane.stop_accepting()  # what a shutdown does first; the listener notices by itself
    assert (await asyncio.wait_for(call.read(), 5)).status == NOT_SERVING
    started = time.monotonic()
    await listener.stop(grace=30)  # an open Watch must not hold the stop for the grace period
    assert time.monotonic() - started < 5
    assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_watch_unknown_service(health: Any) -> None:
    call = health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"))
    response = await asyncio.wait_for(call.read(), 5)
    assert response.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    call.cancel()


async def test_not_serving_until_models_are_loaded(make_services: Callable[..., Services]) -> None:
    services = make_services()
    listener = await start_grpc_server(services, "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            assert (await stub.Check(request)).status == NOT_SERVING
            await start_services(services)
            await listener.refresh_health()
            assert (await stub.Check(request)).status == SERVING
    finally:
        await listener.stop(0)
        await stop_services(services)


async def _reflect(channel: grpc.aio.Channel, request: Any) -> Any:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> Any:
        yield request

    responses = [r async for r in stub.ServerReflectionInfo(requests())]
    (response,) = responses
    return response


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    response = await _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in response.list_services_response.service}
    assert {"modelwire.v1.Predictor", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize(
    ("symbol", "file", "methods"),
    [
        ("modelwire.v1.Predictor", "modelwire/v1/predictor.proto", {"Predict", "PredictStream"}),
        (
            "inference.GRPCInferenceService",
            "inference/grpc_service.proto",
            {"ModelInfer", "ModelStreamInfer"},
        ),
    ],
)
async def test_reflection_describes_the_services(
    channel: grpc.aio.Channel, symbol: str, file: str, methods: set[str]
) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    response = await _reflect(channel, request)
    assert response.WhichOneof("message_response") == "file_descriptor_response"
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(blob)
        for blob in response.file_descriptor_response.file_descriptor_proto
    ]
    described = next(f for f in files if f.name == file)
    service = next(s for s in described.service if f"{described.package}.{s.name}" == symbol)
    assert methods <= {m.name for m in service.method}


async def test_reflection_serves_dependencies(channel: grpc.aio.Channel) -> None:
    # grpcurl asks for imported files by name (predictor.proto imports struct.proto) before it can call.
    request = reflection_pb2.ServerReflectionRequest(file_by_filename="google/protobuf/struct.proto")
    response = await _reflect(channel, request)
    assert response.WhichOneof("message_response") == "file_descriptor_response"
    (blob, *_) = response.file_descriptor_response.file_descriptor_proto
    assert descriptor_pb2.FileDescriptorProto.FromString(blob).package == "google.protobuf"
