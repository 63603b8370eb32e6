"""Prometheus metrics, all prefixed ``modelwire_``. One ``Metrics`` per server (its own registry)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prom_multiprocess

from modelwire.observability.live import LiveStats

__all__ = ["CONTENT_TYPE", "FEATURE_AGE_BUCKETS", "CallMetrics", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


FEATURE_AGE_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)
"""``modelwire_feature_age_seconds``'s buckets (seconds); the feature freshness monitor reads them."""


class CallMetrics:
    """One ``(protocol, model)``'s labelled children, looked up once.

    ``labels()`` validates, builds a tuple and takes a lock on every call; the data plane records four per
    inference call, so it keeps these instead (what prometheus_client's docs advise for hot paths).
    """

    __slots__ = ("_codes", "_labels", "latency")

    def __init__(self, metrics: Metrics, protocol: str, model: str) -> None:
        self.latency = metrics.latency.labels(protocol, model)
        self._labels = (metrics.requests, protocol, model)
        self._codes: dict[str, Any] = {}

    def count(self, code: str) -> None:
        """``modelwire_requests{protocol, model, code}`` += 1."""
        child = self._codes.get(code)
        if child is None:
            requests, protocol, model = self._labels
            child = self._codes[code] = requests.labels(protocol, model, code)
        child.inc()


class Metrics:
    """Counters and histograms the core and the adapters record into."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelwire_requests",
            "Inference requests by protocol, model and outcome code.",
            ["protocol", "model", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelwire_request_duration_seconds",
            "Inference request latency inside the server, by protocol and model.",
            ["protocol", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "modelwire_batch_size",
            "Items per model predict call.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inflight = Gauge(
            "modelwire_inflight_requests",
            "Inference requests being processed, by protocol.",
            ["protocol"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.model_ready = Gauge(
            "modelwire_model_ready",
            "1 when a model version is loaded and serving.",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        # the memory budget (core/budget.py; docs/admin.md)
        self.model_memory = Gauge(
            "modelwire_model_memory_bytes",
            "The measured size of each loaded model version (0 once unloaded); measured when "
            "models.memory_budget is set.",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.memory_budget = Gauge(
            "modelwire_model_memory_budget_bytes",
            "models.memory_budget in bytes (absent without a budget).",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.memory_used = Gauge(
            "modelwire_model_memory_used_bytes",
            "What the loaded model versions take of the memory budget.",
            registry=self.registry,
            multiprocess_mode="max",
        )

        self.connections = Gauge(
            "modelwire_open_connections",
            "Open streaming connections (WebSocket, SSE, gRPC event streams), by protocol.",
            ["protocol"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.queue_messages = Counter(
            "modelwire_queue_messages",
            "Queue consumers' messages by broker, queue and outcome (answered, dead_lettered, redelivered, "
            "given_back).",
            ["broker", "queue", "outcome"],
            registry=self.registry,
        )
        self.queue_in_flight = Gauge(
            "modelwire_queue_in_flight",
            "Messages a queue consumer holds unacknowledged, by broker and queue.",
            ["broker", "queue"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.events_out = Counter(
            "modelwire_events_out",
            "Events sent to event sinks ([[event_sinks]]), by broker and outcome (published, dropped).",
            ["broker", "outcome"],
            registry=self.registry,
        )
        # model monitors and alerts (monitoring/; docs/monitoring.md)
        self.drift_score = Gauge(
            "modelwire_drift_score",
            "Drift monitors' values (PSI; confidence: the fall of mean confidence), by model, version "
            "and monitor.",
            ["model", "version", "monitor"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.drift_p_value = Gauge(
            "modelwire_drift_p_value",
            "The p-value of each drift monitor's two-sample test (KS or chi-square).",
            ["model", "version", "monitor"],
            registry=self.registry,
            multiprocess_mode="min",
        )
        self.monitor_value = Gauge(
            "modelwire_monitor_value",
            "Every monitor's current value (latency_p99 and job_queue_age in seconds, error_ratio, "
            "saturation).",
            ["model", "version", "monitor"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.feature_monitor_value = Gauge(
            "modelwire_feature_monitor_value",
            "The feature monitors per feature view: feature_freshness (p90 age of the values read, "
            "seconds), feature_missing_rate (share read NOT_FOUND or OUTSIDE_MAX_AGE).",
            ["view", "monitor"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.monitor_samples = Counter(
            "modelwire_monitor_samples",
            "Calls offered to the monitors' buffer, by outcome (sampled, dropped: the buffer was full).",
            ["outcome"],
            registry=self.registry,
        )
        self.alerts_firing = Gauge(
            "modelwire_alerts_firing",
            "1 while an alert fires, by alert name, model and version.",
            ["alertname", "model", "version"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.payload_log = Counter(
            "modelwire_payload_log",
            "Payload log records by outcome (written; dropped: the queue was full).",
            ["outcome"],
            registry=self.registry,
        )
        self.shadow_calls = Counter(
            "modelwire_shadow_calls",
            "Calls copied to a shadow version, by model, shadow version and outcome (answered, failed, "
            "timed_out, dropped: too many shadow calls running).",
            ["model", "version", "outcome"],
            registry=self.registry,
        )
        self.shadow_items = Counter(
            "modelwire_shadow_items",
            "Items a shadow version answered, by model, shadow version and whether its answer agreed "
            "with the live one (agreed: true/false).",
            ["model", "version", "agreed"],
            registry=self.registry,
        )
        self.shadow_latency = Histogram(
            "modelwire_shadow_duration_seconds",
            "How long a shadow version took to answer a copied call.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.feature_writes = Counter(
            "modelwire_feature_writes",
            "Feature rows written, by view and outcome (applied, skipped: older than the stored value).",
            ["view", "outcome"],
            registry=self.registry,
        )
        self.feature_reads = Counter(
            "modelwire_feature_reads",
            "Feature values read, by view and status (PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE).",
            ["view", "status"],
            registry=self.registry,
        )
        self.feature_store_reads = Counter(
            "modelwire_feature_store_reads",
            "Round trips to the online feature store for reads (one per get-online-features call or batch).",
            registry=self.registry,
        )
        self.feature_age = Histogram(
            "modelwire_feature_age_seconds",
            "Age (now minus event time) of the feature values read, by view.",
            ["view"],
            buckets=FEATURE_AGE_BUCKETS,
            registry=self.registry,
        )
        self.live = LiveStats()
        self._calls: dict[tuple[str, str], CallMetrics] = {}
        self._inflight: dict[str, Any] = {}

    def calls(self, protocol: str, model: str) -> CallMetrics:
        """The cached children for ``(protocol, model)`` (a model name that reached the data plane's
        metrics, as ``labels()`` would have added it anyway)."""
        key = (protocol, model)
        found = self._calls.get(key)
        if found is None:
            found = self._calls[key] = CallMetrics(self, protocol, model)
        return found

    def inflight_of(self, protocol: str) -> Any:
        """``modelwire_inflight_requests{protocol}``'s child, cached."""
        found = self._inflight.get(protocol)
        if found is None:
            found = self._inflight[protocol] = self.inflight.labels(protocol)
        return found

    def connection_opened(self, protocol: str) -> None:
        self.connections.labels(protocol).inc()
        self.live.connection_opened(protocol)

    def connection_closed(self, protocol: str) -> None:
        self.connections.labels(protocol).dec()
        self.live.connection_closed(protocol)

    def render(self) -> bytes:
        """The exposition text; with several workers, the sum over all of them."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(combined))
        return bytes(generate_latest(self.registry))
