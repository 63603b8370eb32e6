"""The token bucket's arithmetic, without a clock or I/O."""

from __future__ import annotations

import math

import pytest

from modelwire.security.bucket import Bucket, Limit, take

LIMIT = Limit(rate_per_s=2.0, burst=3)


def test_a_new_bucket_is_full_and_the_burst_passes_then_stops() -> None:
    state, decisions = None, []
    for _ in range(4):
        state, decision = take(state, LIMIT, now=10.0)
        decisions.append(decision)
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    assert [d.retry_after_s for d in decisions[:3]] == [None, None, None]
    assert decisions[3].retry_after_s == pytest.approx(0.5)  # one token at 2/s
    assert decisions[3].reset_s == pytest.approx(1.5)  # three tokens at 2/s


def test_a_refused_request_takes_nothing() -> None:
    state = Bucket(tokens=0.25, stamp=0.0)
    after, decision = take(state, LIMIT, now=0.0)
    assert not decision.allowed
    assert after.tokens == pytest.approx(0.25)
    assert decision.retry_after_s == pytest.approx(0.375)


def test_tokens_come_back_at_the_rate_and_stop_at_the_burst() -> None:
    state = Bucket(tokens=0.0, stamp=0.0)
    after, decision = take(state, LIMIT, now=1.0)  # +2 tokens, one taken
    assert decision.allowed
    assert after.tokens == pytest.approx(1.0)
    after, decision = take(state, LIMIT, now=3600.0)  # capped at the burst
    assert after.tokens == pytest.approx(2.0)
    assert decision.remaining == 2


def test_waiting_retry_after_is_enough() -> None:
    """The rounded-up header value, waited from the refusal, always finds a token."""
    for rate in (0.1, 0.3, 1.0, 3.0, 7.0, 1000.0):
        limit = Limit(rate_per_s=rate, burst=2)
        state = None
        for _ in range(2):
            state, _ok = take(state, limit, now=5.0)
        state, refused = take(state, limit, now=5.0)
        assert not refused.allowed
        header = refused.retry_after_header
        assert header is not None
        assert header == max(1, math.ceil(1 / rate))
        _state, later = take(state, limit, now=5.0 + header)
        assert later.allowed


def test_just_before_retry_after_the_client_is_refused() -> None:
    limit = Limit(rate_per_s=0.5, burst=1)
    state, _ = take(None, limit, now=0.0)
    state, refused = take(state, limit, now=0.0)
    assert refused.retry_after_header == 2
    _, early = take(state, limit, now=1.99)
    assert not early.allowed


def test_a_clock_that_went_back_does_not_add_or_remove_tokens() -> None:
    after, decision = take(Bucket(tokens=1.5, stamp=100.0), LIMIT, now=90.0)
    assert decision.allowed
    assert after.tokens == pytest.approx(0.5)
