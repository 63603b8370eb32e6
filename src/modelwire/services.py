"""The services every protocol adapter shares, built once by the composition root (``server.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelwire.core.dataplane import DataPlane
from modelwire.model.base import Model
from modelwire.model.registry import ModelRegistry, build_models
from modelwire.observability.metrics import Metrics
from modelwire.settings import Settings

__all__ = ["Services"]


@dataclass(slots=True)
class Services:
    """Settings, model registry, data plane and metrics: what adapters are given, nothing more."""

    settings: Settings
    registry: ModelRegistry
    dataplane: DataPlane
    metrics: Metrics

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        models: list[Model] | None = None,
        progress: Callable[[str, float], None] | None = None,
    ) -> Services:
        """Instantiate models (training the default one if needed) and wire the core. Loads nothing."""
        metrics = Metrics()
        registry = ModelRegistry()
        specs = {spec.name: spec for spec in settings.effective_models()}
        for model in models if models is not None else build_models(settings, progress=progress):
            spec = specs.get(model.name)
            batching = spec.batching if spec is not None and spec.batching is not None else settings.batching
            registry.add(model, batching, metrics.batch_size.labels(model.name).observe)
        return cls(settings, registry, DataPlane(registry, settings.limits, metrics), metrics)

    async def start(self) -> None:
        """Load every model (a model that fails to load stops the start with its error)."""
        await self.registry.load_all()
        for handle in self.registry.handles():
            self.metrics.model_ready.labels(handle.name, handle.version).set(1)

    async def stop(self) -> None:
        self.dataplane.stop_accepting()
        for handle in self.registry.handles():
            self.metrics.model_ready.labels(handle.name, handle.version).set(0)
        await self.registry.unload_all()
