"""Alert rules: the built-in defaults for the default model, the configured ``[[alerts]]``, and the same rules
as Prometheus alerting rules (``modelwire alerts rules --prometheus``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from modelwire.monitoring.alerts import RuleView
from modelwire.settings import AlertRule, Settings

__all__ = ["FEATURE", "GLOBAL", "default_rules", "effective_rules", "prometheus_rules", "rule_view"]

DRIFT = frozenset({"prediction_drift", "input_drift", "confidence"})
GLOBAL = frozenset({"saturation", "job_queue_age"})
"""Monitors of the whole process, not of one model (their rules' ``model`` is ``"*"``)."""
FEATURE = frozenset({"feature_freshness", "feature_missing_rate"})
"""Monitors of each feature view (``model = "*"``: every view; a model's name: the views it reads)."""
_MISSING_STATUSES = "NOT_FOUND|OUTSIDE_MAX_AGE"


def default_rules(model: str) -> list[AlertRule]:
    """The built-in rules for a default (``builtin:sentiment``) model named ``model``; thresholds are
    explained in docs/monitoring.md."""
    return [
        AlertRule(
            name=f"{model}-prediction-drift",
            monitor="prediction_drift",
            model=model,
            threshold=0.2,
            window=1000,
            for_s=60,
            summary="the share of predicted labels moved away from the held-out data's",
        ),
        AlertRule(
            name=f"{model}-input-drift",
            monitor="input_drift",
            model=model,
            threshold=0.25,
            window=1000,
            for_s=60,
            summary="the texts differ from the training data (length, vocabulary or words used)",
        ),
        AlertRule(
            name=f"{model}-confidence-collapse",
            monitor="confidence",
            model=model,
            threshold=0.1,
            window=1000,
            for_s=60,
            summary="mean confidence fell more than 10 points below the held-out data's",
        ),
        AlertRule(
            name=f"{model}-latency-p99",
            monitor="latency_p99",
            model=model,
            threshold=0.5,
            window="5m",
            for_s=60,
            severity="critical",
            summary="99th percentile latency above 0.5 s",
        ),
        AlertRule(
            name=f"{model}-error-ratio",
            monitor="error_ratio",
            model=model,
            threshold=0.05,
            window="5m",
            for_s=60,
            severity="critical",
            summary="more than 5 % of requests failed",
        ),
    ]


_FEATURE_RULE = AlertRule(
    name="feature-missing-rate",
    monitor="feature_missing_rate",
    threshold=0.2,
    window="5m",
    for_s=60,
    summary="more than 20 % of a feature view's values read were missing or older than its TTL",
)
"""Built in when feature views are configured (docs/monitoring.md)."""

_PROCESS_RULES = (
    AlertRule(
        name="saturation",
        monitor="saturation",
        threshold=0.9,
        for_s=30,
        summary="in-flight requests above 90 % of limits.max_inflight",
    ),
    AlertRule(
        name="job-queue-age",
        monitor="job_queue_age",
        threshold=600,
        for_s=60,
        summary="the oldest queued job has waited more than 10 minutes",
    ),
)


def effective_rules(settings: Settings) -> list[AlertRule]:
    """The built-in rules (``monitoring.default_rules``), then ``[[alerts]]``; a configured rule replaces
    a built-in one of the same name."""
    rules: dict[str, AlertRule] = {}
    if settings.monitoring.default_rules:
        for spec in settings.effective_models():
            if spec.source == "builtin:sentiment":
                rules.update((rule.name, rule) for rule in default_rules(spec.name))
        rules.update((rule.name, rule) for rule in _PROCESS_RULES)
        if settings.feature_views:
            rules[_FEATURE_RULE.name] = _FEATURE_RULE
    for rule in settings.alerts:
        rules[rule.name] = rule
    return list(rules.values())


def rule_view(rule: AlertRule) -> RuleView:
    return RuleView(
        name=rule.name,
        monitor=rule.monitor,
        threshold=rule.threshold,
        for_s=rule.for_s,
        keep_firing_for_s=rule.keep_firing_for_s,
        severity=rule.severity,
        labels=dict(rule.labels),
        summary=rule.summary,
        window=rule.window,
    )


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole}s" if whole == seconds else f"{int(seconds * 1000)}ms"


