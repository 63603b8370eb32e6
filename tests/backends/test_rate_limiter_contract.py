"""One contract for both bucket stores, run against each (``[memory]``, ``[redis]``). What only Redis does
(replicas share a bucket, a lost Redis fails open) is in ``redis/test_ratelimit.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from modelwire.backends.redis.connection import RedisTarget
from modelwire.backends.redis.ratelimit import RedisRateLimiter
from modelwire.security.principal import Scope
from modelwire.security.ratelimit import MemoryRateLimiter, RateLimiter
from modelwire.settings import RateLimitRule
from tests.backends.conftest import RATE, RULES

MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    """``make_limiter(rules=RULES)``: a limiter on this test's backend; closed at the end."""
    made: list[RateLimiter] = []
    backend = request.getfixturevalue("redis_backend") if request.param == "redis" else None

    def make(rules: tuple[RateLimitRule, ...] = RULES) -> RateLimiter:
        if backend is None:
            limiter: RateLimiter = MemoryRateLimiter(rules)
        else:
            limiter = RedisRateLimiter(RedisTarget.parse(backend), rules)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


@pytest.fixture
def limiter(make_limiter: MakeLimiter) -> RateLimiter:
    return make_limiter()


async def test_a_burst_over_the_limit_is_refused_until_retry_after(limiter: RateLimiter) -> None:
    decisions = [await limiter.acquire("alice", Scope.PREDICT, "m") for _ in range(4)]
    assert all(d is not None for d in decisions)
    assert [d.allowed for d in decisions if d] == [True, True, True, False]
    assert [d.remaining for d in decisions if d] == [2, 1, 0, 0]
    refused = decisions[3]
    assert refused is not None
    assert refused.retry_after_s is not None
    assert 0 < refused.retry_after_s <= 1 / RATE
    assert 0 < refused.reset_s <= 3 / RATE
    assert refused.retry_after_header == 2

    other = await limiter.acquire("bob", Scope.PREDICT, "m")  # another principal: its own bucket
    assert other is not None
    assert other.allowed
    assert other.remaining == 2

    await asyncio.sleep(refused.retry_after_header)
    later = await limiter.acquire("alice", Scope.PREDICT, "m")
    assert later is not None
    assert later.allowed


async def test_each_rule_has_its_own_bucket(limiter: RateLimiter) -> None:
    write = [await limiter.acquire("alice", Scope.JOBS_WRITE, None) for _ in range(2)]
    assert [d.allowed for d in write if d] == [True, False]
    read = await limiter.acquire("alice", Scope.JOBS_READ, None)
    assert read is not None
    assert read.allowed
    assert read.limit == 3


async def test_no_rule_no_count(make_limiter: MakeLimiter) -> None:
    only_writes = make_limiter((RateLimitRule(scope="jobs:write", rate_per_s=RATE, burst=1),))
    assert await only_writes.acquire("alice", Scope.PREDICT, None) is None
    assert await only_writes.acquire("alice", Scope.JOBS_WRITE, None) is not None
