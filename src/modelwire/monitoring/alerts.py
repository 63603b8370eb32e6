"""Everything about alert states lives here: the transition table, an alert's record, the engine.

An alert is one rule applied to one model version. Each evaluation turns the rule's monitor value into a
signal, and ``TRANSITIONS`` says what happens to the alert's state and whether anyone is told:

- ``breach``: the value is above the threshold, not yet for ``for_s``;
- ``held``: above the threshold for ``for_s`` or longer (or still within ``keep_firing_for_s`` after a
  firing alert's value came back: Prometheus's hysteresis against a flapping signal);
- ``clear``: not above the threshold, or no data (as Prometheus, an absent value is not a breach).

States as in Prometheus: ``inactive`` (nothing to tell), ``pending`` (breached, waiting for ``for_s``),
``firing``, ``resolved`` (was firing, is not). A notification is an ``AlertEvent``; it is sent on a change of
state only (de-duplication), and a firing alert is announced again after ``renotify_s`` at the earliest.
A pending alert that clears goes back to inactive silently (it never fired).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TRANSITIONS", "AlertEngine", "AlertEvent", "AlertInstance", "AlertKey", "AlertState", "Signal"]


class AlertState(enum.StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Signal(enum.StrEnum):
    BREACH = "breach"
    HELD = "held"
    CLEAR = "clear"


S, G = AlertState, Signal
TRANSITIONS: dict[tuple[AlertState, Signal], tuple[AlertState, bool]] = {
    # (state, signal): (next state, notify)
    (S.INACTIVE, G.BREACH): (S.PENDING, True),
    (S.INACTIVE, G.HELD): (S.FIRING, True),  # for_s = 0
    (S.INACTIVE, G.CLEAR): (S.INACTIVE, False),
    (S.PENDING, G.BREACH): (S.PENDING, False),
    (S.PENDING, G.HELD): (S.FIRING, True),
    (S.PENDING, G.CLEAR): (S.INACTIVE, False),
    (S.FIRING, G.BREACH): (S.FIRING, False),  # not reached: a firing alert's breach is held
    (S.FIRING, G.HELD): (S.FIRING, False),  # re-announced after renotify_s
    (S.FIRING, G.CLEAR): (S.RESOLVED, True),
    (S.RESOLVED, G.BREACH): (S.PENDING, True),
    (S.RESOLVED, G.HELD): (S.FIRING, True),
    (S.RESOLVED, G.CLEAR): (S.RESOLVED, False),
}

AlertKey = tuple[str, str, str]
"""``(rule name, model, version)``."""


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RuleView:
    """What the engine needs of an ``AlertRule`` (settings) for one evaluation."""

    name: str
    monitor: str
    threshold: float
    for_s: float
    keep_firing_for_s: float
    severity: str
    labels: Mapping[str, str]
    summary: str | None
    window: int | str


@dataclass(slots=True)
class AlertInstance:
    """One rule on one model version: its state and when things happened (Unix seconds)."""

    rule: RuleView
    model: str
    version: str
    state: AlertState = AlertState.INACTIVE
    since: float = 0.0
    """When the alert entered its current state."""
    active_since: float | None = None
    """When the value first went above the threshold, in this breach."""
    last_breach: float | None = None
    last_notified: float | None = None
    value: float | None = None
    view: str | None = None
    """The feature view, for a feature monitor (``feature_freshness``, ``feature_missing_rate``)."""

    @property
    def labels(self) -> dict[str, str]:
        labels = {
            **self.rule.labels,
            "alertname": self.rule.name,
            "severity": self.rule.severity,
            "model": self.model,
            "version": self.version,
            "monitor": self.rule.monitor,
        }
        if self.view is not None:
            labels["view"] = self.view
        return labels

    @property
    def fingerprint(self) -> str:
        text = "\0".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def event(self, now: float) -> AlertEvent:
        return AlertEvent(
            name=self.rule.name,
            state=self.state.value,
            severity=self.rule.severity,
            model=self.model,
            version=self.version,
            monitor=self.rule.monitor,
            value=self.value,
            threshold=self.rule.threshold,
            since=_iso(self.since),
            labels=self.labels,
            fingerprint=self.fingerprint,
            active_since=_iso(self.active_since) if self.active_since is not None else None,
            summary=self.rule.summary,
            window=self.rule.window,
            time=now,
        )


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A notification: what the ``alerts`` topic, the webhooks and ``GET /v1/alerts`` carry."""

    name: str
    state: str
    severity: str
    model: str
    version: str
    monitor: str
    value: float | None
    threshold: float
    since: str
    labels: dict[str, str]
    fingerprint: str
    active_since: str | None
    summary: str | None
    window: int | str
    time: float
    silenced: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "severity": self.severity,
            "model": self.model,
            "version": self.version,
            "monitor": self.monitor,
            "value": self.value,
            "threshold": self.threshold,
            "since": self.since,
            "labels": dict(self.labels),
            "fingerprint": self.fingerprint,
            "active_since": self.active_since,
            "summary": self.summary,
            "window": self.window,
            "silenced": self.silenced,
        }


@dataclass(slots=True)
class AlertEngine:
    """Alert instances by key; ``evaluate`` applies one round of values and returns what to announce."""

    renotify_s: float
    instances: dict[AlertKey, AlertInstance] = field(default_factory=dict)

    @staticmethod
    def key(rule: str, model: str, version: str, view: str | None = None) -> AlertKey:
        return (rule, model, version if view is None else f"{version}\0view={view}")

    def evaluate(
        self,
        rule: RuleView,
        model: str,
        version: str,
        value: float | None,
        now: float,
        *,
        view: str | None = None,
    ) -> AlertEvent | None:
        key = self.key(rule.name, model, version, view)
        alert = self.instances.get(key)
        if alert is None:
            alert = self.instances[key] = AlertInstance(rule, model, version, since=now, view=view)
        alert.rule = rule
        alert.value = value
        signal = self._signal(alert, value, now)
        state, notify = TRANSITIONS[(alert.state, signal)]
        if state is not alert.state:
            alert.state, alert.since = state, now
        if state is AlertState.INACTIVE:
            alert.active_since = None
        elif (
            state is AlertState.FIRING
            and not notify
            and alert.last_notified is not None
            and now - alert.last_notified >= self.renotify_s
        ):
            notify = True  # still firing: announced again, at most once per renotify_s
        if not notify:
            return None
        alert.last_notified = now
        return alert.event(now)

    def _signal(self, alert: AlertInstance, value: float | None, now: float) -> Signal:
        rule = alert.rule
        if value is not None and value > rule.threshold:
            if alert.active_since is None or alert.state is AlertState.RESOLVED:
                alert.active_since = now
            alert.last_breach = now
            return Signal.HELD if now - alert.active_since >= rule.for_s else Signal.BREACH
        if (
            alert.state is AlertState.FIRING
            and alert.last_breach is not None
            and now - alert.last_breach < rule.keep_firing_for_s
        ):
            return Signal.HELD
        if alert.state is not AlertState.FIRING:
            alert.active_since = None
        return Signal.CLEAR

    def forget(self, keys: set[AlertKey]) -> None:
        for key in keys:
            self.instances.pop(key, None)
