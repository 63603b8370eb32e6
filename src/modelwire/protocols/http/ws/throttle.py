"""WebSocket rate limits: messages per connection, connections per principal. No I/O here.

Both are on when rate limits are (``rate_limits.enabled``; by default: with authentication on or a
non-loopback address), and both count in this process only: a client spreading connections over several
replicas gets the connection limit on each.

Messages. Each connection has a token bucket (``rate_limits.ws_messages_per_s``, burst
``ws_message_burst``); every message counts (predict, subscribe, ping). A message over the rate is not acted
on: it is answered with an ``{"op": "error"}`` carrying ``RESOURCE_EXHAUSTED`` and ``retry_after_s``, and
the socket stays open, so a client that slows down loses nothing but those messages. A client that keeps
sending regardless, ``ws_message_burst`` refused messages in a row (so past twice the burst in one flood),
is closed with 1008 (policy violation): it is not reading its errors, and reading its flood costs the server
more than refusing it. 1013 (try again later) stays the code for what the client did not cause.

Connections. At most ``rate_limits.ws_connections_per_principal`` open sockets per principal (its key or
JWT subject; ``ip:<address>`` when anonymous). One more is refused at the handshake with HTTP 429 and
``Retry-After`` (never accepted then closed).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from modelwire.errors import ResourceExhaustedError
from modelwire.security.bucket import Bucket, Limit, take

__all__ = ["ConnectionCounter", "MessageThrottle", "Verdict"]


class Verdict(enum.Enum):
    ALLOW = "allow"
    REFUSE = "refuse"  # answer with the error, keep the socket
    CLOSE = "close"  # 1008: the client ignores its refusals


class MessageThrottle:
    """One connection's message bucket. ``check()`` per message; ``error`` explains the last refusal."""

    __slots__ = ("_bucket", "_clock", "error", "limit", "strikes")

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]) -> None:
        self.limit = Limit(rate_per_s, burst)
        self._clock = clock
        self._bucket: Bucket | None = None
        self.strikes = 0
        self.error: ResourceExhaustedError | None = None

    def check(self) -> Verdict:
        self._bucket, decision = take(self._bucket, self.limit, self._clock())
        if decision.allowed:
            self.strikes = 0
            return Verdict.ALLOW
        self.strikes += 1
        if self.strikes > self.limit.burst:
            return Verdict.CLOSE
        retry = decision.retry_after_s or 0.0
        self.error = ResourceExhaustedError(
            f"more than {self.limit.rate_per_s:g} messages a second on this socket (burst "
            f"{self.limit.burst}); this message was not processed: wait retry_after_s before sending more",
            retry_after_s=round(retry + 0.0005, 3),
        )
        return Verdict.REFUSE

    @property
    def close_reason(self) -> str:
        return f"message rate limit: {self.strikes} messages refused in a row"


class ConnectionCounter:
    """Open sockets per principal id, for ``ws_connections_per_principal``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def __getitem__(self, principal: str) -> int:
        return self._open.get(principal, 0)

    def check(self, principal: str) -> None:
        """Raise ``ResourceExhaustedError`` (429 at the handshake) when ``principal`` is at the limit."""
        if self._open.get(principal, 0) >= self.limit:
            raise ResourceExhaustedError(
                f"this client already holds {self.limit} WebSocket connections "
                "(rate_limits.ws_connections_per_principal): close one, or multiplex requests on one socket",
                retry_after_s=1.0,
                details={"limit": self.limit},
            )

    def opened(self, principal: str) -> None:
        self._open[principal] = self._open.get(principal, 0) + 1

    def closed(self, principal: str) -> None:
        left = self._open.get(principal, 0) - 1
        if left > 0:
            self._open[principal] = left
        else:
            self._open.pop(principal, None)
