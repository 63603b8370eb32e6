"""``Services``: what one modelwire process holds, built once by ``builder.build_services``.

A plain container. It builds nothing and runs nothing: ``builder.py`` fills it, ``lifecycle.py`` starts
and stops it, and each adapter is handed only the parts it uses (``protocols/facades.py``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from modelwire.app.repository_watch import RepositoryWatcher
from modelwire.app.versions import ModelVersions
from modelwire.core.admin import ModelAdmin
from modelwire.core.dataplane import DataPlane
from modelwire.events.bus import EventBus
from modelwire.events.publishers import MetricsPublisher
from modelwire.features.service import FeatureService
from modelwire.jobs.manager import JobManager
from modelwire.model.registry import ModelRegistry
from modelwire.monitoring.service import MonitoringService
from modelwire.observability.metrics import Metrics
from modelwire.outbound.alerts import AlertWebhooks
from modelwire.outbound.events import EventSink
from modelwire.outbound.payloads import PayloadLog
from modelwire.security.policy import SecurityPolicy
from modelwire.settings import Settings

__all__ = ["Services"]


@dataclass(slots=True, eq=False)
class Services:
    """Settings, models, the data plane, jobs, events, security and metrics of one process."""

    settings: Settings
    registry: ModelRegistry
    dataplane: DataPlane
    metrics: Metrics
    events: EventBus
    security: SecurityPolicy
    versions: ModelVersions
    """Serve a version trained or found at run time (``versions.py``)."""
    jobs: JobManager
    """Async jobs: submit, poll, cancel (``jobs/``); its workers run while the services run."""
    publisher: MetricsPublisher
    """The ``metrics`` topic's per-second snapshot, started with the services."""
    monitoring: MonitoringService
    """Model monitors and alerts (``monitoring/``): sampled on the data plane, computed on a timer."""
    alert_webhooks: AlertWebhooks
    """``[[monitoring.webhooks]]``: alert notifications over HTTP, signed like job webhooks."""
    payload_log: PayloadLog
    """``[monitoring.payload_log]``: sampled calls as CloudEvents NDJSON files or to a broker."""
    features: FeatureService
    """Feature views and the online store (``features/``); the store opens when views are configured."""
    event_sinks: list[EventSink] = field(default_factory=list)
    """``[[event_sinks]]``: chosen topics published to brokers, started and stopped with the services."""
    admin: ModelAdmin | None = None
    """Model management: load, unload, default, traffic, rollback (``core/admin.py``)."""
    watcher: RepositoryWatcher | None = None
    """Follows the model repository when ``model_watch`` is on (``repository_watch.py``)."""
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when shutdown begins: long-lived streams finish what is in flight and close (WebSocket 1001)."""
