"""Wiring of the monitors (``monitoring/``): what they read of this process, where alerts go.

The monitoring service samples the data plane's calls (its tap), reads the served models and their
reference profiles from the registry, saturation from the data plane, the oldest queued job's age from
the job store, and tells the alert webhooks (``outbound/alerts.py``) besides the event bus.
"""

from __future__ import annotations

import time

from modelwire.backends.resolve import open_event_transport
from modelwire.core.dataplane import DataPlane
from modelwire.events.bus import EventBus
from modelwire.jobs.manager import JobManager
from modelwire.jobs.states import JobStatus
from modelwire.model.registry import ModelRegistry
from modelwire.monitoring.profiles import ReferenceProfile
from modelwire.monitoring.service import MonitoringService, Served
from modelwire.observability.metrics import Metrics
from modelwire.outbound.alerts import AlertWebhooks
from modelwire.outbound.payloads import PayloadLog
from modelwire.outbound.webhooks import HttpxWebhookPoster
from modelwire.settings import EventSinkSettings, Settings

__all__ = ["build_alert_webhooks", "build_monitoring", "build_payload_log"]


def build_monitoring(
    settings: Settings,
    dataplane: DataPlane,
    registry: ModelRegistry,
    events: EventBus,
    metrics: Metrics,
    jobs: JobManager,
) -> MonitoringService:
    def served() -> list[Served]:
        out = []
        for name in registry.names():
            versions = tuple(
                v for v in registry.versions(name) if registry.get(name, v, require_ready=False).ready
            )
            if versions:
                default = registry.get(name, None, require_ready=False).version
                out.append(Served(name, default, versions))
        return out

    def reference(name: str, version: str) -> tuple[ReferenceProfile | None, str]:
        return registry.get(name, version, require_ready=False).model.reference()

    def saturation() -> float:
        return dataplane.inflight / max(1, settings.limits.max_inflight)

    async def queue_age() -> float | None:
        page = await jobs.store.list_jobs(status=JobStatus.QUEUED, limit=settings.jobs.max_queue_depth)
        if not page.jobs:
            return None
        return round(max(0.0, time.time() - min(job.created_at for job in page.jobs)), 3)

    def model_views(name: str) -> frozenset[str]:
        """The feature views a model reads (its declared ``features``, ``view:feature``)."""
        if name not in registry.names():
            return frozenset()
        model = registry.get(name, None, require_ready=False).model
        return frozenset(ref.split(":", 1)[0] for ref in getattr(model, "features", ()))

    monitoring = MonitoringService(
        settings,
        events,
        metrics,
        served=served,
        reference=reference,
        saturation=saturation,
        queue_age=queue_age,
        model_views=model_views,
    )
    if settings.monitoring.enabled:
        dataplane.taps.append(monitoring.record)
    return monitoring


def build_alert_webhooks(settings: Settings, monitoring: MonitoringService) -> AlertWebhooks:
    jobs = settings.jobs
    webhooks = AlertWebhooks(
        settings.monitoring.webhooks,
        HttpxWebhookPoster(),
        secret=jobs.webhook_secret.get_secret_value() if jobs.webhook_secret is not None else None,
        secret_path=settings.data_dir / "webhook_secret",
        allow=jobs.webhook_allow,
        max_attempts=jobs.webhook_max_attempts,
        timeout_s=jobs.webhook_timeout_s,
    )
    if webhooks.receivers:
        monitoring.notifiers.append(webhooks.notify)
    return webhooks


def build_payload_log(settings: Settings, dataplane: DataPlane, metrics: Metrics) -> PayloadLog:
    """The payload log (``[monitoring.payload_log]``); taps the data plane when its sample rate is > 0."""
    config = settings.monitoring.payload_log
    transport = None
    if config.sink != "file":
        transport = open_event_transport(EventSinkSettings(url=config.sink, destination=config.destination))
    log = PayloadLog(config, metrics, folder=settings.data_dir / "payloads", transport=transport)
    if log.enabled:
        dataplane.taps.append(log.record)
    return log
