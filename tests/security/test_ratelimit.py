"""Rule selection, the in-memory limiter's memory bound, headers, the error, and when limits are on."""

from __future__ import annotations

import pytest

from modelwire.backends.redis.ratelimit import RedisRateLimiter
from modelwire.backends.resolve import open_rate_limiter
from modelwire.errors import ConfigurationError, ErrorCode
from modelwire.security.bucket import RateDecision
from modelwire.security.principal import Scope
from modelwire.security.ratelimit import (
    MemoryRateLimiter,
    RuleTable,
    rate_limit_headers,
    rate_limited_error,
    rate_limits_enabled,
)
from modelwire.settings import JobsSettings, RateLimitRule, RateLimitSettings, Settings

RULES = (
    RateLimitRule(scope="*", model="*", rate_per_s=1, burst=1),
    RateLimitRule(scope="*", model="big", rate_per_s=1, burst=2),
    RateLimitRule(scope="predict", model="*", rate_per_s=1, burst=3),
    RateLimitRule(scope="predict", model="big", rate_per_s=1, burst=4),
)


@pytest.mark.parametrize(
    ("scope", "model", "burst"),
    [
        (Scope.PREDICT, "big", 4),  # scope + model
        (Scope.PREDICT, "small", 3),  # scope
        (Scope.PREDICT, None, 3),
        (Scope.EVENTS, "big", 2),  # model
        (Scope.EVENTS, "small", 1),  # *
        (Scope.JOBS_READ, None, 1),
        (None, None, 1),  # a public route: only * rules count it
        (None, "big", 2),
    ],
)
def test_the_most_specific_rule_applies(scope: Scope | None, model: str | None, burst: int) -> None:
    rule = RuleTable(RULES).select(scope, model)
    assert rule is not None
    assert rule.limit.burst == burst


def test_no_matching_rule_means_no_limit() -> None:
    table = RuleTable((RateLimitRule(scope="jobs:write", rate_per_s=1, burst=1),))
    assert table.select(Scope.PREDICT, "m") is None
    assert table.select(Scope.JOBS_WRITE, "m") is not None


def test_bad_rules_are_refused_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="predicts"):
        RuleTable((RateLimitRule(scope="predicts", rate_per_s=1, burst=1),))
    twice = RateLimitRule(scope="predict", rate_per_s=1, burst=1)
    with pytest.raises(ConfigurationError, match="keep one"):
        RuleTable((twice, twice))


async def test_buckets_are_per_principal_and_per_rule() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(RULES, clock=lambda: now[0])
    first = [await limiter.acquire("alice", Scope.EVENTS, "small") for _ in range(2)]
    assert [d.allowed for d in first if d] == [True, False]
    other = await limiter.acquire("bob", Scope.EVENTS, "small")
    assert other is not None
    assert other.allowed
    predict = await limiter.acquire("alice", Scope.PREDICT, "small")  # another rule, another bucket
    assert predict is not None
    assert predict.allowed
    now[0] = 1.0
    again = await limiter.acquire("alice", Scope.EVENTS, "small")
    assert again is not None
    assert again.allowed


async def test_idle_full_buckets_are_forgotten() -> None:
    now = [0.0]
    rules = (RateLimitRule(rate_per_s=10, burst=10),)
    limiter = MemoryRateLimiter(rules, clock=lambda: now[0])
    for i in range(4096):
        await limiter.acquire(f"ip:{i}", Scope.PREDICT, None)
    assert len(limiter) == 4096
    now[0] = 0.1  # one token back: the old buckets are full again
    await limiter.acquire("busy", Scope.PREDICT, None)  # past the threshold: one sweep
    assert len(limiter) == 1
    for i in range(10_000):  # a flood of distinct principals at one instant stays counted
        await limiter.acquire(f"flood:{i}", Scope.PREDICT, None)
    assert len(limiter) == 10_001


async def test_disabled_limiter_counts_nothing() -> None:
    limiter = MemoryRateLimiter(RULES, enabled=False)
    assert await limiter.acquire("alice", Scope.PREDICT, "m") is None


def test_headers_follow_the_ratelimit_draft_and_round_up() -> None:
    allowed = RateDecision(True, limit=10, remaining=9, reset_s=0.1, retry_after_s=None)
    assert rate_limit_headers(allowed) == [
        ("ratelimit-limit", "10"),
        ("ratelimit-remaining", "9"),
        ("ratelimit-reset", "1"),
    ]
    refused = RateDecision(False, limit=10, remaining=0, reset_s=20.0, retry_after_s=2.01)
    assert dict(rate_limit_headers(refused)) == {
        "ratelimit-limit": "10",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "20",
        "retry-after": "3",
    }


def test_the_error_says_when_to_retry() -> None:
    refused = RateDecision(False, limit=5, remaining=0, reset_s=2.5, retry_after_s=0.30001)
    err = rate_limited_error(refused)
    assert err.code is ErrorCode.RESOURCE_EXHAUSTED
    assert err.retry_after_s == pytest.approx(0.301)
    assert err.details == {"limit": 5, "reset_s": 3}
    assert "retry in 1 s" in err.message


@pytest.mark.parametrize(
    ("host", "auth_on", "setting", "expected"),
    [
        ("127.0.0.1", False, None, False),
        ("127.0.0.1", True, None, True),
        ("0.0.0.0", False, None, True),
        ("::1", False, None, False),
        ("0.0.0.0", True, False, False),
        ("127.0.0.1", False, True, True),
    ],
)
def test_when_limits_are_on(host: str, auth_on: bool, setting: bool | None, expected: bool) -> None:
    settings = Settings(host=host, rate_limits=RateLimitSettings(enabled=setting))
    assert rate_limits_enabled(settings, auth_on=auth_on) is expected
    assert open_rate_limiter(settings, auth_on=auth_on).enabled is expected


def test_redis_jobs_backend_means_redis_buckets() -> None:
    settings = Settings(jobs=JobsSettings(backend="redis://127.0.0.1:6379/0?prefix=x"))
    limiter = open_rate_limiter(settings, auth_on=True)
    assert isinstance(limiter, RedisRateLimiter)
    rule = limiter.rules.select(Scope.PREDICT, None)
    assert rule is not None
    assert limiter.key("key:abc", rule) == "x:ratelimit:*|*:key:abc"
    assert isinstance(open_rate_limiter(Settings(), auth_on=True), MemoryRateLimiter)
