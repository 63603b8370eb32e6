"""gRPC face of the monitors and alerts (``modelwire.v1.Monitoring``): the same JSON as ``GET /v1/monitoring``
and ``GET /v1/alerts`` as a ``Struct``, and silences. Parse, call the monitoring façade, render."""

from __future__ import annotations

from typing import Any

import msgspec
from google.protobuf import struct_pb2

from modelwire.protocols.facades import Facades
from modelwire.protocols.grpc._generated.modelwire.v1 import monitoring_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import monitoring_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.errors import map_errors

__all__ = ["MonitoringServicer"]

Context = Any


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(msgspec.json.decode(msgspec.json.encode(value)))  # NaN-free JSON types only
    return out


class MonitoringServicer(pb_grpc.MonitoringServicer):  # type: ignore[misc]
    def __init__(self, services: Facades) -> None:
        self._monitoring = services.monitoring

    @map_errors
    async def Get(self, request: Any, context: Context) -> struct_pb2.Struct:
        return _struct(self._monitoring.snapshot())

    @map_errors
    async def ListAlerts(self, request: Any, context: Context) -> struct_pb2.Struct:
        return _struct(self._monitoring.alerts())

    @map_errors
    async def Silence(self, request: Any, context: Context) -> struct_pb2.Struct:
        body = {
            "matchers": dict(request.matchers),
            "duration_s": request.duration_s,
            "comment": request.comment,
        }
        return _struct(self._monitoring.add_silence(body))

    @map_errors
    async def Unsilence(self, request: Any, context: Context) -> Any:
        self._monitoring.remove_silence(request.id)
        return pb.UnsilenceResponse()
