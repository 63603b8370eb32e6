"""``build_services``: the one builder of ``Services``, for every role (serve, model-service, gateway,
worker). Instantiates models (training the default one when the repository has none) and wires the core,
the jobs façade, the event bus and the security policy. Loads nothing and opens nothing: ``lifecycle.py``
starts what this builds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelwire.app.follow import follow_remote_jobs
from modelwire.app.monitoring import build_alert_webhooks, build_monitoring, build_payload_log
from modelwire.app.services import Services
from modelwire.app.versions import ModelVersions, batching_for
from modelwire.backends.resolve import (
    open_event_bus,
    open_event_transport,
    open_feature_store,
    open_job_store,
    open_rate_limiter,
)
from modelwire.core.admin import ModelAdmin
from modelwire.core.dataplane import DataPlane
from modelwire.events.bus import EventBus
from modelwire.events.publishers import MetricsPublisher
from modelwire.features.join import join_features
from modelwire.features.service import FeatureService
from modelwire.features.store import FeatureStore
from modelwire.features.views import FeatureViews
from modelwire.gateway.features import RemoteFeatureStore
from modelwire.jobs.manager import JobManager
from modelwire.jobs.training import Trainer
from modelwire.jobs.webhooks import WebhookDispatcher
from modelwire.model.base import Model
from modelwire.model.registry import ModelHandle, ModelRegistry, build_models
from modelwire.model.versions import VersionCatalog
from modelwire.observability.metrics import Metrics
from modelwire.outbound.events import EventSink
from modelwire.outbound.webhooks import HttpxWebhookPoster
from modelwire.security.policy import SecurityPolicy
from modelwire.settings import Settings, parse_budget

__all__ = ["build_services"]


def build_services(
    settings: Settings,
    *,
    models: list[Model] | None = None,
    progress: Callable[[str, float], None] | None = None,
    events: EventBus | None = None,
) -> Services:
    """Everything one process serves with. ``models`` replaces the configured ones (``[]``: none, as a
    gateway has before it discovers its model services)."""
    security = SecurityPolicy.build(  # refuses unsafe settings before a model is built
        settings, limiter=lambda auth_on: open_rate_limiter(settings, auth_on=auth_on)
    )
    metrics = Metrics()
    registry = ModelRegistry()
    views = FeatureViews.from_settings(settings.feature_views)
    bus = events or open_event_bus(settings)

    async def written(event: dict[str, Any]) -> None:
        await bus.publish("features", "features.written", event)

    features = FeatureService(views, _feature_store(settings, views), metrics, on_write=written)
    timeout = settings.limits.request_timeout_s
    for built in models if models is not None else build_models(settings, progress=progress):
        model = join_features(built, features, timeout_s=timeout)  # a model declaring features gets them
        registry.add(model, batching_for(settings, model.name), metrics.batch_size.labels(model.name).observe)
    dataplane = DataPlane(registry, settings.limits, metrics)
    versions = ModelVersions(settings, registry, metrics, bus)
    publisher = MetricsPublisher(
        bus, metrics.live, settings.events.metrics_interval_s, lambda: _gauges(dataplane, bus, features)
    )
    jobs = _jobs(settings, dataplane, bus, versions)
    monitoring = build_monitoring(settings, dataplane, registry, bus, metrics, jobs)
    services = Services(
        settings=settings,
        registry=registry,
        dataplane=dataplane,
        metrics=metrics,
        events=bus,
        security=security,
        versions=versions,
        jobs=jobs,
        publisher=publisher,
        monitoring=monitoring,
        alert_webhooks=build_alert_webhooks(settings, monitoring),
        payload_log=build_payload_log(settings, dataplane, metrics),
        features=features,
        event_sinks=_event_sinks(settings, bus, metrics),
        admin=_admin(settings, dataplane, bus, metrics, features),
    )
    versions.admin = services.admin
    follow_remote_jobs(services)  # jobs on Redis: act on other processes' job events too
    return services


def _feature_store(settings: Settings, views: FeatureViews) -> FeatureStore:
    store = settings.features.store
    if store.startswith(("grpc://", "grpcs://")):  # a feature service: another modelwire, over gRPC
        key = settings.features.key.get_secret_value() if settings.features.key is not None else None
        return RemoteFeatureStore(store, views, key=key, timeout_s=settings.limits.request_timeout_s)
    return open_feature_store(settings)


def _jobs(settings: Settings, dataplane: DataPlane, events: EventBus, versions: ModelVersions) -> JobManager:
    jobs = settings.jobs
    store = open_job_store(settings)
    secret = jobs.webhook_secret.get_secret_value() if jobs.webhook_secret is not None else None
    webhooks = WebhookDispatcher(
        store,
        HttpxWebhookPoster(),
        secret=secret,
        secret_path=settings.data_dir / "webhook_secret",
        allow=jobs.webhook_allow,
        max_attempts=jobs.webhook_max_attempts,
        timeout_s=jobs.webhook_timeout_s,
    )
    trainer = Trainer(settings.model_repository, dataplane, versions.register)
    return JobManager(jobs, store, dataplane, events, webhooks, trainer)


def _admin(
    settings: Settings, dataplane: DataPlane, events: EventBus, metrics: Metrics, features: FeatureService
) -> ModelAdmin:
    async def publish(type_: str, data: Any) -> None:
        await events.publish("models", type_, data)

    budget = (
        parse_budget(settings.memory_budget, total_memory=total_memory())
        if settings.memory_budget is not None
        else None
    )
    if budget is not None:
        metrics.memory_budget.set(budget)

    def on_ready(handle: ModelHandle) -> None:
        metrics.model_ready.labels(handle.name, handle.version).set(1 if handle.ready else 0)
        if budget is not None:
            size = admin.budget.size(handle) if handle.ready else 0
            metrics.model_memory.labels(handle.name, handle.version).set(size or 0)
            metrics.memory_used.set(admin.budget.used())

    admin = ModelAdmin(
        dataplane,
        VersionCatalog(settings.model_repository, settings.effective_models()),
        publish,
        lambda name: batching_for(settings, name),
        observe=lambda name: metrics.batch_size.labels(name).observe,
        on_ready=on_ready,
        # a version trained, registered or dropped into the repository at run time gets the feature
        # join like the versions built at start
        prepare=lambda model: join_features(model, features, timeout_s=settings.limits.request_timeout_s),
        memory_budget=budget,
    )
    admin.restore()
    return admin


def total_memory() -> int:
    """This machine's RAM in bytes, or the container's memory limit when that is lower (cgroup v2
    ``memory.max``): what a ``"50%"`` memory budget is a share of."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def _event_sinks(settings: Settings, bus: EventBus, metrics: Metrics) -> list[EventSink]:
    sinks = []
    for sink in settings.event_sinks:
        out = EventSink(open_event_transport(sink), sink.topics, buffer=sink.buffer, metrics=metrics)
        out.attach(bus)
        sinks.append(out)
    return sinks


def _gauges(dataplane: DataPlane, events: EventBus, features: FeatureService) -> dict[str, Any]:
    gauges: dict[str, Any] = {
        "inflight": dataplane.inflight,
        "subscribers": events.subscriber_count,
        "models": dataplane.models_state(),
    }
    if len(features.views):
        gauges["features"] = features.freshness()  # the dashboard's feature views panel
    return gauges
