"""``Facades``: what a protocol adapter is given. The core's façades and its own settings, nothing else.

An adapter never sees the process's container (``app/services.py``) or the model registry: it parses,
calls the ``DataPlane`` (inference, models, health), the jobs façade or the event bus, and renders.
``app/`` passes its ``Services``, which has these attributes; the type says what adapters may use.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from modelwire.core.admin import ModelAdmin
from modelwire.core.dataplane import DataPlane
from modelwire.events.bus import EventBus
from modelwire.features.service import FeatureService
from modelwire.jobs.manager import JobManager
from modelwire.monitoring.service import MonitoringService
from modelwire.observability.metrics import Metrics
from modelwire.security.policy import SecurityPolicy
from modelwire.settings import Settings

__all__ = ["Facades"]


class Facades(Protocol):
    """The parts of a running process an adapter may use (read-only)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def dataplane(self) -> DataPlane: ...
    @property
    def jobs(self) -> JobManager: ...
    @property
    def admin(self) -> ModelAdmin | None:
        """Model management (``core/admin.py``); every call checks ``models:admin`` itself."""
        ...

    @property
    def events(self) -> EventBus: ...
    @property
    def features(self) -> FeatureService: ...
    @property
    def security(self) -> SecurityPolicy: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def monitoring(self) -> MonitoringService: ...
    @property
    def closing(self) -> asyncio.Event:
        """Set when the process begins to stop: long-lived streams finish and close."""
        ...
