"""The services every protocol adapter shares, built once by the composition root (``server.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelwire.core.dataplane import DataPlane
from modelwire.events.bus import EventBus, LocalEventBus
from modelwire.events.publishers import MetricsPublisher
from modelwire.jobs.manager import JobManager
from modelwire.jobs.remote import follow_remote_jobs
from modelwire.model.base import Model
from modelwire.model.registry import ModelRegistry, build_models
from modelwire.observability.metrics import Metrics
from modelwire.security.policy import SecurityPolicy
from modelwire.settings import Settings

__all__ = ["Services"]


@dataclass(slots=True)
class Services:
    """Settings, model registry, data plane, metrics and the event bus: what adapters are given."""

    settings: Settings
    registry: ModelRegistry
    dataplane: DataPlane
    metrics: Metrics
    events: EventBus
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when shutdown begins: long-lived streams finish what is in flight and close (WebSocket 1001)."""
    _publisher: MetricsPublisher | None = field(default=None, repr=False)
    jobs: JobManager = field(init=False, repr=False)
    """Async jobs: submit, poll, cancel (``jobs/``); its workers run while the services run."""
    security: SecurityPolicy = field(init=False, repr=False)
    """Authentication, scopes and rate limits (``security/policy.py``), set by ``build``."""

    def __post_init__(self) -> None:
        self.jobs = _build_jobs(self)
        follow_remote_jobs(self)  # jobs on Redis: act on other processes' job events too

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        models: list[Model] | None = None,
        progress: Callable[[str, float], None] | None = None,
        events: EventBus | None = None,
    ) -> Services:
        """Instantiate models (training the default one if needed) and wire the core. Loads nothing."""
        security = SecurityPolicy.build(settings)  # refuses unsafe settings before a model is built
        metrics = Metrics()
        registry = ModelRegistry()
        specs = {spec.name: spec for spec in settings.effective_models()}
        for model in models if models is not None else build_models(settings, progress=progress):
            spec = specs.get(model.name)
            batching = spec.batching if spec is not None and spec.batching is not None else settings.batching
            registry.add(model, batching, metrics.batch_size.labels(model.name).observe)
        bus = events or _event_bus(settings)
        services = cls(settings, registry, DataPlane(registry, settings.limits, metrics), metrics, bus)
        services.security = security
        return services

    async def start(self) -> None:
        """Load every model (a model that fails to load stops the start with its error), start publishing."""
        await self.events.start()
        await self.registry.load_all()
        for handle in self.registry.handles():
            self.metrics.model_ready.labels(handle.name, handle.version).set(1)
            await self.events.publish("models", "model.loaded", _model_event(handle))
        await self.jobs.start()
        await self.events.publish("server", "server.ready", {"ready": self.dataplane.ready()})
        self._publisher = MetricsPublisher(
            self.events, self.metrics.live, self.settings.events.metrics_interval_s, self._gauges
        )
        self._publisher.start()

    async def begin_shutdown(self) -> None:
        """Tell long-lived streams to finish: event streams end, WebSockets close after in-flight replies.

        The composition root calls this before draining the listeners, which wait for open connections.
        """
        if self.closing.is_set():
            return
        await self.events.publish("server", "server.stopping", {"ready": False})
        self.closing.set()
        if self._publisher is not None:
            await self._publisher.stop()
        await self.events.close()

    async def streams_closed(self, grace_s: float, protocols: tuple[str, ...] = ("ws", "sse")) -> bool:
        """After ``begin_shutdown``: wait up to ``grace_s`` until no ``protocols`` connection is open.

        granian stops serving upgraded WebSockets the moment its listener stops (sends fail, the TCP
        connection hangs until the client gives up), so the composition root waits here for the handlers
        to finish their in-flight replies and close (WebSocket 1001) before it stops the listener.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        live = self.metrics.live
        while any(live.connections(p) for p in protocols):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def stop(self) -> None:
        """Refuse new work and unload models (after the listeners drained)."""
        await self.begin_shutdown()
        await self.jobs.stop()
        self.dataplane.stop_accepting()
        for handle in self.registry.handles():
            self.metrics.model_ready.labels(handle.name, handle.version).set(0)
        await self.registry.unload_all()
        await self.security.close()

    async def register_version(self, model: Model) -> None:
        """Load a new version of a served model and serve it at once (a training job's result)."""
        spec = next((s for s in self.settings.effective_models() if s.name == model.name), None)
        batching = spec.batching if spec is not None and spec.batching is not None else self.settings.batching
        handle = await self.registry.add_loaded(
            model, batching, self.metrics.batch_size.labels(model.name).observe
        )
        self.metrics.model_ready.labels(handle.name, handle.version).set(1)
        await self.events.publish("models", "model.registered", _model_event(handle))
        await self.events.publish("models", "model.loaded", _model_event(handle))

    def _gauges(self) -> dict[str, Any]:
        return {
            "inflight": self.dataplane.inflight,
            "subscribers": self.events.subscriber_count,
            "models": [
                {"name": h.name, "version": h.version, "ready": h.ready} for h in self.registry.handles()
            ],
        }


def _event_bus(settings: Settings) -> EventBus:
    """In-process, or over Redis pub/sub when jobs are in Redis (so every gateway sees every job's events)."""
    size, replay = settings.events.queue_size, settings.events.replay_size
    if settings.jobs.backend.startswith(("redis://", "rediss://", "unix://")):
        from modelwire.events.redis import RedisEventBus
        from modelwire.jobs.redis import RedisTarget

        return RedisEventBus(RedisTarget.parse(settings.jobs.backend), queue_size=size, replay_size=replay)
    return LocalEventBus(queue_size=size, replay_size=replay)


def _model_event(handle: Any) -> dict[str, Any]:
    return {"name": handle.name, "version": handle.version, "ready": handle.ready}


def _build_jobs(services: Services) -> JobManager:
    from modelwire.jobs.store import open_store
    from modelwire.jobs.training import Trainer
    from modelwire.jobs.webhooks import WebhookDispatcher
    from modelwire.protocols.webhooks import HttpxWebhookPoster

    settings = services.settings
    jobs = settings.jobs
    store = open_store(settings)
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
    trainer = Trainer(settings.model_repository, services.registry, services.register_version)
    return JobManager(jobs, store, services.registry, services.dataplane, services.events, webhooks, trainer)
