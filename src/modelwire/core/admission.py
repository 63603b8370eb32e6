"""Per-model admission: at most N requests of a model run at once, at most M wait, the rest are shed.

How it works. Each model name has a ``ModelSlots``: a counter of running requests and a FIFO of waiters.
Under the limit (the common case) entering is a comparison and an increment, nothing awaited. At the limit
a request waits in the FIFO, unless the FIFO holds ``max_queued`` already: then it fails at once with
``OverloadedError`` (503 with ``Retry-After``; gRPC UNAVAILABLE), because a queue past that bound only adds
latency to requests that will time out anyway. Leaving hands the slot straight to the first waiter (the
count does not move), so a late arrival cannot overtake the queue. A waiter cancelled (its deadline or its
client gone) after it was handed a slot passes it on, so no slot is ever lost.

Why per model, on top of ``limits.max_inflight``: one slow model must not take every in-flight slot of the
process and starve the others. Requests a model takes in one batch count one each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from modelwire.errors import OverloadedError

__all__ = ["Admission", "ModelSlots"]

RETRY_AFTER_S = 1.0


class ModelSlots:
    """The running count and waiting line of one model."""

    __slots__ = ("max_queued", "max_running", "model", "running", "waiters")

    def __init__(self, model: str, max_running: int, max_queued: int) -> None:
        self.model = model
        self.max_running = max_running
        self.max_queued = max_queued
        self.running = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody waits (the fast path: nothing awaited)."""
        if self.running < self.max_running and not self.waiters:
            self.running += 1
            return True
        return False

    async def enter(self) -> None:
        """Take a slot, waiting in line for one; raise ``OverloadedError`` when the line is full."""
        if self.try_enter():
            return
        if len(self.waiters) >= self.max_queued:
            raise OverloadedError(
                f"model {self.model!r} has {self.running} requests running and {len(self.waiters)} "
                "waiting, its limit (limits.max_concurrent_per_model, limits.max_queued_per_model); "
                "retry later or spread the load",
                retry_after_s=RETRY_AFTER_S,
                details={"model": self.model},
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a slot just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # a leave() may have skipped it already
                    self.waiters.remove(waiter)
            raise

    def leave(self) -> None:
        """Give the slot back: to the first live waiter, or to the pool."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1


class Admission:
    """``ModelSlots`` by model name, made on first use (names are checked by the registry first)."""

    def __init__(self, max_running: int, max_queued: int) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self._slots: dict[str, ModelSlots] = {}

    def slots(self, model: str) -> ModelSlots:
        slots = self._slots.get(model)
        if slots is None:
            slots = self._slots[model] = ModelSlots(model, self.max_running, self.max_queued)
        return slots

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """``{model: (running, waiting)}``."""
        return {name: (s.running, len(s.waiters)) for name, s in self._slots.items()}
