"""``RemoteFeatureStore``: the online store of another modelwire, read over gRPC (``--features
grpc://host:port``), so model services behind a gateway read one feature service instead of a store each.

It keeps the ``FeatureStore`` contract by asking ``modelwire.v1.Features``: a read is one
``GetOnlineFeatures`` per view asked (all of them at once, concurrently), for every feature of the view,
and turns the answer back into stored values with their event times (a value ``OUTSIDE_MAX_AGE`` there
comes back with its event time and no value; this process decides freshness again with its own view
settings, which should match the feature service's). A write is one ``Push`` stream. The feature service
checks its own scopes: ``features.key`` is the credential presented (``features:read``, and
``features:write`` to push through it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from google.protobuf import struct_pb2

from modelwire.client._grpc import map_grpc_errors
from modelwire.errors import ConfigurationError, UnavailableError
from modelwire.features.rows import Row
from modelwire.features.store import FeatureStore, Lookup, StoredValue
from modelwire.features.views import FeatureView, FeatureViews
from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2_grpc as pb_grpc

__all__ = ["RemoteFeatureStore"]

_STORED = (pb.FieldStatus.PRESENT, pb.FieldStatus.OUTSIDE_MAX_AGE)


def _value(message: Any) -> Any:
    kind = message.WhichOneof("kind")
    if kind is None:
        return None
    return list(message.float_vector.values) if kind == "float_vector" else getattr(message, kind)


class RemoteFeatureStore(FeatureStore):
    """The feature store of the modelwire at ``url`` (``grpc://host:port``; ``grpcs://`` for TLS with the
    system's CAs)."""

    name = "grpc"

    def __init__(
        self, url: str, views: FeatureViews, *, key: str | None = None, timeout_s: float = 10.0
    ) -> None:
        scheme, sep, target = url.partition("://")
        if not sep or scheme not in ("grpc", "grpcs") or not target.strip("/"):
            raise ConfigurationError(f"features.store {url!r}: a feature service is grpc://host:port")
        self.target = target.rstrip("/")
        self.secure = scheme == "grpcs"
        self.views = views
        self.timeout_s = timeout_s
        self.metadata = (("authorization", f"Bearer {key}"),) if key else ()
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    async def open(self) -> None:
        if self._channel is None:
            if self.secure:
                self._channel = grpc.aio.secure_channel(self.target, grpc.ssl_channel_credentials())
            else:
                self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = pb_grpc.FeaturesStub(self._channel)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(None)

    def _features(self) -> Any:
        if self._stub is None:
            raise UnavailableError("the feature store is not open")
        return self._stub

    async def read(self, lookups: Sequence[Lookup]) -> list[dict[str, StoredValue]]:
        by_view: dict[str, list[str]] = {}
        for view, entity in lookups:
            keys = by_view.setdefault(view, [])
            if entity not in keys:
                keys.append(entity)
        answers = await asyncio.gather(
            *(self._read_view(self.views.get(v), keys) for v, keys in by_view.items())
        )
        found = dict(zip(by_view, answers, strict=True))
        return [dict(found[view].get(entity, {})) for view, entity in lookups]

    async def _read_view(self, view: FeatureView, keys: list[str]) -> dict[str, dict[str, StoredValue]]:
        values = [json.loads(key) for key in keys]  # the entity key values, as strings
        columns = [
            pb.EntityColumn(name=name, values=[pb.FeatureValue(string_value=v[i]) for v in values])
            for i, name in enumerate(view.entities)
        ]
        features = list(view.features)
        request = pb.GetOnlineFeaturesRequest(
            features=[f"{view.name}:{f}" for f in features], entities=columns, full_feature_names=True
        )
        with map_grpc_errors(self.target):
            reply = await self._features().GetOnlineFeatures(
                request, timeout=self.timeout_s, metadata=self.metadata
            )
        out: dict[str, dict[str, StoredValue]] = {key: {} for key in keys}
        results = list(reply.results)[len(view.entities) :]
        for feature, column in zip(features, results, strict=True):
            for key, value, status, stamp in zip(
                keys, column.values, column.statuses, column.event_timestamps, strict=True
            ):
                if status in _STORED:
                    out[key][feature] = (_value(value), stamp.ToNanoseconds() / 1e9)
        return out

    async def write(self, view: FeatureView, rows: Sequence[Row]) -> int:
        async def messages() -> AsyncIterator[Any]:
            structs = []
            for row in rows:
                struct = struct_pb2.Struct()
                struct.update(dict(zip(view.entities, json.loads(row.entity), strict=True)))
                struct.update({**row.values, "event_timestamp": row.event_ts})
                structs.append(struct)
            yield pb.PushFeaturesRequest(view=view.name, rows=structs)

        with map_grpc_errors(self.target):
            reply = await self._features().Push(messages(), timeout=self.timeout_s, metadata=self.metadata)
        return int(reply.applied)
