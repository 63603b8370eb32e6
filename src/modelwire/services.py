"""The services every protocol adapter shares, built once by the composition root (``server.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelwire.core.dataplane import DataPlane
from modelwire.events.bus import EventBus, LocalEventBus
from modelwire.events.publishers import MetricsPublisher
from modelwire.model.base import Model
from modelwire.model.registry import ModelRegistry, build_models
from modelwire.observability.metrics import Metrics
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
        metrics = Metrics()
        registry = ModelRegistry()
        specs = {spec.name: spec for spec in settings.effective_models()}
        for model in models if models is not None else build_models(settings, progress=progress):
            spec = specs.get(model.name)
            batching = spec.batching if spec is not None and spec.batching is not None else settings.batching
            registry.add(model, batching, metrics.batch_size.labels(model.name).observe)
        bus = events or LocalEventBus(
            queue_size=settings.events.queue_size, replay_size=settings.events.replay_size
        )
        return cls(settings, registry, DataPlane(registry, settings.limits, metrics), metrics, bus)

    async def start(self) -> None:
        """Load every model (a model that fails to load stops the start with its error), start publishing."""
        await self.events.start()
        await self.registry.load_all()
        for handle in self.registry.handles():
            self.metrics.model_ready.labels(handle.name, handle.version).set(1)
            await self.events.publish("models", "model.loaded", _model_event(handle))
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

    async def stop(self) -> None:
        """Refuse new work and unload models (after the listeners drained)."""
        await self.begin_shutdown()
        self.dataplane.stop_accepting()
        for handle in self.registry.handles():
            self.metrics.model_ready.labels(handle.name, handle.version).set(0)
        await self.registry.unload_all()

    def _gauges(self) -> dict[str, Any]:
        return {
            "inflight": self.dataplane.inflight,
            "subscribers": self.events.subscriber_count,
            "models": [
                {"name": h.name, "version": h.version, "ready": h.ready} for h in self.registry.handles()
            ],
        }


def _model_event(handle: Any) -> dict[str, Any]:
    return {"name": handle.name, "version": handle.version, "ready": handle.ready}