def _selector(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items() if v != "*") + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _expr(rule: AlertRule) -> str:
    model = rule.model
    window_s = rule.window_s
    if rule.monitor == "latency_p99" and window_s is not None:
        rate = (
            f"rate(modelwire_request_duration_seconds_bucket{_selector(model=model)}[{_duration(window_s)}])"
        )
        return f"histogram_quantile(0.99, sum by (le) ({rate})) > {rule.threshold!r}"
    if rule.monitor == "error_ratio" and window_s is not None:
        window = _duration(window_s)
        matchers = ([f'model="{_escape(model)}"'] if model != "*" else []) + ['code!="OK"']
        failed = f"rate(modelwire_requests_total{{{','.join(matchers)}}}[{window}])"
        total = f"rate(modelwire_requests_total{_selector(model=model)}[{window}])"
        return f"(sum({failed}) / sum({total})) > {rule.threshold!r}"
    if rule.monitor in FEATURE:
        return _feature_expr(rule)
    labels: dict[str, str] = {"monitor": rule.monitor}
    if rule.monitor not in GLOBAL:
        labels = {"model": model, "monitor": rule.monitor}
    if rule.version is not None and rule.monitor not in GLOBAL:
        labels["version"] = rule.version
    metric = "modelwire_drift_score" if rule.monitor in DRIFT else "modelwire_monitor_value"
    return f"{metric}{_selector(**labels)} > {rule.threshold!r}"


def _feature_expr(rule: AlertRule) -> str:
    """Per view, from the feature service's own metrics for a time window; a count window has no
    PromQL form, so the gauge the server computes is used."""
    window_s = rule.window_s
    if window_s is None:
        return f'modelwire_feature_monitor_value{{monitor="{rule.monitor}"}} > {rule.threshold!r}'
    window = _duration(window_s)
    if rule.monitor == "feature_missing_rate":
        missing = f'rate(modelwire_feature_reads_total{{status=~"{_MISSING_STATUSES}"}}[{window}])'
        read = f"rate(modelwire_feature_reads_total[{window}])"
        return f"(sum by (view) ({missing}) / sum by (view) ({read})) > {rule.threshold!r}"
    rate = f"rate(modelwire_feature_age_seconds_bucket[{window}])"
    return f"histogram_quantile(0.9, sum by (le, view) ({rate})) > {rule.threshold!r}"


def prometheus_rules(rules: Sequence[AlertRule] | Iterable[AlertRule]) -> dict[str, Any]:
    """The rules as a Prometheus rule file (``groups:``), for Alertmanager setups; serialise as YAML or
    JSON (Prometheus reads both)."""
    out = []
    for rule in rules:
        entry: dict[str, Any] = {"alert": rule.name, "expr": _expr(rule)}
        if rule.for_s:
            entry["for"] = _duration(rule.for_s)
        if rule.keep_firing_for_s:
            entry["keep_firing_for"] = _duration(rule.keep_firing_for_s)
        labels = {**rule.labels, "severity": rule.severity}
        if rule.monitor not in GLOBAL | FEATURE and rule.model != "*":
            labels["model"] = rule.model
        entry["labels"] = labels
        annotations = {"summary": rule.summary or f"{rule.monitor} above {rule.threshold!r}"}
        annotations["description"] = (
            f"modelwire rule {rule.name}: {rule.monitor} over the window {rule.window} above "
            f"{rule.threshold!r} (value {{{{ $value }}}})"
        )
        entry["annotations"] = annotations
        out.append(entry)
    return {"groups": [{"name": "modelwire", "rules": out}]}
