"""How the Redis feature store keeps values: one hash per (view, entity), expiring twice the TTL after
its last write, whatever the event time (the contract: ``tests/backends/test_feature_store_contract.py``)."""

from __future__ import annotations

import time

import redis

from modelwire.backends.redis.features import RedisFeatureStore
from modelwire.features.rows import Row
from modelwire.features.views import FeatureView

VIEW = FeatureView("user_stats", ("user_id",), {"avg_rating": "float"}, ttl_s=100.0)


async def test_one_hash_per_entity_and_view_expiring_twice_the_ttl_after_the_write(
    redis_backend: str, redis_server: str, redis_prefix: str
) -> None:
    store = RedisFeatureStore.from_url(redis_backend)
    await store.open()
    try:
        ts = time.time() - 10_000  # already outside its max age: kept (and reported) for 2 TTLs anyway
        assert (
            await store.write(
                VIEW, [Row('["u1"]', {"avg_rating": 1.5}, ts), Row('["u2"]', {"avg_rating": 2.5}, ts)]
            )
            == 2
        )
    finally:
        await store.close()
    client = redis.Redis.from_url(redis_server)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match=redis_prefix + "*"))
        assert keys == [
            f'{redis_prefix}features:user_stats:["u1"]',
            f'{redis_prefix}features:user_stats:["u2"]',
        ]
        fields = client.hgetall(keys[0])
        assert fields[b"v:avg_rating"] == b"1.5"
        assert 199_000 < client.pttl(keys[0]) <= 200_000
    finally:
        client.close()
