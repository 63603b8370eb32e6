"""The token bucket, as pure functions of (state, now): no clock, no I/O, one place for the arithmetic.

How it works. A bucket holds at most ``burst`` tokens and gains ``rate_per_s`` a second. A request takes
one token; with less than one token left it is refused, and nothing is taken (so a client hammering a
refused bucket does not push its own recovery further away). The state is two numbers, the tokens and the
time they were counted (``Bucket``); refilling is computed on the next request, so an idle bucket costs
nothing. A bucket that is full again is the same as no bucket at all, which is what lets the in-memory
limiter forget idle principals and the Redis keys expire.

The numbers a client sees come from the state after the request (``decide``):

- ``remaining``: whole tokens left (``RateLimit-Remaining``);
- ``reset_s``: seconds until the bucket is full again (``RateLimit-Reset``);
- ``retry_after_s`` (refused only): seconds until one whole token is there. Headers round it UP to whole
  seconds, so a client that waits that long finds a token (unless someone else with its key took it).

The Redis limiter runs the same arithmetic in Lua (``backends/redis/ratelimit.py``) and hands the resulting
token count back to ``decide``, so both backends answer with the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Bucket", "Limit", "RateDecision", "decide", "take"]


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up."""

    rate_per_s: float
    burst: int

    def full_after(self, tokens: float) -> float:
        """Seconds until a bucket holding ``tokens`` is full."""
        return max(0.0, (self.burst - tokens) / self.rate_per_s)


class Bucket(NamedTuple):
    """Tokens left at ``stamp`` (seconds on the caller's clock). A tuple: made on every request."""

    tokens: float
    stamp: float


@dataclass(frozen=True, slots=True)
class RateDecision:
    """One request's verdict, with what the RateLimit headers and ``Retry-After`` report."""

    allowed: bool
    limit: int
    """The bucket's burst (``RateLimit-Limit``)."""
    remaining: int
    """Whole tokens left after this request (``RateLimit-Remaining``)."""
    reset_s: float
    """Seconds until the bucket is full again (``RateLimit-Reset``, rounded up)."""
    retry_after_s: float | None
    """When refused: seconds until one token is there."""

    @property
    def retry_after_header(self) -> int | None:
        """``Retry-After`` in whole seconds, rounded up (at least 1) so that waiting it is enough."""
        if self.retry_after_s is None:
            return None
        return max(1, math.ceil(self.retry_after_s))


def take(bucket: Bucket | None, limit: Limit, now: float, cost: float = 1.0) -> tuple[Bucket, RateDecision]:
    """Refill ``bucket`` (``None``: a full one) up to ``now`` and take ``cost`` tokens if they are there.

    >>> state, first = take(None, Limit(rate_per_s=1.0, burst=2), now=100.0)
    >>> first.allowed, first.remaining
    (True, 1)
    >>> state, second = take(state, Limit(1.0, 2), now=100.0)
    >>> state, third = take(state, Limit(1.0, 2), now=100.0)
    >>> third.allowed, third.retry_after_s
    (False, 1.0)
    """
    burst = limit.burst
    if bucket is None:
        tokens = float(burst)
    else:
        tokens, stamp = bucket
        if now > stamp:
            tokens = min(float(burst), tokens + (now - stamp) * limit.rate_per_s)
    allowed = tokens >= cost
    if allowed:
        tokens -= cost
    return Bucket(tokens, now), decide(limit, tokens, allowed, cost)


def decide(limit: Limit, tokens: float, allowed: bool, cost: float = 1.0) -> RateDecision:
    """The verdict for a bucket left holding ``tokens`` after the request."""
    tokens = max(0.0, tokens)
    return RateDecision(
        allowed=allowed,
        limit=limit.burst,
        remaining=int(tokens),
        reset_s=limit.full_after(tokens),
        retry_after_s=None if allowed else max(0.0, (cost - tokens) / limit.rate_per_s),
    )
