"""What the server itself publishes: the per-second ``metrics`` snapshot, ``models`` and ``server`` events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from modelwire.events.bus import EventBus
from modelwire.observability.live import LiveStats

__all__ = ["MetricsPublisher"]

logger = logging.getLogger("modelwire.events")


class MetricsPublisher:
    """Publish ``LiveStats.snapshot()`` on ``metrics`` every ``interval_s`` (ephemeral: never replayed)."""

    def __init__(self, bus: EventBus, stats: LiveStats, interval_s: float, extra: Any = None) -> None:
        self.bus = bus
        self.stats = stats
        self.interval_s = interval_s
        self._extra = extra
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self.stats.snapshot()  # start the first window now
            self._task = asyncio.create_task(self._run(), name="metrics-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                data = self.stats.snapshot()
                if self._extra is not None:
                    data.update(self._extra())
                await self.bus.publish("metrics", "metrics", data, ephemeral=True)
            except Exception:
                logger.exception("publishing the metrics snapshot failed; trying again next interval")
