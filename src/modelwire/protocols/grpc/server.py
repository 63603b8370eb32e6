"""The gRPC listener: grpc.aio on the running event loop (the same one as REST), over the same ``Facades``.

It serves ``modelwire.v1.Predictor``, ``modelwire.v1.BatchPredictor`` (a gateway's coalesced calls),
``modelwire.v1.Events``, ``modelwire.v1.Jobs``, ``modelwire.v1.Admin``, ``modelwire.v1.Monitoring``,
``modelwire.v1.Features``, ``inference.GRPCInferenceService``, ``grpc.health.v1.Health`` (SERVING while
``DataPlane.ready()``, NOT_SERVING from the moment a stop begins) and, unless turned off in settings, server
reflection (v1alpha, which grpcurl understands).
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

from modelwire.errors import ConfigurationError
from modelwire.protocols.facades import Facades
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2 as oip
from modelwire.protocols.grpc._generated.inference import grpc_service_pb2_grpc as oip_grpc
from modelwire.protocols.grpc._generated.modelwire.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    batch_pb2,
    batch_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    features_pb2,
    features_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
)
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.accept import AcceptAhead, Recorder
from modelwire.protocols.grpc.admin import AdminServicer
from modelwire.protocols.grpc.auth import SecurityInterceptor
from modelwire.protocols.grpc.batch import BatchPredictorServicer
from modelwire.protocols.grpc.events import EventsServicer
from modelwire.protocols.grpc.features import FeaturesServicer
from modelwire.protocols.grpc.health import HealthServicer
from modelwire.protocols.grpc.inference import GRPCInferenceServiceServicer
from modelwire.protocols.grpc.jobs import JobsServicer
from modelwire.protocols.grpc.monitoring import MonitoringServicer
from modelwire.protocols.grpc.predictor import PredictorServicer
from modelwire.protocols.grpc.tracing import TraceInterceptor

__all__ = ["SERVICE_NAMES", "GrpcListener", "start_grpc_server"]

SERVICE_NAMES: tuple[str, ...] = (
    pb.DESCRIPTOR.services_by_name["Predictor"].full_name,
    oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["Events"].full_name,
    jobs_pb2.DESCRIPTOR.services_by_name["Jobs"].full_name,
    monitoring_pb2.DESCRIPTOR.services_by_name["Monitoring"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    features_pb2.DESCRIPTOR.services_by_name["Features"].full_name,
    batch_pb2.DESCRIPTOR.services_by_name["BatchPredictor"].full_name,
)
HEALTH_POLL_S = 0.5


class GrpcListener:
    """A started gRPC server: the port it bound, its health status, and a graceful stop."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        services: Facades,
        health: HealthServicer,
        accept_ahead: AcceptAhead | None = None,
    ) -> None:
        self.port = port
        self.health = health
        self.accept_ahead = accept_ahead
        self._server = server
        self._services = services
        self._follow = asyncio.create_task(self._follow_readiness(), name="grpc-health")

    async def refresh_health(self) -> None:
        """Set the health status from ``DataPlane.ready()`` now (it is also polled every HEALTH_POLL_S)."""
        await self.health.set_serving(self._services.dataplane.ready())

    async def _follow_readiness(self) -> None:
        while True:
            if self._services.dataplane.ready() != self.health.serving:
                await self.refresh_health()
            await asyncio.sleep(HEALTH_POLL_S)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls, and give in-flight ones ``grace`` seconds to finish."""
        self._follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._follow
        await self.health.close()
        await self._server.stop(grace)
        if self.accept_ahead is not None:
            await self.accept_ahead.stop()


def _add_file(pool: descriptor_pool.DescriptorPool, file: FileDescriptor) -> None:
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        for dependency in file.dependencies:
            _add_file(pool, dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.AddSerializedFile(proto.SerializeToString())


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    # The Open Inference Protocol's messages live in a private pool (see scripts/generate), so reflection
    # gets one pool holding a copy of every file it describes. google/rpc/status.proto and
    # error_details.proto are in it too: every error carries ErrorInfo, BadRequest or RetryInfo, and a
    # reflection client (grpcurl) decodes them only if it can ask for their descriptors.
    pool = descriptor_pool.DescriptorPool()
    files = (
        pb.DESCRIPTOR,
        oip.DESCRIPTOR,
        events_pb2.DESCRIPTOR,
        jobs_pb2.DESCRIPTOR,
        monitoring_pb2.DESCRIPTOR,
        admin_pb2.DESCRIPTOR,
        health_pb2.DESCRIPTOR,
    )
    files_more = (features_pb2.DESCRIPTOR, batch_pb2.DESCRIPTOR)
    rich = (status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR)
    for file in (*files, *files_more, *rich, reflection_pb2.DESCRIPTOR):
        _add_file(pool, file)
    return pool


async def start_grpc_server(
    services: Facades,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    credentials: grpc.ServerCredentials | None = None,
) -> GrpcListener:
    """Bind ``host:port`` (port 0 picks a free one), start serving, and return the listener.

    With ``credentials`` (``TLSMaterial.grpc_credentials()``) the port speaks TLS only (mutual TLS when
    the credentials require a client certificate).

    Raises ``ConfigurationError`` when the address cannot be bound (a port in use, a foreign address).
    """
    limit = services.settings.grpc.max_message_bytes
    interceptors = [
        TraceInterceptor(),
        SecurityInterceptor(services.security, services.settings.auth.api_key_header),
    ]
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            # Gateways ping their model services (gateway.keepalive_s); accept that, down to every 5 s.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ],
    )
    recorder = Recorder(server)  # registers only the hot methods with core; keeps their handlers
    pb_grpc.add_PredictorServicer_to_server(PredictorServicer(services), recorder)
    batch_pb2_grpc.add_BatchPredictorServicer_to_server(BatchPredictorServicer(services), recorder)
    events_pb2_grpc.add_EventsServicer_to_server(EventsServicer(services), recorder)
    jobs_pb2_grpc.add_JobsServicer_to_server(JobsServicer(services), recorder)
    monitoring_pb2_grpc.add_MonitoringServicer_to_server(MonitoringServicer(services), recorder)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(services), recorder)
    features_pb2_grpc.add_FeaturesServicer_to_server(FeaturesServicer(services), recorder)
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(GRPCInferenceServiceServicer(services), recorder)
    health = HealthServicer(SERVICE_NAMES)
    health_pb2_grpc.add_HealthServicer_to_server(health, recorder)
    if services.settings.grpc.reflection:
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        names = (*SERVICE_NAMES, health_name, reflection.SERVICE_NAME)
        # reflection.enable_server_reflection(names, server, ...), through the recorder
        servicer = ReflectionServicer(names, pool=_reflection_pool())
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, recorder)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        if credentials is not None:
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigurationError(f"cannot listen for gRPC on {address}: {exc}") from exc
    if bound == 0:
        raise ConfigurationError(f"cannot listen for gRPC on {address} (port in use?)")
    await server.start()
    accept_ahead = AcceptAhead(server, recorder.handlers, interceptors, services.settings.grpc.accept_ahead)
    accept_ahead.start()
    listener = GrpcListener(server, bound, services, health, accept_ahead)
    await listener.refresh_health()
    return listener
