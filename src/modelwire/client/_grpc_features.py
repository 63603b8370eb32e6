"""The feature store over gRPC: ``modelwire.v1.Features`` on the ``GrpcTransport``'s channel, answers in
the REST shapes (``client/features.py``)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2

from modelwire.client._grpc import GrpcTransport, map_grpc_errors
from modelwire.client.features import PUSH_CHUNK
from modelwire.errors import InvalidInputError
from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2_grpc as pb_grpc

__all__ = ["GrpcFeatureWire"]


def _to_value(value: Any, where: str) -> Any:
    if isinstance(value, bool):
        return pb.FeatureValue(bool_value=value)
    if isinstance(value, int):
        return pb.FeatureValue(int_value=value)
    if isinstance(value, str):
        return pb.FeatureValue(string_value=value)
    raise InvalidInputError(f"{where} must be a string or an integer, not {value!r:.40}", field=where)


def _from_value(value: Any) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    return list(value.float_vector.values) if kind == "float_vector" else getattr(value, kind)


def _stamp(ts: Any) -> str:
    when = dt.datetime.fromtimestamp(ts.ToNanoseconds() / 1e9, dt.UTC)
    return "1970-01-01T00:00:00Z" if ts.ToNanoseconds() == 0 else when.isoformat().replace("+00:00", "Z")


class GrpcFeatureWire:
    """``FeatureWire`` over one ``GrpcTransport``'s channel."""

    def __init__(self, transport: GrpcTransport) -> None:
        self._target = transport._target
        self._timeout = transport._timeout
        self._metadata = transport._metadata
        self._stub = pb_grpc.FeaturesStub(transport._channel)

    async def get(
        self, features: Sequence[str], entities: Mapping[str, Sequence[Any]], *, full_feature_names: bool
    ) -> dict[str, Any]:
        columns = [
            pb.EntityColumn(name=n, values=[_to_value(v, f"entities.{n}[{i}]") for i, v in enumerate(vs)])
            for n, vs in entities.items()
        ]
        request = pb.GetOnlineFeaturesRequest(
            features=list(features), entities=columns, full_feature_names=full_feature_names
        )
        with map_grpc_errors(self._target):
            reply = await self._stub.GetOnlineFeatures(
                request, timeout=self._timeout, metadata=self._metadata
            )
        return {
            "metadata": {"feature_names": list(reply.feature_names)},
            "results": [
                {
                    "values": [_from_value(v) for v in column.values],
                    "statuses": [pb.FieldStatus.Name(s) for s in column.statuses],
                    "event_timestamps": [_stamp(t) for t in column.event_timestamps],
                }
                for column in reply.results
            ],
        }

    async def push(self, view: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        async def messages() -> AsyncIterator[Any]:
            it = iter(rows)
            first = True
            while (chunk := list(itertools.islice(it, PUSH_CHUNK))) or first:
                structs = []
                for row in chunk:
                    struct = struct_pb2.Struct()
                    struct.update(dict(row))
                    structs.append(struct)
                yield pb.PushFeaturesRequest(view=view if first else "", rows=structs)
                first = False

        with map_grpc_errors(self._target):
            reply = await self._stub.Push(messages(), timeout=self._timeout, metadata=self._metadata)
        return {"view": reply.view, "applied": reply.applied, "skipped": reply.skipped}

    async def views(self) -> list[dict[str, Any]]:
        with map_grpc_errors(self._target):
            reply = await self._stub.ListFeatureViews(
                pb.ListFeatureViewsRequest(), timeout=self._timeout, metadata=self._metadata
            )
        return [
            {"name": v.name, "entities": list(v.entities), "features": dict(v.features), "ttl_s": v.ttl_s}
            for v in reply.feature_views
        ]
