"""The monitoring façade: samples calls, computes monitors on a timer, runs the alert rules, announces.

How it works. ``record`` is the data plane's tap (``core.dataplane.Tap``): on the request path it only
samples the call into a bounded buffer (past ``monitoring.buffer`` the call is dropped and counted in
``modelwire_monitor_samples_total{outcome="dropped"}``); it computes nothing. Every ``interval_s`` one task
takes the buffer, turns the calls into window samples and computes the monitors (in a thread: the text
statistics are CPU work), sets the Prometheus gauges, then evaluates each rule (``alerts.py``) and
announces what changed: an ``alert.<state>`` event on the ``alerts`` topic of the event bus (WebSocket,
SSE, gRPC ``Events``, ``[[event_sinks]]`` brokers) and each ``notifier`` (the signed webhooks,
``outbound/alerts.py``), unless a silence matches. Announcing never waits for a receiver.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modelwire.events.bus import EventBus
from modelwire.monitoring.alerts import AlertEngine, AlertEvent, AlertState
from modelwire.monitoring.monitors import (
    DRIFT_MONITORS,
    FeatureRound,
    MonitorValue,
    drift,
    error_ratio,
    feature_freshness,
    feature_missing_rate,
    latency_p99,
)
from modelwire.monitoring.profiles import HASH_BUCKETS, ReferenceProfile, text_item
from modelwire.monitoring.rules import FEATURE, GLOBAL, effective_rules, rule_view
from modelwire.monitoring.silences import Silences
from modelwire.monitoring.windows import ItemBatch, Window
from modelwire.observability.metrics import FEATURE_AGE_BUCKETS, Metrics
from modelwire.security.principal import Scope, current_principal
from modelwire.settings import AlertRule, Settings

__all__ = ["ALERTS_TOPIC", "Call", "MonitoringService", "Served"]

logger = logging.getLogger("modelwire.monitoring")
ALERTS_TOPIC = "alerts"
DEFAULT_WINDOW = 1000
DEFAULT_FEATURE_WINDOW = 300.0  # seconds: the feature monitors' window when no rule names one
FEATURE_ROUNDS = 4096  # rounds kept per view (with reads): 5.7 hours at the default 5 s interval
_MISSING = ("NOT_FOUND", "OUTSIDE_MAX_AGE")


class Call(Protocol):
    """What ``record`` reads of a finished call (``core.dataplane.CallRecord`` has these)."""

    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str | None: ...
    @property
    def instances(self) -> Sequence[Any]: ...
    @property
    def results(self) -> Sequence[Any] | None: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def code(self) -> str: ...
    @property
    def time(self) -> float: ...


@dataclass(frozen=True, slots=True)
class _Sample:
    """The first items of a call bigger than what is left of a second's sampling budget."""

    model: str
    version: str | None
    instances: Sequence[Any]
    results: Sequence[Any] | None
    latency_s: float
    code: str
    time: float

    @classmethod
    def first(cls, call: Call, n: int) -> _Sample:
        results = call.results[:n] if call.results is not None else None
        return cls(
            call.model, call.version, call.instances[:n], results, call.latency_s, call.code, call.time
        )


@dataclass(frozen=True, slots=True)
class Served:
    """A served model: its name, default version and every version."""

    name: str
    default_version: str
    versions: tuple[str, ...]


Notifier = Callable[[AlertEvent], None]


