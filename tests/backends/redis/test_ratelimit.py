"""What only the Redis rate limiter does: replicas share one bucket (with a TTL), and a Redis that is down
fails open to local buckets. What every bucket store does is in ``test_rate_limiter_contract.py``."""

from __future__ import annotations

import logging
import socket

import pytest
import redis

from modelwire.backends.redis.connection import RedisTarget
from modelwire.backends.redis.ratelimit import RedisRateLimiter
from modelwire.security.principal import Scope
from tests.backends.conftest import RATE, RULES


async def test_replicas_share_one_bucket(redis_backend: str) -> None:
    target = RedisTarget.parse(redis_backend)
    replicas = [RedisRateLimiter(target, RULES), RedisRateLimiter(target, RULES)]
    try:
        decisions = [await replicas[i % 2].acquire("key:k1", Scope.PREDICT, None) for i in range(4)]
        assert [d.allowed for d in decisions if d] == [True, True, True, False]
        rule = replicas[0].rules.select(Scope.PREDICT, None)
        assert rule is not None
        client = redis.Redis.from_url(target.url)
        ttl = client.pttl(replicas[0].key("key:k1", rule))
        client.close()
        assert 0 < ttl <= 3 / RATE * 1000 + 1000  # the key goes once the bucket would be full
    finally:
        for replica in replicas:
            await replica.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_redis_down_fails_open_to_local_buckets_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisRateLimiter(RedisTarget.parse(f"redis://127.0.0.1:{_closed_port()}/0"), RULES)
    try:
        with caplog.at_level(logging.WARNING, logger="modelwire.security"):
            decisions = [await limiter.acquire("alice", Scope.PREDICT, None) for _ in range(4)]
            limiter._down_until = 0.0  # the retry interval passed: Redis is tried (and fails) again
            decisions.append(await limiter.acquire("alice", Scope.PREDICT, None))
        assert [d.allowed for d in decisions if d] == [True, True, True, False, False]
        warnings = [r for r in caplog.records if r.name == "modelwire.security"]
        assert len(warnings) == 1
        assert "counts on its own" in warnings[0].getMessage()
    finally:
        await limiter.close()
