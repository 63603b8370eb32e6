"""Per-principal rate limits: which rule counts a request, where its bucket lives, what the client is told.

A request is counted against ONE rule, the most specific of ``rate_limits.rules`` that matches its scope
and model (scope+model > scope > model > ``*``), in one bucket per (principal, rule): a rule with
``scope="*"`` is one budget a principal spends on every route no more specific rule counts. The buckets
are token buckets (``bucket.py``), kept in this process (``MemoryRateLimiter``) or, when jobs are on Redis,
in Redis (``RedisRateLimiter``, ``backends/redis/ratelimit.py``) so that every gateway sharing it
shares the counts.

The ASGI middleware and the gRPC interceptor call ``acquire`` through ``SecurityPolicy.admit``; a refused
request becomes ``rate_limited_error`` (429 / RESOURCE_EXHAUSTED with ``RetryInfo``) and every counted
response carries ``rate_limit_headers``. See docs/limits.md.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelwire.errors import ConfigurationError, ResourceExhaustedError
from modelwire.security.bucket import Bucket, Limit, RateDecision, take
from modelwire.security.principal import Scope, is_loopback
from modelwire.settings import RateLimitRule, Settings

__all__ = [
    "MemoryRateLimiter",
    "RateDecision",
    "RateLimiter",
    "Rule",
    "RuleTable",
    "rate_limit_headers",
    "rate_limited_error",
    "rate_limits_enabled",
]

ANY = "*"
_MIN_SWEEP = 4096  # the memory limiter never scans for idle buckets below this many


@dataclass(frozen=True, slots=True)
class Rule:
    """A configured rule, resolved: ``id`` (``scope|model``) names its buckets."""

    id: str
    limit: Limit


class RuleTable:
    """``rate_limits.rules`` indexed for a lookup of at most four dict probes per request."""

    def __init__(self, rules: Sequence[RateLimitRule]) -> None:
        known = {s.value for s in Scope} | {ANY}
        self._rules: dict[tuple[str, str], Rule] = {}
        for rule in rules:
            if rule.scope not in known:
                raise ConfigurationError(
                    f"rate limit rule scope {rule.scope!r} is unknown: use one of {', '.join(sorted(known))}"
                )
            pair = (rule.scope, rule.model)
            if pair in self._rules:
                raise ConfigurationError(
                    f"two rate limit rules for scope {rule.scope!r} and model {rule.model!r}: keep one"
                )
            self._rules[pair] = Rule(f"{rule.scope}|{rule.model}", Limit(rule.rate_per_s, rule.burst))

    def __bool__(self) -> bool:
        return bool(self._rules)

    def select(self, scope: Scope | None, model: str | None) -> Rule | None:
        """The most specific rule for a request: scope+model, scope, model, then ``*``.

        ``scope=None`` (a public route) is counted by ``*``-scope rules only.
        """
        rules = self._rules
        s: str = ANY if scope is None else scope  # a StrEnum member hashes and compares as its value
        if model is not None:
            if s != ANY and (rule := rules.get((s, model))) is not None:
                return rule
            if s != ANY and (rule := rules.get((s, ANY))) is not None:
                return rule
            return rules.get((ANY, model)) or rules.get((ANY, ANY))
        if s != ANY and (rule := rules.get((s, ANY))) is not None:
            return rule
        return rules.get((ANY, ANY))


class RateLimiter(ABC):
    """Counts requests per (principal, rule). Subclass ``take`` to keep buckets somewhere else.

    >>> class Unlimited(RateLimiter):
    ...     async def take(self, key: str, rule: Rule) -> RateDecision:
    ...         return RateDecision(True, rule.limit.burst, rule.limit.burst, 0.0, None)
    """

    def __init__(self, rules: Sequence[RateLimitRule], *, enabled: bool = True) -> None:
        self.rules = RuleTable(rules)
        self.enabled = enabled and bool(self.rules)

    async def acquire(self, key: str, scope: Scope | None, model: str | None) -> RateDecision | None:
        """Count one request of principal ``key``; ``None`` when no rule applies or limits are off."""
        if not self.enabled:
            return None
        rule = self.rules.select(scope, model)
        if rule is None:
            return None
        return await self.take(key, rule)

    @abstractmethod
    async def take(self, key: str, rule: Rule) -> RateDecision:
        """Take one token from ``key``'s bucket of ``rule``."""

    async def close(self) -> None:  # noqa: B027 (optional: only limiters holding connections need it)
        """Release connections (the memory limiter has none)."""


class MemoryRateLimiter(RateLimiter):
    """Buckets in a dict, for one process. Idle buckets that are full again are forgotten.

    Memory stays bounded by the principals active in the last ``burst / rate_per_s`` seconds: when the dict
    doubles past its last size (and at least 4096 entries) one sweep drops every bucket that is full again,
    which is the same as never having been used.
    """

    def __init__(
        self,
        rules: Sequence[RateLimitRule],
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rules, enabled=enabled)
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[Bucket, float]] = {}  # -> (state, full again at)
        self._sweep_at = _MIN_SWEEP

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, key: str, rule: Rule) -> RateDecision:
        return self.take_now(key, rule, self._clock())

    def take_now(self, key: str, rule: Rule, now: float) -> RateDecision:
        """``take`` at a given time (synchronous: nothing here waits)."""
        entry = self._buckets.get((key, rule.id))
        state, decision = take(entry[0] if entry is not None else None, rule.limit, now)
        self._buckets[(key, rule.id)] = (state, now + decision.reset_s)
        if len(self._buckets) > self._sweep_at:
            self.sweep(now)
        return decision

    def sweep(self, now: float) -> None:
        """Forget the buckets that are full again by ``now``."""
        self._buckets = {k: v for k, v in self._buckets.items() if v[1] > now}
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._buckets))


def rate_limits_enabled(settings: Settings, *, auth_on: bool) -> bool:
    """``rate_limits.enabled``, or when unset: on with authentication on or a non-loopback address."""
    enabled = settings.rate_limits.enabled
    if enabled is None:
        return auth_on or not is_loopback(settings.host)
    return enabled


def rate_limit_headers(decision: RateDecision) -> list[tuple[str, str]]:
    """``RateLimit-Limit``, ``-Remaining``, ``-Reset`` (IETF draft, whole seconds rounded up), and
    ``Retry-After`` when refused. Names are lower case: valid as HTTP/2 headers and gRPC metadata."""
    headers = [
        ("ratelimit-limit", str(decision.limit)),
        ("ratelimit-remaining", str(decision.remaining)),
        ("ratelimit-reset", str(math.ceil(decision.reset_s))),
    ]
    retry = decision.retry_after_header
    if retry is not None:
        headers.append(("retry-after", str(retry)))
    return headers


def rate_limited_error(decision: RateDecision) -> ResourceExhaustedError:
    """The error a refused request fails with (429; gRPC RESOURCE_EXHAUSTED with ``RetryInfo``)."""
    retry = decision.retry_after_s if decision.retry_after_s is not None else 1.0
    retry = math.ceil(retry * 1000) / 1000  # milliseconds, rounded up: waiting this long is enough
    return ResourceExhaustedError(
        f"rate limit reached ({decision.limit} requests in a burst): retry in {max(1, math.ceil(retry))} s, "
        "or spread requests out",
        retry_after_s=retry,
        details={"limit": decision.limit, "reset_s": math.ceil(decision.reset_s)},
    )
