"""``ModelVersions``: put a model version that appeared at run time into service, and say so.

A training job's result (``jobs/training.py``) and a version another process trained (``follow.py``)
both come here: the version is loaded off the event loop, added to the registry (the default version
switches to it once it can serve), marked ready in the metrics, and announced on the ``models`` topic.
"""

from __future__ import annotations

from typing import Any

from modelwire.core.admin import ModelAdmin
from modelwire.events.bus import EventBus
from modelwire.model.base import Model
from modelwire.model.gate import Verdict
from modelwire.model.registry import ModelHandle, ModelRegistry
from modelwire.observability.metrics import Metrics
from modelwire.settings import BatchingSettings, Settings

__all__ = ["ModelVersions", "model_event"]


def model_event(handle: ModelHandle) -> dict[str, Any]:
    """The payload of ``model.*`` events."""
    return {"name": handle.name, "version": handle.version, "ready": handle.ready}


def batching_for(settings: Settings, name: str) -> BatchingSettings:
    """The model's own batching settings, or the server's."""
    spec = next((s for s in settings.effective_models() if s.name == name), None)
    return spec.batching if spec is not None and spec.batching is not None else settings.batching


class ModelVersions:
    """Adds loaded versions to a live registry (see the module docstring)."""

    def __init__(
        self, settings: Settings, registry: ModelRegistry, metrics: Metrics, events: EventBus
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._events = events
        self.admin: ModelAdmin | None = None
        """Set by the builder: registering goes through the admin façade (the gate, the events)."""

    def has(self, name: str, version: str) -> bool:
        return version in self._registry.versions(name)

    async def register(self, model: Model, *, mode: str | None = None, by: str = "system") -> Verdict | None:
        """Load ``model`` (a new version of a served model) and serve it; the promotion gate decides
        whether it becomes the default (``core/admin.py``). Returns the verdict."""
        if self.admin is not None:
            return await self.admin.register(model, mode=mode, by=by)
        handle = await self._registry.add_loaded(
            model,
            batching_for(self._settings, model.name),
            self._metrics.batch_size.labels(model.name).observe,
        )
        self._metrics.model_ready.labels(handle.name, handle.version).set(1)
        await self._events.publish("models", "model.registered", model_event(handle))
        await self._events.publish("models", "model.loaded", model_event(handle))
        return None
