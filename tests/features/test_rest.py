"""The features REST API on a real server, over each store: listing, push (JSON and a streamed NDJSON
body), Feast's get-online-features shape, errors with the field, scopes, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from tests.features.conftest import FeatureServer


def _client(fs: FeatureServer, key: str | None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=fs.server.http_url, headers=headers, timeout=30)


def _ids(n: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"{run}-u{i}" for i in range(n)]


async def test_views_are_listed_to_a_reader(feature_server: FeatureServer) -> None:
    async with _client(feature_server, feature_server.reader) as client:
        answer = await client.get("/v1/features")
    assert answer.status_code == 200
    views = answer.json()["feature_views"]
    assert [v["name"] for v in views] == ["user_stats", "merchant"]
    assert views[0] == {
        "name": "user_stats",
        "entities": ["user_id"],
        "features": {"avg_rating": "float", "n_reviews": "int", "tier": "string", "vec": "float_vector"},
        "ttl_s": 3600.0,
    }


async def test_push_then_get_online_features_in_feasts_shape(feature_server: FeatureServer) -> None:
    u1, u2, absent = _ids(3)
    stamp = "2026-01-02T03:04:05Z"
    rows = [
        {"user_id": u1, "avg_rating": 4.5, "n_reviews": 10, "event_timestamp": time.time() - 60},
        {"user_id": u2, "avg_rating": 3.0, "tier": "gold", "event_timestamp": stamp},
    ]
    async with _client(feature_server, feature_server.both) as client:
        pushed = await client.post("/v1/features/user_stats/push", json={"rows": rows})
        assert pushed.status_code == 200, pushed.text
        assert pushed.json() == {"view": "user_stats", "applied": 2, "skipped": 0}
        again = await client.post("/v1/features/user_stats/push", json={"rows": rows})
        assert again.json() == {"view": "user_stats", "applied": 0, "skipped": 2}
        answer = await client.post(
            "/v1/features/get-online-features",
            json={
                "features": ["user_stats:avg_rating", "user_stats:n_reviews"],
                "entities": {"user_id": [u1, u2, absent]},
            },
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["metadata"] == {"feature_names": ["user_id", "avg_rating", "n_reviews"]}
    entity, rating, reviews = body["results"]
    assert entity == {
        "values": [u1, u2, absent],
        "statuses": ["PRESENT"] * 3,
        "event_timestamps": ["1970-01-01T00:00:00Z"] * 3,
    }
    assert rating["values"] == [4.5, None, None]
    assert rating["statuses"] == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]  # u2's event is months old
    assert rating["event_timestamps"][1:] == ["2026-01-02T03:04:05Z", "1970-01-01T00:00:00Z"]
    assert reviews["values"] == [10, None, None]
    assert reviews["statuses"] == ["PRESENT", "NOT_FOUND", "NOT_FOUND"]


async def test_an_ndjson_stream_is_written_as_it_arrives(feature_server: FeatureServer) -> None:
    ids = _ids(2500)

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(ids), 300):
            chunk = ids[start : start + 300]
            yield b"".join(
                msgspec.json.encode({"user_id": u, "n_reviews": i}) + b"\n" for i, u in enumerate(chunk)
            )

    async with _client(feature_server, feature_server.both) as client:
        pushed = await client.post(
            "/v1/features/user_stats/push", content=body(), headers={"content-type": "application/x-ndjson"}
        )
        assert pushed.status_code == 200, pushed.text
        assert pushed.json() == {"view": "user_stats", "applied": 2500, "skipped": 0}
        answer = await client.post(
            "/v1/features/get-online-features",
            json={"features": ["user_stats:n_reviews"], "entities": {"user_id": ids[::500]}},
        )
    assert answer.json()["results"][1]["values"] == [(i * 500) % 300 for i in range(5)]


async def test_bad_input_is_refused_with_the_field(feature_server: FeatureServer) -> None:
    (u,) = _ids(1)
    cases: list[tuple[str, dict[str, Any], int, str | None]] = [
        (
            "/v1/features/user_stats/push",
            {"json": {"rows": [{"user_id": u, "avg_rating": "x"}]}},
            400,
            "$.rows[0].avg_rating",
        ),
        ("/v1/features/user_stats/push", {"json": {"rows": [{"avg_rating": 1.0}]}}, 400, "$.rows[0].user_id"),
        (
            "/v1/features/user_stats/push",
            {"json": {"rows": [{"user_id": u, "score": 1}]}},
            400,
            "$.rows[0].score",
        ),
        ("/v1/features/user_stats/push", {"json": {"row": []}}, 400, None),
        ("/v1/features/nope/push", {"json": {"rows": [{"user_id": u}]}}, 404, None),
        (
            "/v1/features/user_stats/push",
            {
                "content": b'{"user_id": "a", "n_reviews": 1}\n{"user_id": "b", "n_reviews": "many"}\n',
                "headers": {"content-type": "application/x-ndjson"},
            },
            400,
            "$[1].n_reviews",
        ),
        (
            "/v1/features/user_stats/push",
            {"content": b"user_id,n\n", "headers": {"content-type": "text/csv"}},
            415,
            None,
        ),
        (
            "/v1/features/get-online-features",
            {"json": {"features": ["user_stats:avg"], "entities": {"user_id": [u]}}},
            400,
            "features[0]",
        ),
        (
            "/v1/features/get-online-features",
            {"json": {"features": ["avg_rating"], "entities": {"user_id": [u]}}},
            400,
            "features[0]",
        ),
        (
            "/v1/features/get-online-features",
            {"json": {"features": ["merchant:risk"], "entities": {"user_id": [u]}}},
            400,
            "entities.merchant_id",
        ),
        (
            "/v1/features/get-online-features",
            {"json": {"features": ["user_stats:tier"], "entities": {"user_id": [u], "x": []}}},
            400,
            "entities",
        ),
    ]
    async with _client(feature_server, feature_server.both) as client:
        for path, kwargs, status, field in cases:
            answer = await client.post(path, **kwargs)
            assert answer.status_code == status, (path, kwargs, answer.text)
            error = answer.json()["error"]
            assert error["message"]
            if field is not None:
                assert error["field"] == field, (kwargs, error)


async def test_each_route_needs_its_scope(feature_server: FeatureServer) -> None:
    online = {"features": ["user_stats:tier"], "entities": {"user_id": ["u"]}}
    push = {"rows": [{"user_id": "u", "tier": "x"}]}
    async with _client(feature_server, None) as anonymous:
        assert (await anonymous.get("/v1/features")).status_code == 401
        assert (await anonymous.post("/v1/features/get-online-features", json=online)).status_code == 401
        assert (await anonymous.post("/v1/features/user_stats/push", json=push)).status_code == 401
    async with _client(feature_server, feature_server.predict) as predict:
        refused = await predict.get("/v1/features")
        assert refused.status_code == 403
        assert "features:read" in refused.json()["error"]["message"]
    async with _client(feature_server, feature_server.reader) as reader:
        assert (await reader.post("/v1/features/get-online-features", json=online)).status_code == 200
        refused = await reader.post("/v1/features/user_stats/push", json=push)
        assert refused.status_code == 403
        assert "features:write" in refused.json()["error"]["message"]
    async with _client(feature_server, feature_server.writer) as writer:
        assert (await writer.post("/v1/features/user_stats/push", json=push)).status_code == 200
        assert (await writer.post("/v1/features/get-online-features", json=online)).status_code == 403


async def test_the_routes_are_in_the_openapi_document(feature_server: FeatureServer) -> None:
    async with _client(feature_server, None) as client:
        document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    push = paths["/v1/features/{view}/push"]["post"]
    assert set(push["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert push["parameters"][0]["name"] == "view"
    online = paths["/v1/features/get-online-features"]["post"]
    assert online["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OnlineFeaturesResponse"
    }
    assert "403" in online["responses"]
    assert "GET" not in paths["/v1/features"]
    assert "get" in paths["/v1/features"]
    schemas = document["components"]["schemas"]
    statuses = schemas["FeatureColumn"]["properties"]["statuses"]["items"]["enum"]
    assert sorted(statuses) == ["NOT_FOUND", "OUTSIDE_MAX_AGE", "PRESENT"]


async def test_metrics_count_reads_and_writes_and_ages(feature_server: FeatureServer) -> None:
    (u,) = _ids(1)
    async with _client(feature_server, feature_server.both) as client:
        await client.post("/v1/features/merchant/push", json={"rows": [{"merchant_id": u, "risk": 0.5}]})
        await client.post(
            "/v1/features/get-online-features",
            json={"features": ["merchant:risk"], "entities": {"merchant_id": [u]}},
        )
    admin_free = httpx.AsyncClient(base_url=feature_server.server.http_url)
    async with admin_free:
        assert (await admin_free.get("/metrics")).status_code == 401  # models:admin, as before
    server = feature_server.server.server
    assert server is not None
    assert server.services is not None
    text = server.services.metrics.render().decode()
    assert 'modelwire_feature_writes_total{outcome="applied",view="merchant"}' in text
    assert 'modelwire_feature_reads_total{status="PRESENT",view="merchant"}' in text
    assert 'modelwire_feature_age_seconds_count{view="merchant"}' in text


async def test_each_write_is_an_event_on_the_features_topic(feature_server: FeatureServer) -> None:
    """Read from the bus, which SSE, WebSocket and gRPC ``Events`` stream; subscribing over SSE needs the
    ``events`` scope, as for every topic."""
    server = feature_server.server.server
    assert server is not None
    assert server.services is not None
    bus = server.services.events
    (u,) = _ids(1)
    async with bus.subscribe(["features"]) as subscription:
        async with _client(feature_server, feature_server.writer) as client:
            pushed = await client.post(
                "/v1/features/merchant/push",
                json={"rows": [{"merchant_id": u, "risk": 0.1, "event_timestamp": 5.0}]},
            )
            assert pushed.status_code == 200
            refused = await client.get("/v1/events", params={"topics": "features"})
            assert refused.status_code == 403
        async with asyncio.timeout(10):
            event = await anext(aiter(subscription))
    assert (event.topic, event.type) == ("features", "features.written")
    newest = event.data.pop("newest_event_ts")  # the newest this process wrote to the view, 5.0 or later
    assert event.data == {"view": "merchant", "applied": 1, "skipped": 0}
    assert newest >= 5.0
