"""The alert state machine: the transition table, for_s, keep_firing_for_s, de-duplication, re-notify."""

from __future__ import annotations

import pytest

from modelwire.monitoring.alerts import TRANSITIONS, AlertEngine, AlertState, RuleView, Signal


def rule(for_s: float = 10.0, keep: float = 0.0) -> RuleView:
    return RuleView("r", "input_drift", 0.2, for_s, keep, "warning", {"team": "ml"}, None, 100)


def test_the_table_covers_every_state_and_signal() -> None:
    assert set(TRANSITIONS) == {(s, g) for s in AlertState for g in Signal}


def states(engine: AlertEngine, values: list[tuple[float, float | None]], r: RuleView) -> list[str | None]:
    out = []
    for now, value in values:
        event = engine.evaluate(r, "m", "1", value, now)
        out.append(event.state if event is not None else None)
    return out


def test_pending_then_firing_after_for_s_then_resolved() -> None:
    engine = AlertEngine(renotify_s=3600)
    seen = states(engine, [(0, 0.1), (1, 0.5), (5, 0.5), (11, 0.5), (12, 0.5), (13, 0.1), (14, 0.1)], rule())
    assert seen == [None, "pending", None, "firing", None, "resolved", None]


def test_a_pending_alert_that_clears_never_fires_and_says_nothing() -> None:
    engine = AlertEngine(renotify_s=3600)
    assert states(engine, [(0, 0.5), (3, 0.1), (4, 0.5), (13, 0.5), (14, 0.5)], rule()) == [
        "pending",
        None,
        "pending",
        None,
        "firing",
    ]


def test_for_s_zero_fires_at_once_and_no_data_resolves() -> None:
    engine = AlertEngine(renotify_s=3600)
    assert states(engine, [(0, 0.5), (1, None)], rule(for_s=0)) == ["firing", "resolved"]


def test_keep_firing_for_rides_out_a_flapping_signal() -> None:
    engine = AlertEngine(renotify_s=3600)
    values = [(0, 0.5), (1, 0.1), (2, 0.5), (3, 0.1), (4, 0.1), (9, 0.1)]
    assert states(engine, values, rule(for_s=0, keep=5)) == ["firing", None, None, None, None, "resolved"]


def test_a_firing_alert_is_announced_again_only_after_renotify_s() -> None:
    engine = AlertEngine(renotify_s=60)
    seen = states(engine, [(0, 0.5), (30, 0.5), (59, 0.5), (60, 0.5), (90, 0.5), (120, 0.5)], rule(for_s=0))
    assert seen == ["firing", None, None, "firing", None, "firing"]


def test_the_event_carries_the_documented_fields() -> None:
    engine = AlertEngine(renotify_s=60)
    event = engine.evaluate(rule(for_s=0), "sentiment", "3", 0.7, 1_700_000_000.0)
    assert event is not None
    body = event.to_json()
    for key in ("name", "state", "severity", "model", "version", "monitor", "value", "threshold", "since"):
        assert key in body
    assert body["labels"] == {
        "team": "ml",
        "alertname": "r",
        "severity": "warning",
        "model": "sentiment",
        "version": "3",
        "monitor": "input_drift",
    }
    assert body["since"] == "2023-11-14T22:13:20.000Z"
    assert (body["state"], body["value"], body["threshold"]) == ("firing", 0.7, pytest.approx(0.2))
