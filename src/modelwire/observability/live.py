"""Live numbers for people watching (the dashboard, ``modelwire watch``): a window that resets each snapshot.

Prometheus (``metrics.py``) keeps cumulative counters for machines; this keeps the last interval's request
count, errors and latencies per protocol, and the open streaming connections, cheaply enough to record on
every request. ``snapshot()`` turns the window into rates and percentiles and starts a new one.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any

__all__ = ["PROTOCOLS", "LiveStats", "QueueStats"]

PROTOCOLS = ("rest", "grpc", "ws", "sse")
_MAX_SAMPLES = 20_000  # per protocol and window: percentiles from a bounded sample, counts stay exact


class QueueStats:
    """One queue consumer's counts (``protocols/queues/``): what it answered, dead-lettered, saw redelivered
    and gave back, and how many messages it holds now. ``LiveStats.snapshot`` turns them into rates."""

    OUTCOMES = ("answered", "dead_lettered", "redelivered", "given_back")

    def __init__(self, name: str, broker: str) -> None:
        self.name = name
        self.broker = broker
        self.counts: collections.Counter[str] = collections.Counter(dict.fromkeys(self.OUTCOMES, 0))
        self.in_flight = 0
        self._done_at_snapshot = 0

    @property
    def done(self) -> int:
        """Messages finished: answered or dead-lettered (each acknowledged)."""
        return self.counts["answered"] + self.counts["dead_lettered"]

    def window(self, interval: float) -> dict[str, Any]:
        done, self._done_at_snapshot = self.done - self._done_at_snapshot, self.done
        return {
            "name": self.name,
            "broker": self.broker,
            "messages_per_s": round(done / interval, 2),
            "in_flight": self.in_flight,
            **{outcome: self.counts[outcome] for outcome in self.OUTCOMES},
        }


class LiveStats:
    """Requests/s, errors/s, p50/p99 latency per protocol over the last window, and open connections."""

    def __init__(self) -> None:
        self._latencies: dict[str, list[float]] = collections.defaultdict(list)
        self._count: collections.Counter[str] = collections.Counter()
        self._errors: collections.Counter[str] = collections.Counter()
        self._connections: collections.Counter[str] = collections.Counter()
        self._queues: dict[tuple[str, str], QueueStats] = {}
        self._since = time.monotonic()

    def queue(self, name: str, broker: str) -> QueueStats:
        """The counts of the consumer of ``name`` on ``broker`` (made on first use; shown in snapshots)."""
        stats = self._queues.get((broker, name))
        if stats is None:
            stats = self._queues[(broker, name)] = QueueStats(name, broker)
        return stats

    def observe(self, protocol: str, seconds: float, ok: bool) -> None:
        self._count[protocol] += 1
        if not ok:
            self._errors[protocol] += 1
        samples = self._latencies[protocol]
        if len(samples) < _MAX_SAMPLES:
            samples.append(seconds)

    def connection_opened(self, protocol: str) -> None:
        self._connections[protocol] += 1

    def connection_closed(self, protocol: str) -> None:
        self._connections[protocol] = max(0, self._connections[protocol] - 1)

    def connections(self, protocol: str) -> int:
        return self._connections[protocol]

    def snapshot(self) -> dict[str, Any]:
        """The window since the last snapshot, as plain data; starts a new window."""
        now = time.monotonic()
        interval = max(now - self._since, 1e-6)
        protocols: dict[str, Any] = {}
        for protocol in (*PROTOCOLS, *sorted(set(self._count) - set(PROTOCOLS))):
            samples = sorted(self._latencies.get(protocol, ()))
            protocols[protocol] = {
                "requests_per_s": round(self._count[protocol] / interval, 2),
                "errors_per_s": round(self._errors[protocol] / interval, 2),
                "p50_ms": _percentile_ms(samples, 0.50),
                "p99_ms": _percentile_ms(samples, 0.99),
                "connections": self._connections[protocol],
            }
        self._latencies = collections.defaultdict(list)
        self._count.clear()
        self._errors.clear()
        self._since = now
        queues = [stats.window(interval) for _, stats in sorted(self._queues.items())]
        return {"interval_s": round(interval, 3), "protocols": protocols, "queues": queues}


def _percentile_ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    # Nearest rank: the ceil(q * n)-th value (the epsilon keeps 0.07 * 100 from rounding up to 8).
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered) - 1e-9) - 1))
    return round(ordered[index] * 1000, 3)
