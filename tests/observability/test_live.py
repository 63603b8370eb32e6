"""LiveStats: per-protocol rates, nearest-rank percentiles and connections over a window on a fake clock."""

from __future__ import annotations

import pytest

from modelwire.observability import live
from modelwire.observability.live import PROTOCOLS, LiveStats


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(live, "time", fake)
    return fake


def test_rates_and_percentiles_over_the_window(clock: FakeClock) -> None:
    stats = LiveStats()
    for ms in range(1, 101):  # 1..100 ms, shuffled order must not matter
        stats.observe("rest", ((ms * 37) % 100 + 1) / 1000, ok=ms % 10 != 0)
    stats.observe("grpc", 0.004, ok=True)
    clock.now += 2.0
    snap = stats.snapshot()
    assert snap["interval_s"] == 2.0
    rest = snap["protocols"]["rest"]
    assert rest["requests_per_s"] == 50.0
    assert rest["errors_per_s"] == 5.0
    assert rest["p50_ms"] == 50.0  # nearest rank: the 50th of 100
    assert rest["p99_ms"] == 99.0  # the 99th of 100, not the maximum
    assert snap["protocols"]["grpc"] == {
        "requests_per_s": 0.5,
        "errors_per_s": 0.0,
        "p50_ms": 4.0,
        "p99_ms": 4.0,
        "connections": 0,
    }


@pytest.mark.parametrize(
    ("n", "p50", "p99"), [(1, 1.0, 1.0), (2, 1.0, 2.0), (3, 2.0, 3.0), (10, 5.0, 10.0), (200, 100.0, 198.0)]
)
def test_nearest_rank_percentiles(clock: FakeClock, n: int, p50: float, p99: float) -> None:
    stats = LiveStats()
    for ms in range(1, n + 1):
        stats.observe("ws", ms / 1000, ok=True)
    clock.now += 1
    ws = stats.snapshot()["protocols"]["ws"]
    assert (ws["p50_ms"], ws["p99_ms"]) == (p50, p99)


def test_every_protocol_is_reported_even_when_idle_and_others_are_added(clock: FakeClock) -> None:
    stats = LiveStats()
    stats.observe("jobs", 0.01, ok=True)
    clock.now += 1
    protocols = stats.snapshot()["protocols"]
    assert list(protocols) == [*PROTOCOLS, "jobs"]
    assert protocols["sse"] == {
        "requests_per_s": 0.0,
        "errors_per_s": 0.0,
        "p50_ms": None,
        "p99_ms": None,
        "connections": 0,
    }


def test_a_snapshot_starts_a_new_window_but_connections_persist(clock: FakeClock) -> None:
    stats = LiveStats()
    stats.connection_opened("sse")
    stats.connection_opened("sse")
    stats.connection_closed("sse")
    stats.observe("sse", 0.001, ok=True)
    clock.now += 1
    assert stats.snapshot()["protocols"]["sse"]["requests_per_s"] == 1.0
    clock.now += 1
    again = stats.snapshot()["protocols"]["sse"]
    assert again["requests_per_s"] == 0.0
    assert again["p50_ms"] is None
    assert again["connections"] == 1 == stats.connections("sse")


def test_connections_never_go_negative(clock: FakeClock) -> None:
    stats = LiveStats()
    stats.connection_closed("ws")
    assert stats.connections("ws") == 0


def test_samples_are_bounded_but_counts_exact(clock: FakeClock) -> None:
    stats = LiveStats()
    for _ in range(live._MAX_SAMPLES + 500):
        stats.observe("rest", 0.001, ok=True)
    assert len(stats._latencies["rest"]) == live._MAX_SAMPLES
    clock.now += 1
    assert stats.snapshot()["protocols"]["rest"]["requests_per_s"] == live._MAX_SAMPLES + 500


def test_queue_consumers_rate_over_the_window_and_counts_since_the_start(clock: FakeClock) -> None:
    stats = LiveStats()
    assert stats.snapshot()["queues"] == []
    consumer = stats.queue("modelwire.requests", "rabbitmq")
    assert stats.queue("modelwire.requests", "rabbitmq") is consumer  # one per broker and queue
    consumer.counts["answered"] += 6
    consumer.counts["dead_lettered"] += 2
    consumer.counts["redelivered"] += 1
    consumer.in_flight = 3
    clock.now += 2.0
    assert stats.snapshot()["queues"] == [
        {
            "name": "modelwire.requests",
            "broker": "rabbitmq",
            "messages_per_s": 4.0,  # answered + dead-lettered, over 2 s
            "in_flight": 3,
            "answered": 6,
            "dead_lettered": 2,
            "redelivered": 1,
            "given_back": 0,
        }
    ]
    clock.now += 1.0
    again = stats.snapshot()["queues"][0]
    assert again["messages_per_s"] == 0.0  # nothing new in this window
    assert again["answered"] == 6  # the counts stay
