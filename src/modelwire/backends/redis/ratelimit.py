"""Rate-limit buckets in Redis, shared by every gateway and replica that uses the same Redis.

How it works. One Lua script per request (``_TAKE``) reads the bucket's hash, refills it with the time
since it was last counted, takes a token if there is one, writes it back and sets the key to expire when
the bucket would be full again (a missing key *is* a full bucket, so idle principals cost no memory). Redis
runs a script with nothing interleaved, so two replicas cannot both take the last token; the time is the
Redis server's (``TIME``), one clock for every replica whatever their own clocks say. The arithmetic is
``bucket.take``'s; the script returns the tokens left and ``bucket.decide`` turns them into the headers.

Keys: ``<prefix>ratelimit:<scope>|<model>:<principal id>``, a hash ``{tokens, stamp}`` with a TTL.

When Redis fails (unreachable, timing out, erroring) the limiter FAILS OPEN to local buckets: for the
outage every process counts on its own (``MemoryRateLimiter``), so limits still hold per replica and
inference, which does not need Redis, keeps working. Redis is tried again after ``RETRY_S``. One warning
is logged when the outage starts and one line when Redis answers again, never one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from modelwire.backends.redis.connection import RedisTarget
from modelwire.security.bucket import RateDecision, decide
from modelwire.security.ratelimit import MemoryRateLimiter, RateLimiter, Rule
from modelwire.settings import RateLimitRule

__all__ = ["RETRY_S", "RedisRateLimiter"]

logger = logging.getLogger("modelwire.security")

RETRY_S = 1.0
"""After a Redis failure, buckets are local for this long before Redis is tried again."""
_TIMEOUT_S = 0.5  # a Redis that does not answer within this is treated as down (bounds added latency)

_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = burst
if state[1] and state[2] then
  local elapsed = now - tonumber(state[2])
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(burst, tonumber(state[1]) + elapsed * rate)
end
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
local left = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'stamp', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, left}
"""


class RedisRateLimiter(RateLimiter):
    """Buckets in Redis (``jobs.backend`` ``redis://...``), so replicas share one count per principal.

    >>> limiter = RedisRateLimiter(RedisTarget.parse("redis://127.0.0.1:6379/0"), rules)  # doctest: +SKIP
    >>> await limiter.acquire("key:abc", Scope.PREDICT, "sentiment")
    """

    def __init__(self, target: RedisTarget, rules: Sequence[RateLimitRule], *, enabled: bool = True) -> None:
        super().__init__(rules, enabled=enabled)
        self.target = target
        self.local = MemoryRateLimiter(rules, enabled=enabled)
        """Where buckets are counted while Redis is down."""
        self._redis: Redis | None = None
        self._script: Any = None
        self._down_until = 0.0
        self._down = False

    def key(self, principal: str, rule: Rule) -> str:
        return f"{self.target.prefix}ratelimit:{rule.id}:{principal}"

    def _client(self) -> tuple[Redis, Any]:
        if self._redis is None:
            # Created on first use, on the serving loop. One retry on a fresh connection (a connection
            # Redis dropped while idle); no backoff: a request waits at most about twice the timeout.
            self._redis = Redis.from_url(
                self.target.url,
                decode_responses=False,
                socket_timeout=_TIMEOUT_S,
                socket_connect_timeout=_TIMEOUT_S,
                socket_keepalive=True,
                health_check_interval=30,
                client_name="modelwire-ratelimit",
                retry=Retry(NoBackoff(), 1),
                retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
            )
            self._script = self._redis.register_script(_TAKE)
        return self._redis, self._script

    async def take(self, key: str, rule: Rule) -> RateDecision:
        clock = asyncio.get_running_loop().time
        if self._down_until > clock():
            return await self.local.take(key, rule)
        redis, script = self._client()
        limit = rule.limit
        try:
            allowed, tokens = await script(
                keys=[self.key(key, rule)], args=[limit.rate_per_s, limit.burst, 1], client=redis
            )
        except (redis_errors.RedisError, OSError) as exc:
            self._down_until = clock() + RETRY_S
            if not self._down:
                self._down = True
                logger.warning(
                    "rate limits: Redis at %s failed (%s); each process counts on its own until it is back",
                    self.target.display,
                    exc,
                )
            return await self.local.take(key, rule)
        if self._down:
            self._down = False
            logger.warning("rate limits: Redis at %s answers again; counts are shared", self.target.display)
        return decide(limit, float(tokens), bool(int(allowed)))

    async def close(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await redis.aclose()