class MonitoringService:
    """Monitors and alerts of one process (``GET /v1/monitoring``, ``GET /v1/alerts``, silences)."""

    def __init__(
        self,
        settings: Settings,
        events: EventBus,
        metrics: Metrics,
        *,
        served: Callable[[], list[Served]],
        reference: Callable[[str, str], tuple[ReferenceProfile | None, str]],
        saturation: Callable[[], float],
        queue_age: Callable[[], Awaitable[float | None]],
        model_views: Callable[[str], frozenset[str]] = lambda model: frozenset(),
    ) -> None:
        self.settings = settings.monitoring
        self.rules: list[AlertRule] = effective_rules(settings)
        self.events = events
        self.metrics = metrics
        self._served = served
        self._reference = reference
        self._saturation = saturation
        self._queue_age = queue_age
        self._model_views = model_views
        self._feature_totals: dict[str, tuple[float, float, tuple[float, ...]]] = {}
        self._feature_rounds: dict[str, collections.deque[FeatureRound]] = {}
        self._feature_bounds: tuple[float, ...] = FEATURE_AGE_BUCKETS
        self._feature_values: dict[str, dict[str, dict[str, Any]]] = {}
        self.notifiers: list[Notifier] = []
        self.engine = AlertEngine(self.settings.renotify_s)
        self.silences = Silences(self.settings.max_silences)
        self.recent: collections.deque[AlertEvent] = collections.deque(maxlen=self.settings.history)
        self._buffer: collections.deque[Call] = collections.deque()
        self._windows: dict[tuple[str, str], Window] = {}
        self._references: dict[tuple[str, str], tuple[ReferenceProfile | None, str, frozenset[str]]] = {}
        self._token_cache: dict[tuple[str, str], dict[str, tuple[int, bool]]] = {}
        self._values: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._sampled = metrics.monitor_samples.labels("sampled")
        self._dropped = metrics.monitor_samples.labels("dropped")
        self.dropped = 0
        self.evaluations = 0
        self.evaluated = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._rate = self.settings.sample_rate
        self._limit = self.settings.buffer
        self._per_second = self.settings.max_samples_per_s
        self._second = 0
        self._taken = 0

    # -- the request path ---------------------------------------------------------------------------

    def record(self, call: Call) -> None:
        """Sample ``call`` into the buffer (the data plane's tap). O(1), no I/O, never raises."""
        if self._rate < 1.0 and random.random() >= self._rate:  # noqa: S311 - sampling, not a secret
            return
        second = int(call.time)
        if second != self._second:
            self._second, self._taken = second, 0
        room = self._per_second - self._taken
        if room <= 0:
            return  # this second's samples are taken: the cost stays bounded under load
        if len(self._buffer) >= self._limit:
            self.dropped += 1
            self._dropped.inc()
            return
        items = len(call.instances)
        if items > room:  # a big batch (a job's, a client's): its first items only, not its whole body
            call = _Sample.first(call, room)
        self._taken += max(1, min(items, room))
        self._buffer.append(call)

    # -- the timer ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.settings.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="monitors")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.evaluate()
            except Exception:  # a monitor's bug must not stop the others next time
                logger.exception("computing the monitors failed")

    async def wait_evaluations(self, count: int) -> None:
        """Wait until ``count`` evaluations have completed since the start (tests, docs)."""
        async with self.evaluated:
            await self.evaluated.wait_for(lambda: self.evaluations >= count)

    async def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """One round: take the samples, compute the monitors, evaluate the rules, announce changes."""
        calls, self._buffer = self._buffer, collections.deque()
        served = self._served()
        for model in served:
            for version in model.versions:
                if (model.name, version) not in self._references:
                    profile, origin = self._reference(model.name, version)
                    vocab = profile.vocabulary if profile is not None else frozenset()
                    self._references[(model.name, version)] = (profile, origin, vocab)
        saturation = self._saturation()
        queue_age = await self._queue_age()
        now = time.time() if now is None else now
        values = await asyncio.to_thread(self._compute, calls, served, now)
        values[("*", "*")] = {
            "saturation": {"value": round(saturation, 6), "samples": 1},
            "job_queue_age": {"value": queue_age, "samples": 1}
            if queue_age is not None
            else {"value": None, "samples": 0, "reason": "no queued job"},
        }
        self._values = values
        self._feature_values = self._compute_features(now)
        self._set_gauges(values)
        announced = await self._evaluate_rules(served, values, now)
        async with self.evaluated:
            self.evaluations += 1
            self.evaluated.notify_all()
        return announced

    def _compute(
        self, calls: Sequence[Call], served: list[Served], now: float
    ) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        self._ingest(calls)
        if calls:
            self._sampled.inc(len(calls))
        values: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        min_samples = self.settings.min_samples
        keys = set(self._windows) | {(m.name, m.default_version) for m in served}
        for key in keys:
            window = self._windows.get(key) or Window(1, HASH_BUCKETS)
            profile = self._references.get(key, (None, "", frozenset()))[0]
            out: dict[str, dict[str, Any]] = {}
            for count, seconds in self._windows_for(key[0]):
                name = f"{count}" if count is not None else f"{seconds:g}s"
                items = window.items.select(count, seconds, now)
                requests = window.requests.select(count, seconds, now)
                floor = min(min_samples, count) if count is not None else min_samples
                computed: dict[str, MonitorValue] = {
                    m: drift(m, items, window.labels, profile, floor) for m in DRIFT_MONITORS
                }
                computed["latency_p99"] = latency_p99(requests)
                computed["error_ratio"] = error_ratio(requests)
                for monitor, value in computed.items():
                    out.setdefault(monitor, {})[name] = value.to_json()
            values[key] = out
        return values

    def _windows_for(self, model: str) -> list[tuple[int | None, float | None]]:
        found: dict[tuple[int | None, float | None], None] = {}
        for rule in self.rules:
            if rule.monitor not in GLOBAL | FEATURE and rule.model in ("*", model):
                found[(rule.window_count, rule.window_s)] = None
        return list(found) or [(DEFAULT_WINDOW, None)]

    def _read_feature_counters(self) -> dict[str, tuple[float, float, tuple[float, ...]]]:
        """Each view's totals so far, from the counters the feature service keeps anyway (read here, on
        the timer: nothing is added to a request): values read, values missing, age bucket counts."""
        reads: dict[str, list[float]] = {}
        for metric in self.metrics.feature_reads.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    got = reads.setdefault(sample.labels["view"], [0.0, 0.0])
                    got[0] += sample.value
                    if sample.labels["status"] in _MISSING:
                        got[1] += sample.value
        buckets: dict[str, dict[float, float]] = {}
        for metric in self.metrics.feature_age.collect():
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    buckets.setdefault(sample.labels["view"], {})[le] = sample.value
        out = {}
        for view, (read, missing) in reads.items():
            by_le = buckets.get(view, {})
            counts = tuple(by_le.get(le, 0.0) for le in (*self._feature_bounds, math.inf))
            out[view] = (read, missing, counts)
        return out

    def _compute_features(self, now: float) -> dict[str, dict[str, dict[str, Any]]]:
        totals = self._read_feature_counters()
        for view, (read, missing, counts) in totals.items():
            before = self._feature_totals.get(view, (0.0, 0.0, (0.0,) * len(counts)))
            if read > before[0]:
                rounds = self._feature_rounds.setdefault(view, collections.deque(maxlen=FEATURE_ROUNDS))
                buckets = tuple(c - b for c, b in zip(counts, before[2], strict=False))
                rounds.append(FeatureRound(now, int(read - before[0]), int(missing - before[1]), buckets))
        self._feature_totals = totals
        windows: dict[tuple[int | None, float | None], None] = {}
        for rule in self.rules:
            if rule.monitor in FEATURE:
                windows[(rule.window_count, rule.window_s)] = None
        if not windows:
            windows[(None, DEFAULT_FEATURE_WINDOW)] = None
        values: dict[str, dict[str, dict[str, Any]]] = {}
        for view, rounds in self._feature_rounds.items():
            out: dict[str, dict[str, Any]] = {}
            for count, seconds in windows:
                name = f"{count}" if count is not None else f"{seconds:g}s"
                fresh = feature_freshness(rounds, self._feature_bounds, count, seconds, now)
                out.setdefault("feature_freshness", {})[name] = fresh.to_json()
                rate = feature_missing_rate(rounds, count, seconds, now)
                out.setdefault("feature_missing_rate", {})[name] = rate.to_json()
            values[view] = out
        return values

    def _ingest(self, calls: Sequence[Call]) -> None:
        """Turn a round of calls into window rows: one append per model version and round."""
        rounds: dict[tuple[str, str], tuple[ItemBatch, list[float], list[float], list[bool]]] = {}
        contexts: dict[
            tuple[str, str], tuple[Window, frozenset[str], dict[str, tuple[int, bool]], Any, Any, bool]
        ]
        contexts = {}
        for call in calls:
            if call.version is None:
                continue
            key = (call.model, call.version)
            gathered = rounds.get(key)
            if gathered is None:
                gathered = rounds[key] = (ItemBatch([], [], [], [], [], []), [], [], [])
                profile, _, vocab = self._references.get(key, (None, "", frozenset()))
                output = profile.data.get("output", {}) if profile is not None else {}
                contexts[key] = (
                    self._window(key),
                    vocab,
                    self._token_cache.setdefault(key, {}),
                    output.get("label", "sentiment"),
                    output.get("confidence", "confidence"),
                    profile is not None and profile.kind == "text",
                )
            items, times, latencies, oks = gathered
            window, vocabulary, cache, label_key, conf_key, text = contexts[key]
            results = call.results
            failed = call.code != "OK" or results is None
            if results is not None:  # else the call failed as a whole: no item reached the model
                for instance, result in zip(call.instances, results, strict=False):
                    label, confidence = None, math.nan
                    if isinstance(result, BaseException):
                        failed = True
                    elif isinstance(result, dict):
                        raw_label, raw_conf = result.get(label_key), result.get(conf_key)
                        label = str(raw_label) if raw_label is not None else None
                        if isinstance(raw_conf, (int, float)):
                            confidence = float(raw_conf)
                    items.time.append(call.time)
                    items.label.append(window.label_id(label))
                    items.confidence.append(confidence)
                    if text and isinstance(instance, str):
                        length, oov, buckets = text_item(instance, vocabulary, cache)
                        items.length.append(length)
                        items.oov_rate.append(oov)
                        items.buckets.append(buckets)
                    else:
                        items.length.append(math.nan)
                        items.oov_rate.append(math.nan)
                        items.buckets.append(b"")
            times.append(call.time)
            latencies.append(call.latency_s)
            oks.append(not failed)
        for key, (items, times, latencies, oks) in rounds.items():
            window = self._window(key)
            window.add_items(items)
            window.add_requests(times, latencies, oks)

    def _window(self, key: tuple[str, str]) -> Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = Window(self.settings.max_window, HASH_BUCKETS)
        return window

    def _set_gauges(self, values: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]]) -> None:
        for view, by_monitor in self._feature_values.items():
            for monitor, by_window in by_monitor.items():
                number = next(iter(by_window.values())).get("value")
                self.metrics.feature_monitor_value.labels(view, monitor).set(
                    float("nan") if number is None else float(number)
                )
        for (model, version), monitors in values.items():
            for monitor, windows in monitors.items():
                value = next(iter(windows.values())) if "value" not in windows else windows
                number = value.get("value")
                gauge_value = float("nan") if number is None else float(number)
                self.metrics.monitor_value.labels(model, version, monitor).set(gauge_value)
                if monitor in DRIFT_MONITORS:
                    self.metrics.drift_score.labels(model, version, monitor).set(gauge_value)
                    p = value.get("p_value")
                    self.metrics.drift_p_value.labels(model, version, monitor).set(
                        float("nan") if p is None else float(p)
                    )

    async def _evaluate_rules(
        self,
        served: list[Served],
        values: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]],
        now: float,
    ) -> list[AlertEvent]:
        announced: list[AlertEvent] = []
        seen: set[tuple[str, str, str]] = set()
        defaults = {m.name: m for m in served}
        for rule in self.rules:
            view = rule_view(rule)
            if rule.monitor in FEATURE:
                announced += self._evaluate_feature_rule(rule, seen, now)
                continue
            if rule.monitor in GLOBAL:
                targets = [("*", "*")]
            else:
                names = sorted(defaults) if rule.model == "*" else [rule.model]
                targets = [
                    (name, rule.version or defaults[name].default_version)
                    for name in names
                    if name in defaults
                ]
            for model, version in targets:
                window_name = (
                    f"{rule.window_count}" if rule.window_count is not None else f"{rule.window_s:g}s"
                )
                entry = values.get((model, version), {}).get(rule.monitor, {})
                value = entry.get("value") if "value" in entry else entry.get(window_name, {}).get("value")
                seen.add(self.engine.key(rule.name, model, version))
                event = self.engine.evaluate(view, model, version, value, now)
                if event is not None:
                    announced.append(event)
        for key, alert in list(self.engine.instances.items()):  # a version no longer served, a rule gone
            if key not in seen:
                event = self.engine.evaluate(
                    alert.rule, alert.model, alert.version, None, now, view=alert.view
                )
                if event is not None:
                    announced.append(event)
                if alert.state in (AlertState.INACTIVE, AlertState.RESOLVED):
                    self.engine.forget({key})
        for alert in self.engine.instances.values():
            firing = 1.0 if alert.state is AlertState.FIRING else 0.0
            self.metrics.alerts_firing.labels(alert.rule.name, alert.model, alert.version).set(firing)
        out = []
        for event in announced:
            silenced = self.silences.silenced(event.labels, now)
            event = _with(event, silenced)
            out.append(event)
            if event.state == AlertState.RESOLVED.value:
                self.recent.appendleft(event)
            if silenced:
                continue
            await self.events.publish(ALERTS_TOPIC, f"alert.{event.state}", event.to_json())
            for notify in self.notifiers:
                notify(event)
        return out

    def _evaluate_feature_rule(
        self, rule: AlertRule, seen: set[tuple[str, str, str]], now: float
    ) -> list[AlertEvent]:
        """A feature monitor's rule, once per feature view: every view read (``model = "*"``), or the
        views of the features the named model declares."""
        view_rule = rule_view(rule)
        views = sorted(self._feature_values)
        if rule.model != "*":
            used = self._model_views(rule.model)
            views = [v for v in views if v in used]
        window = f"{rule.window_count}" if rule.window_count is not None else f"{rule.window_s:g}s"
        out = []
        for name in views:
            value = self._feature_values[name].get(rule.monitor, {}).get(window, {}).get("value")
            seen.add(self.engine.key(rule.name, rule.model, "*", name))
            event = self.engine.evaluate(view_rule, rule.model, "*", value, now, view=name)
            if event is not None:
                out.append(event)
        return out

    # -- what the API shows -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """``GET /v1/monitoring``: every monitor's current value per window, and the references."""
        models = []
        for (model, version), monitors in sorted(self._values.items()):
            entry: dict[str, Any] = {"model": model, "version": version, "monitors": monitors}
            if model != "*":
                profile, origin, _ = self._references.get(
                    (model, version), (None, "no reference", frozenset())
                )
                entry["reference"] = {"status": origin, "profile": profile.summary() if profile else None}
            models.append(entry)
        return {
            "enabled": self.settings.enabled,
            "interval_s": self.settings.interval_s,
            "sample_rate": self.settings.sample_rate,
            "evaluations": self.evaluations,
            "samples_dropped": self.dropped,
            "models": models,
            "features": [
                {"view": view, "monitors": monitors}
                for view, monitors in sorted(self._feature_values.items())
            ],
            "rules": [rule.model_dump(mode="json") for rule in self.rules],
        }

    def alerts(self) -> dict[str, Any]:
        """``GET /v1/alerts``: pending and firing alerts, the recently resolved, the active silences."""
        now = time.time()
        active = []
        for alert in self.engine.instances.values():
            if alert.state in (AlertState.PENDING, AlertState.FIRING):
                event = alert.event(now)
                active.append(_with(event, self.silences.silenced(event.labels, now)).to_json())
        return {
            "alerts": active,
            "recent": [event.to_json() for event in self.recent],
            "silences": [s.to_json(now) for s in self.silences.active(now)],
        }

    def add_silence(self, body: Any) -> dict[str, Any]:
        """Create a silence (``models:admin``); returns it."""
        principal = current_principal()
        principal.require(Scope.MODELS_ADMIN)
        now = time.time()
        return self.silences.add(body, now=now, created_by=principal.id or "anonymous").to_json(now)

    def remove_silence(self, silence_id: str) -> None:
        """Delete a silence (``models:admin``); ``NotFoundError`` for an unknown or expired one."""
        current_principal().require(Scope.MODELS_ADMIN)
        self.silences.prune(time.time())
        self.silences.remove(silence_id)


def _with(event: AlertEvent, silenced: bool) -> AlertEvent:
    if event.silenced == silenced:
        return event
    from dataclasses import replace

    return replace(event, silenced=silenced)
