"""``modelwire.v1.Features``: the feature store over gRPC. Parse, call the ``FeatureService`` (the same
one REST calls; it checks the scopes), render. ``Push`` writes each message's rows as it arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from google.protobuf import json_format, timestamp_pb2

from modelwire.errors import InvalidInputError
from modelwire.features.service import FeatureService
from modelwire.protocols.facades import Facades
from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.errors import map_errors

__all__ = ["FeatureConverter", "FeaturesServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class FeatureConverter:
    """``to_domain`` / ``from_domain`` between the proto messages and the service's values."""

    @staticmethod
    def value_from_domain(value: Any) -> Any:
        if value is None:
            return pb.FeatureValue()
        if isinstance(value, bool):
            return pb.FeatureValue(bool_value=value)
        if isinstance(value, int):
            return pb.FeatureValue(int_value=value)
        if isinstance(value, float):
            return pb.FeatureValue(float_value=value)
        if isinstance(value, str):
            return pb.FeatureValue(string_value=value)
        return pb.FeatureValue(float_vector=pb.FloatList(values=value))

    @staticmethod
    def value_to_domain(value: Any) -> Any:
        kind = value.WhichOneof("kind")
        if kind is None:
            return None
        if kind == "float_vector":
            return list(value.float_vector.values)
        return getattr(value, kind)

    @staticmethod
    def row_to_domain(row: Any) -> dict[str, Any]:
        # Struct numbers are doubles: a whole one is an integer (an int feature, an int entity key).
        out = json_format.MessageToDict(row)
        return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in out.items()}

    @classmethod
    def entities_to_domain(cls, columns: Sequence[Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for i, column in enumerate(columns):
            if not column.name or column.name in out:
                raise InvalidInputError(
                    "each entity column needs a name of its own", field=f"entities[{i}].name"
                )
            out[column.name] = [cls.value_to_domain(v) for v in column.values]
        return out


async def _rows(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Sequence[Any]]:
    message = first
    while message is not None:
        if message is not first and message.view and message.view != first.view:
            raise InvalidInputError("one Push call writes one view: the first message names it", field="view")
        yield [FeatureConverter.row_to_domain(row) for row in message.rows]
        message = await anext(rest, None)


class FeaturesServicer(pb_grpc.FeaturesServicer):  # type: ignore[misc]
    """Every call goes to ``services.features``; errors become statuses through ``errors.map_errors``."""

    def __init__(self, services: Facades) -> None:
        self._features: FeatureService = services.features

    @map_errors
    async def GetOnlineFeatures(self, request: Any, context: Context) -> Any:
        answer = await self._features.get_online(
            list(request.features),
            FeatureConverter.entities_to_domain(request.entities),
            full_feature_names=request.full_feature_names,
        )
        to_value = FeatureConverter.value_from_domain
        results = []
        for column in answer.results:
            stamps = []
            for ts in column.event_timestamps:
                stamp = timestamp_pb2.Timestamp()
                if ts is not None:
                    stamp.FromNanoseconds(round(ts * 1e9))
                stamps.append(stamp)
            results.append(
                pb.FeatureColumn(
                    values=[to_value(v) for v in column.values],
                    statuses=column.statuses,  # the enum values by name
                    event_timestamps=stamps,
                )
            )
        return pb.GetOnlineFeaturesResponse(feature_names=answer.feature_names, results=results)

    @map_errors
    async def Push(self, request_iterator: AsyncIterator[Any], context: Context) -> Any:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.view:
            raise InvalidInputError("the first message must name the view", field="view")
        result = await self._features.push(first.view, _rows(first, request_iterator), where="rows")
        return pb.PushFeaturesResponse(view=first.view, applied=result.applied, skipped=result.skipped)

    @map_errors
    async def ListFeatureViews(self, request: Any, context: Context) -> Any:
        views = [pb.FeatureViewInfo(**v) for v in self._features.list_views()]
        return pb.ListFeatureViewsResponse(feature_views=views)
