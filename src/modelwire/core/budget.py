"""``MemoryBudget``: the loaded models stay within ``models.memory_budget`` (docs/admin.md, "Memory budget").

Every load with a budget set goes through ``load`` here. A version is accounted by its measured size
(``model/footprint.py``: the deep-size growth of its ``load``, or what the model reports). A version that
was loaded before is known in advance, so room is made **before** it loads; a first load is measured
after it and room is made then. Making room unloads, least recently used first, versions that are ready,
idle (no call in flight) and not pinned; each is a ``model.unloaded`` event with ``"by":
"memory_budget"`` and the reason. When not enough can be freed (the rest is pinned or busy) a reload is
refused with ``UnavailableError`` (503 + Retry-After: busy versions soon become idle) and a first load
stays loaded, over the budget, with a warning.

A call to a version the budget unloaded loads it again (``reload``, the ``DataPlane``'s ``reloader``: one
load for all the calls waiting, under the model's admin lock): the call waits for the load within its
deadline and gets 503 + Retry-After when the load does not finish in time (the load goes on, so a retry
finds it ready) or cannot make room. Pinned models (``pinned = true`` on the model, or
``PUT /v1/admin/models/{name}/pin``) are never unloaded by the budget.

Room is made and reserved under one lock (two loads never both count the same free room), and the load
itself runs outside it, so a slow load never holds up another; an eviction takes no model's lock, so it
never waits for an admin action and cannot deadlock with one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from modelwire.errors import ModelNotReadyError, UnavailableError
from modelwire.model.footprint import deep_size, measured_size
from modelwire.model.registry import ModelHandle, ModelRegistry

__all__ = ["MemoryBudget"]

logger = logging.getLogger("modelwire.model")

Publish = Callable[[str, Mapping[str, Any]], Awaitable[Any]]
Key = tuple[str, str]


class MemoryBudget:
    """Sizes of the loaded versions, and the unloading that keeps them within ``limit`` bytes."""

    def __init__(
        self,
        registry: ModelRegistry,
        limit: int | None,
        publish: Publish,
        *,
        pinned: Callable[[str], bool],
        on_change: Callable[[ModelHandle], None] | None = None,
        lock: Callable[[str], asyncio.Lock] | None = None,
    ) -> None:
        self.registry = registry
        self.limit = limit
        """Bytes; ``None``: no budget (nothing is measured or unloaded)."""
        self._publish = publish
        self._pinned = pinned
        self._on_change = on_change or (lambda handle: None)
        self.sizes: dict[Key, int] = {}
        """The measured size of every version loaded once (kept after an unload: a reload is known)."""
        self.evicted: set[Key] = set()
        """Versions the budget unloaded (a call to one loads it again)."""
        self._lock = asyncio.Lock()
        self._reserved: dict[Key, int] = {}
        """Sizes of the versions loading now whose size is known (counted as used meanwhile)."""
        locks: dict[str, asyncio.Lock] = {}
        self._model_lock = lock or (lambda name: locks.setdefault(name, asyncio.Lock()))
        """Each model's lock (``ModelAdmin``'s: a reload never interleaves with an admin change)."""
        self._reloads: dict[Key, asyncio.Task[None]] = {}

    @property
    def enabled(self) -> bool:
        return self.limit is not None

    def used(self) -> int:
        """Bytes the loaded versions take, and those loading whose size is known (a first load counts
        once measured)."""
        loaded = sum(
            self.sizes.get((h.name, h.version), 0) for h in self.registry.handles() if h.state == "ready"
        )
        return loaded + sum(self._reserved.values())

    def size(self, handle: ModelHandle) -> int | None:
        return self.sizes.get((handle.name, handle.version))

    async def load(self, handle: ModelHandle, *, reload: bool = False) -> None:
        """Load ``handle`` within the budget (``registry.load`` without one). ``reload``: a call is
        waiting (refused with 503 when no room can be made, instead of going over the budget)."""
        if self.limit is None:
            await self.registry.load(handle)
            return
        key = (handle.name, handle.version)
        async with self._lock:  # room is made, and reserved, under the lock; the load runs outside it
            known = self.sizes.get(key)
            if known is not None:
                if not await self._make_room(known, keep=handle) and reload:
                    raise UnavailableError(
                        f"model {handle.name!r} version {handle.version} needs {known} bytes and the memory "
                        f"budget ({self.limit} bytes) cannot make room now: the loaded models are pinned "
                        "or busy",
                        retry_after_s=1.0,
                    )
                self._reserved[key] = known
        try:
            loop = asyncio.get_running_loop()
            before = await loop.run_in_executor(None, deep_size, handle.model)
            await self.registry.load(handle)
            size = await loop.run_in_executor(None, measured_size, handle.model, before)
        finally:
            self._reserved.pop(key, None)
        self.sizes[key] = size
        self.evicted.discard(key)
        self._on_change(handle)
        if known is None or size > known:  # measured only now: make room after the fact
            async with self._lock:
                fits = await self._make_room(0, keep=handle)
            if not fits:
                logger.warning(
                    "model %s version %s (%d bytes) loaded over the memory budget of %d bytes: the other "
                    "loaded models are pinned or busy",
                    handle.name,
                    handle.version,
                    size,
                    self.limit,
                )

    async def reload(self, handle: ModelHandle) -> None:
        """A call wants a version the memory budget unloaded: load it again (one load for every call
        waiting; ``UnavailableError`` when no room can be made). The caller bounds the wait by its
        deadline; the load goes on after a caller gave up, so a retry finds it ready."""
        key = (handle.name, handle.version)
        task = self._reloads.get(key)
        if task is None:
            task = asyncio.create_task(self._reload(handle))
            self._reloads[key] = task
            task.add_done_callback(lambda _t: self._reloads.pop(key, None))
            task.add_done_callback(_retrieved)
        await asyncio.shield(task)

    async def _reload(self, handle: ModelHandle) -> None:
        async with self._model_lock(handle.name):  # no admin change to it meanwhile
            if handle.ready:
                return
            if handle.state != "unavailable" or (handle.name, handle.version) not in self.evicted:
                raise UnavailableError(
                    f"model {handle.name!r} version {handle.version} is {handle.state}", retry_after_s=1.0
                )
            try:
                await self.load(handle, reload=True)
            except UnavailableError:  # no room
                raise
            except Exception as exc:  # the load's own failure: the version is failed, with its reason
                raise ModelNotReadyError(
                    f"model {handle.name!r} version {handle.version} failed to load again: {handle.reason}",
                    retry_after_s=1.0,
                ) from exc
        await self._publish(
            "model.loaded",
            {
                "name": handle.name,
                "version": handle.version,
                "by": "memory_budget",
                "reason": "a call asked for it after the memory budget unloaded it",
            },
        )

    async def _make_room(self, needed: int, *, keep: ModelHandle) -> bool:
        """Unload least recently used idle unpinned versions until ``needed`` more bytes fit. Whether
        they fit now."""
        assert self.limit is not None
        while self.used() + needed > self.limit:
            victims = [
                h
                for h in self.registry.handles()
                if h is not keep
                and h.ready
                and h.inflight == 0
                and not self._pinned(h.name)
                and self.sizes.get((h.name, h.version), 0) > 0  # unloading it would free something
            ]
            if not victims:
                return False
            victim = min(victims, key=lambda h: h.last_used)
            await self._evict(victim, needed)
        return True

    async def _evict(self, handle: ModelHandle, needed: int) -> None:
        size = self.sizes.get((handle.name, handle.version), 0)
        reason = (
            f"memory budget: {self.used()} of {self.limit} bytes used"
            + (f" and {needed} more needed" if needed else " after a load")
            + f"; the least recently used idle model ({size} bytes) is unloaded"
        )
        logger.info("model %s version %s: %s", handle.name, handle.version, reason)
        self.evicted.add((handle.name, handle.version))
        await self.registry.unload(handle)
        handle.reason = "unloaded by the memory budget; a call loads it again"
        self._on_change(handle)
        await self._publish(
            "model.unloaded",
            {
                "name": handle.name,
                "version": handle.version,
                "by": "memory_budget",
                "reason": reason,
                "size_bytes": size,
            },
        )

    def forget(self, name: str, version: str) -> None:
        """A version left the registry (deleted, retired)."""
        self.sizes.pop((name, version), None)
        self.evicted.discard((name, version))

    def state(self) -> dict[str, Any]:
        """What ``GET /v1/admin/memory`` answers: the budget, what is used, and every version."""
        now_wall, now = time.time(), time.monotonic()
        rows = []
        for handle in self.registry.handles():
            rows.append(
                {
                    "name": handle.name,
                    "version": handle.version,
                    "state": handle.state,
                    "size_bytes": self.size(handle),
                    "last_used": now_wall - (now - handle.last_used) if handle.last_used else None,
                    "pinned": self._pinned(handle.name),
                    "inflight": handle.inflight,
                    "unloaded_by_budget": (handle.name, handle.version) in self.evicted,
                }
            )
        return {"budget_bytes": self.limit, "used_bytes": self.used(), "models": rows}


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:  # the callers got it; no "never retrieved"
        logger.debug("model reload failed: %r", task.exception())
