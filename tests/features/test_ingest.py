"""Feature events in from real brokers (RabbitMQ queue, NATS JetStream subject, Redis stream) through the
``serve`` components into the store: last-write-wins by event time, malformed events dead-lettered with
their reason, acknowledged only after the write (nothing left on the broker afterwards)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from modelwire.app.builder import build_services
from modelwire.app.components import FeatureIngestion
from modelwire.app.lifecycle import Server
from modelwire.features.service import FeatureService
from modelwire.settings import Settings
from tests.features.brokers import publish, source
from tests.protocols.queues.conftest import BrokerUnderTest

FEATURES = {"avg_rating": "float", "n_reviews": "int"}


async def wait_for(check: Any, timeout: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    return "sqlite" if request.param == "sqlite" else str(request.getfixturevalue("redis_backend"))


async def test_events_are_written_newest_wins_and_bad_ones_dead_lettered(
    under: BrokerUnderTest, store: str, tmp_path: Path
) -> None:
    view = {"name": "user_stats", "entities": ["user_id"], "ttl_s": 86400, "features": FEATURES}
    settings = Settings(
        host="127.0.0.1",
        data_dir=tmp_path,
        feature_views=[{**view, "source": source(under, prefetch=8, fields={"rating": "avg_rating"})}],
        features={"store": store},
    )
    services = build_services(settings, models=[])
    server = Server(
        settings, services=services, rest=False, grpc=False, components=[FeatureIngestion(settings)]
    )
    await server.start()
    try:
        now = time.time()
        events = [
            {"user_id": f"u{i % 10}", "rating": float(i), "n_reviews": i, "event_timestamp": now - 1000 + i}
            for i in range(100)
        ]
        late = [{"user_id": "u3", "rating": -1.0, "n_reviews": -1, "event_timestamp": now - 5000}]
        bad = [b"not json", b'{"user_id": "u1", "n_reviews": "many"}', b'{"n_reviews": 3}']
        bodies = (
            [json.dumps(e).encode() for e in events[:50]]
            + bad
            + [json.dumps(e).encode() for e in events[50:] + late]
        )
        await publish(under, bodies)
        features: FeatureService = services.features

        async def newest() -> bool:
            answer = await features.get_online(
                ["user_stats:n_reviews"], {"user_id": [f"u{k}" for k in range(10)]}
            )
            return answer.results[1].values == [90 + k for k in range(10)]

        await wait_for(newest, 30, "the newest event of each user")
        dead = await under.dead_letters(3)
        reasons = sorted(reason for _, reason in dead)
        assert len(dead) == 3, dead
        assert any("not JSON" in r for r in reasons), reasons
        assert any("$.n_reviews must be an integer" in r for r in reasons), reasons
        assert any("lacks the entity key 'user_id'" in r for r in reasons), reasons
        answer = (await features.get_online(["user_stats:avg_rating"], {"user_id": ["u3"]})).to_dict()
        assert answer["results"][1]["values"] == [93.0]  # the late event did not win; 'rating' was mapped
        ingestion = server.components[0]
        assert isinstance(ingestion, FeatureIngestion)
        counts = ingestion.ingestors[0].counts

        async def all_counted() -> bool:
            return counts["written"] == 101

        await wait_for(all_counted, 10, "every good event acknowledged")
        assert counts["dead_lettered"] == 3
    finally:
        await server.stop()
