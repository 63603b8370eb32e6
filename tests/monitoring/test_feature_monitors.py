"""Feature monitors on a real server: fresh values read raise nothing; unknown entities make the missing-rate
alert fire; values pushed already old make the freshness alert fire (and resolve the missing rate); fresh
values again resolve it. Shown the same by ``GET /v1/monitoring``, gRPC ``Monitoring/Get`` and ``/metrics``.
Monitors run every 0.1 s; every wait is on a condition, bounded."""

from __future__ import annotations

import time
from typing import Any

import grpc
import httpx
from google.protobuf import json_format

from modelwire.monitoring.monitors import FeatureRound, feature_freshness, feature_missing_rate
from modelwire.protocols.grpc._generated.modelwire.v1 import monitoring_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import monitoring_pb2_grpc as pb_grpc
from tests.monitoring.conftest import until
from tests.serving import ServeModule

VIEW = {"name": "user_stats", "entities": ["user_id"], "ttl_s": 3600, "features": {"avg_rating": "float"}}
RULES = [
    {"name": "stats-missing", "monitor": "feature_missing_rate", "threshold": 0.5, "window": 1},
    {"name": "stats-stale", "monitor": "feature_freshness", "threshold": 60, "window": 1},
]


async def test_feature_alerts_fire_and_resolve(serve_module: ServeModule) -> None:
    server = serve_module(
        feature_views=[VIEW],
        monitoring={"interval_s": 0.1, "default_rules": False},
        alerts=RULES,
    )
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:

        async def push(user: str, age_s: float) -> None:
            row = {"user_id": user, "avg_rating": 4.0, "event_timestamp": time.time() - age_s}
            answer = await client.post("/v1/features/user_stats/push", json={"rows": [row]})
            assert answer.status_code == 200, answer.text
            assert answer.json()["applied"] == 1

        async def read(*users: str) -> list[str]:
            answer = await client.post(
                "/v1/features/get-online-features",
                json={"features": ["user_stats:avg_rating"], "entities": {"user_id": list(users)}},
            )
            assert answer.status_code == 200, answer.text
            statuses: list[str] = answer.json()["results"][1]["statuses"]
            return statuses

        async def monitors() -> dict[str, Any]:
            views = (await client.get("/v1/monitoring")).json()["features"]
            return {v["view"]: v["monitors"] for v in views}

        async def states() -> dict[str, str]:
            alerts = (await client.get("/v1/alerts")).json()["alerts"]
            return {a["name"]: a["state"] for a in alerts if a["labels"].get("view") == "user_stats"}

        async def value(monitor: str, expected: float) -> bool:
            got = (await monitors()).get("user_stats", {}).get(monitor, {}).get("1", {}).get("value")
            return got is not None and (got == expected if monitor.endswith("rate") else got > expected)

        await push("u1", 0)
        assert await read("u1") == ["PRESENT"]
        await until(lambda: value("feature_missing_rate", 0.0), "the missing rate of fresh reads is 0")
        fresh = (await monitors())["user_stats"]["feature_freshness"]["1"]
        assert fresh["value"] < 60
        assert fresh["samples"] == 1
        assert await states() == {}

        assert await read("nobody-1", "nobody-2") == ["NOT_FOUND", "NOT_FOUND"]

        async def missing_fires() -> bool:
            return (await states()).get("stats-missing") == "firing"

        await until(missing_fires, "the missing-rate alert fires")
        alert = next(
            a for a in (await client.get("/v1/alerts")).json()["alerts"] if a["name"] == "stats-missing"
        )
        assert alert["labels"]["view"] == "user_stats"
        assert alert["monitor"] == "feature_missing_rate"
        assert alert["value"] == 1.0

        await push("u2", 1000)  # stored already old: PRESENT (TTL 1 h) but 1000 s old
        assert await read("u2") == ["PRESENT"]

        async def stale_fires_missing_resolves() -> bool:
            return await states() == {"stats-stale": "firing"}

        await until(stale_fires_missing_resolves, "freshness fires and the missing rate resolves")
        recent = (await client.get("/v1/alerts")).json()["recent"]
        assert {(a["name"], a["state"]) for a in recent} >= {("stats-missing", "resolved")}

        await push("u2", 0)
        assert await read("u2") == ["PRESENT"]

        async def all_resolved() -> bool:
            return await states() == {}

        await until(all_resolved, "the freshness alert resolves")

        exposition = (await client.get("/metrics")).text
        assert 'modelwire_feature_monitor_value{monitor="feature_missing_rate",view="user_stats"} 0.0' in (
            exposition
        )

    async with grpc.aio.insecure_channel(server.grpc_url.removeprefix("grpc://")) as channel:
        body = json_format.MessageToDict(await pb_grpc.MonitoringStub(channel).Get(pb.GetMonitoringRequest()))
    (entry,) = body["features"]
    assert entry["view"] == "user_stats"
    assert entry["monitors"]["feature_missing_rate"]["1"]["value"] == 0.0


def test_window_selection_and_the_quantile_interpolation() -> None:
    bounds = (1.0, 5.0, 15.0)
    rounds = [
        FeatureRound(10.0, 10, 10, (0, 0, 0, 0)),  # all NOT_FOUND: no ages observed
        FeatureRound(20.0, 10, 0, (0, 10, 10, 10)),  # ten values 1-5 s old
        FeatureRound(30.0, 4, 1, (4, 4, 4, 4)),  # four under a second old
    ]
    assert feature_missing_rate(rounds, 4, None, 30.0).value == 0.25  # the newest round holds 4
    assert feature_missing_rate(rounds, 5, None, 30.0).value == round(1 / 14, 6)  # whole rounds
    assert feature_missing_rate(rounds, None, 15.0, 30.0).value == round(1 / 14, 6)  # t >= 15
    assert feature_missing_rate(rounds, None, 5.0, 40.0).reason is not None  # nothing read in the window
    # 14 ages: 4 in [0, 1], 10 in (1, 5]; p90 rank 12.6 -> 1 + 4 * (12.6 - 4) / 10, as histogram_quantile
    assert feature_freshness(rounds, bounds, None, 60.0, 30.0).value == 4.44
    assert feature_freshness(rounds[:1], bounds, None, 60.0, 30.0).value is None
