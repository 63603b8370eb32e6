"""Feature events from a broker into the online store: at-least-once, acknowledged after the store write.

How it works. A reader task moves the broker's deliveries (``backends/queue.py``: at most ``prefetch``
unacknowledged at once, the broker's own bound, so a slow store holds the broker back) into a local queue;
the writer takes what is waiting there (at least one, at most ``batch``), validates each event against the
view, writes the valid ones in ONE store call, and only then acknowledges them. Each delivery ends in one of:

- **written**: part of a batch the store accepted (applied, or skipped as older than what is stored:
  both are done), then acknowledged;
- **dead-lettered**: not JSON, not an object of the view's shape (the reason names the field), or
  delivered more than ``max_deliveries`` times: published to the dead-letter destination with the
  reason, then acknowledged;
- **given back**: the store failed: not acknowledged but returned to the broker, which delivers it again.

A crash (SIGKILL) between the write and the acknowledgement redelivers events already written: the store's
last-write-wins by event time makes the replay change nothing, so the store ends as if each event came once.
An event without ``event_timestamp`` takes its arrival time, so a replay of it is written again as a newer
value: producers that may replay should stamp their events (docs/features.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from modelwire.backends.queue import Delivery, QueueBroker
from modelwire.errors import ModelwireError
from modelwire.features.rows import Row, parse_row
from modelwire.features.service import FeatureService
from modelwire.features.views import FeatureView

__all__ = ["FeatureIngestor"]

logger = logging.getLogger("modelwire.features")
OUTCOMES = ("written", "dead_lettered", "given_back")


class FeatureIngestor:
    """Consumes one view's ``source`` through ``broker`` into ``features``. ``start`` connects; ``stop``
    drains (stop fetching, write and acknowledge what was taken, close)."""

    def __init__(
        self,
        features: FeatureService,
        view: FeatureView,
        broker: QueueBroker,
        *,
        fields: Mapping[str, str] | None = None,
        max_deliveries: int = 5,
        batch: int = 256,
        count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.features = features
        self.view = view
        self.broker = broker
        self.fields = dict(fields or {})
        self.max_deliveries = max_deliveries
        self.batch = batch
        self.count = count or (lambda outcome, n: None)
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._waiting: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.broker.connect()
        self._tasks = [
            asyncio.create_task(self._read(), name=f"features-read-{self.view.name}"),
            asyncio.create_task(self._write(), name=f"features-write-{self.view.name}"),
        ]
        logger.info("feature view %s: consuming %s", self.view.name, self.broker.display)

    async def stop(self, grace_s: float = 10.0) -> None:
        self.broker.stop_fetching()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.broker.close()

    async def _read(self) -> None:
        try:
            async for delivery in self.broker.deliveries():
                await self._waiting.put(delivery)
        finally:
            await self._waiting.put(None)

    async def _write(self) -> None:
        while True:
            first = await self._waiting.get()
            if first is None:
                return
            taken = [first]
            while len(taken) < self.batch and not self._waiting.empty():
                more = self._waiting.get_nowait()
                if more is None:
                    await self._handle(taken)
                    return
                taken.append(more)
            await self._handle(taken)

    async def _handle(self, taken: list[Delivery]) -> None:
        now = time.time()
        rows: list[Row] = []
        good: list[Delivery] = []
        for delivery in taken:
            if delivery.deliveries > self.max_deliveries:
                await self._dead_letter(delivery, f"delivered {delivery.deliveries} times (max_deliveries)")
                continue
            try:
                raw: Any = msgspec.json.decode(delivery.body)
                rows.append(parse_row(self.view, raw, now, "$", self.fields))
            except msgspec.DecodeError as exc:
                await self._dead_letter(delivery, f"not JSON: {exc}")
                continue
            except ModelwireError as exc:
                await self._dead_letter(delivery, exc.message)
                continue
            good.append(delivery)
        if not good:
            return
        try:
            await self.features.write(self.view, rows)
        except Exception as exc:  # noqa: BLE001 - the store failed: the broker delivers them again
            logger.warning("feature view %s: store write failed (%s); events given back", self.view.name, exc)
            for delivery in good:
                with contextlib.suppress(Exception):
                    await self.broker.retry(delivery)
            self._counted("given_back", len(good))
            return
        acks = await asyncio.gather(*(self.broker.ack(d) for d in good), return_exceptions=True)  # together
        failed = [a for a in acks if isinstance(a, BaseException)]
        if failed:  # written but not acknowledged: the broker delivers them again, and they are skipped
            logger.warning(
                "feature view %s: %d acknowledgements failed (%s)", self.view.name, len(failed), failed[0]
            )
        self._counted("written", len(good))

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        logger.info("feature view %s: dead-lettered an event: %s", self.view.name, reason)
        try:
            await self.broker.dead_letter(delivery, reason)
            await self.broker.ack(delivery)
        except Exception as exc:  # noqa: BLE001 - the broker failed: unacknowledged, it comes again
            logger.warning("feature view %s: dead-lettering failed (%s)", self.view.name, exc)
            return
        self._counted("dead_lettered", 1)

    def _counted(self, outcome: str, n: int) -> None:
        self.counts[outcome] += n
        self.count(outcome, n)
