"""``modelwire.v1.Features`` on a real server, over each store: the same views, rules and errors as REST,
client-streamed Push, health and reflection, auth."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2_grpc as pb_grpc
from tests.features.conftest import FeatureServer


def _target(fs: FeatureServer) -> str:
    return fs.server.grpc_url.removeprefix("grpc://")


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def _row(**values: Any) -> struct_pb2.Struct:
    row = struct_pb2.Struct()
    row.update(values)
    return row


def _value(v: pb.FeatureValue) -> Any:
    kind = v.WhichOneof("kind")
    if kind is None:
        return None
    return list(v.float_vector.values) if kind == "float_vector" else getattr(v, kind)


@pytest.fixture
async def stub(feature_server: FeatureServer) -> AsyncIterator[pb_grpc.FeaturesStub]:
    async with grpc.aio.insecure_channel(_target(feature_server)) as channel:
        yield pb_grpc.FeaturesStub(channel)


async def test_push_stream_then_read_back_typed_with_statuses(
    stub: pb_grpc.FeaturesStub, feature_server: FeatureServer
) -> None:
    run = uuid.uuid4().hex[:8]
    u1, u2 = f"{run}-1", f"{run}-2"
    now = time.time()

    async def messages() -> AsyncIterator[pb.PushFeaturesRequest]:
        yield pb.PushFeaturesRequest(
            view="user_stats", rows=[_row(user_id=u1, avg_rating=4.5, n_reviews=10, event_timestamp=now)]
        )
        yield pb.PushFeaturesRequest(
            rows=[_row(user_id=u2, tier="gold", vec=[0.5, 1], event_timestamp=now - 7200)]
        )
        yield pb.PushFeaturesRequest(rows=[_row(user_id=u1, avg_rating=1.0, event_timestamp=now - 5)])  # late

    pushed = await stub.Push(messages(), metadata=_auth(feature_server.both))
    assert (pushed.view, pushed.applied, pushed.skipped) == ("user_stats", 2, 1)
    request = pb.GetOnlineFeaturesRequest(
        features=["user_stats:avg_rating", "user_stats:n_reviews", "user_stats:vec"],
        entities=[
            pb.EntityColumn(
                name="user_id", values=[pb.FeatureValue(string_value=u) for u in (u1, u2, "none")]
            )
        ],
    )
    answer = await stub.GetOnlineFeatures(request, metadata=_auth(feature_server.reader))
    assert list(answer.feature_names) == ["user_id", "avg_rating", "n_reviews", "vec"]
    entity, rating, reviews, vec = answer.results
    assert [_value(v) for v in entity.values] == [u1, u2, "none"]
    assert [_value(v) for v in rating.values] == [4.5, None, None]
    assert [_value(v) for v in reviews.values] == [10, None, None]
    assert reviews.values[0].WhichOneof("kind") == "int_value"
    assert [_value(v) for v in vec.values] == [None, None, None]  # u2's vector is 2 h old: TTL 1 h
    statuses = pb.FieldStatus.Name
    assert [statuses(s) for s in rating.statuses] == ["PRESENT", "NOT_FOUND", "NOT_FOUND"]
    assert [statuses(s) for s in vec.statuses] == ["NOT_FOUND", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    assert abs(rating.event_timestamps[0].ToNanoseconds() / 1e9 - now) < 1e-3
    assert vec.event_timestamps[1].seconds == int(now - 7200)
    assert rating.event_timestamps[1].seconds == 0

    # the same store behind REST
    async with httpx.AsyncClient(
        base_url=feature_server.server.http_url, headers={"authorization": f"Bearer {feature_server.reader}"}
    ) as client:
        rest = await client.post(
            "/v1/features/get-online-features",
            json={"features": ["user_stats:avg_rating"], "entities": {"user_id": [u1]}},
        )
    assert rest.json()["results"][1]["values"] == [4.5]


async def test_list_feature_views(stub: pb_grpc.FeaturesStub, feature_server: FeatureServer) -> None:
    answer = await stub.ListFeatureViews(pb.ListFeatureViewsRequest(), metadata=_auth(feature_server.reader))
    assert [v.name for v in answer.feature_views] == ["user_stats", "merchant"]
    assert dict(answer.feature_views[1].features) == {"risk": "float"}
    assert list(answer.feature_views[0].entities) == ["user_id"]
    assert answer.feature_views[1].ttl_s == 60


async def test_errors_are_statuses_with_the_field(
    stub: pb_grpc.FeaturesStub, feature_server: FeatureServer
) -> None:
    key = _auth(feature_server.both)

    async def push(*messages: pb.PushFeaturesRequest) -> grpc.aio.AioRpcError:
        async def stream() -> AsyncIterator[pb.PushFeaturesRequest]:
            for m in messages:
                yield m

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Push(stream(), metadata=key)
        return caught.value

    error = await push(pb.PushFeaturesRequest(view="user_stats", rows=[_row(user_id="u", n_reviews=1.5)]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rows[0].n_reviews" in (error.details() or "")
    error = await push(pb.PushFeaturesRequest(view="nope", rows=[_row(user_id="u")]))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await push(pb.PushFeaturesRequest(rows=[_row(user_id="u")]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = await push(
        pb.PushFeaturesRequest(view="user_stats", rows=[_row(user_id="u", tier="a")]),
        pb.PushFeaturesRequest(view="merchant"),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetOnlineFeatures(
            pb.GetOnlineFeaturesRequest(
                features=["merchant:risk"],
                entities=[pb.EntityColumn(name="user_id", values=[pb.FeatureValue(string_value="u")])],
            ),
            metadata=key,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "merchant_id" in (caught.value.details() or "")


async def test_each_method_needs_its_scope(stub: pb_grpc.FeaturesStub, feature_server: FeatureServer) -> None:
    request = pb.GetOnlineFeaturesRequest(
        features=["user_stats:tier"],
        entities=[pb.EntityColumn(name="user_id", values=[pb.FeatureValue(int_value=1)])],
    )

    async def one() -> AsyncIterator[pb.PushFeaturesRequest]:
        yield pb.PushFeaturesRequest(view="user_stats", rows=[_row(user_id="u", tier="a")])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetOnlineFeatures(request)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for key, call in (
        (feature_server.predict, "get"),
        (feature_server.writer, "get"),
        (feature_server.reader, "push"),
    ):
        made = (
            stub.GetOnlineFeatures(request, metadata=_auth(key))
            if call == "get"
            else stub.Push(one(), metadata=_auth(key))
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await made
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert ("features:read" if call == "get" else "features:write") in (caught.value.details() or "")
    assert (await stub.Push(one(), metadata=_auth(feature_server.writer))).view == "user_stats"


async def test_health_and_reflection_know_the_service(feature_server: FeatureServer) -> None:
    async with grpc.aio.insecure_channel(_target(feature_server)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service="modelwire.v1.Features"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")
            yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="modelwire.v1.Features")

        listed, described = [r async for r in reflect.ServerReflectionInfo(ask())]
    assert "modelwire.v1.Features" in {s.name for s in listed.list_services_response.service}
    assert described.WhichOneof("message_response") == "file_descriptor_response"
