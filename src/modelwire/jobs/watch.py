"""Following one job: its current state first, then every change, until it ends. Transport-neutral.

How it works. ``JobWatch`` reads the job (an unknown id fails here, before anything else), subscribes to
``jobs/<id>``, and only then reads the job again: that read is sent first (``job.snapshot``), and since the
subscription already existed, no change after it can be missed. Events that were queued in between and are
older than the snapshot are skipped by ``apply_event``, which also merges the partial ``job.progress``
events (``{"id", "status", "progress"}``) into the last full state, so each update is the whole job.

When no event arrives for ``recheck_s`` the job is read again, so a watcher never waits forever on a job
whose events it cannot see (a worker publishing on another bus, an event lost with a dropped connection).
The iteration ends after a final state, or when the bus closes (server shutdown).

``apply_event`` is pure and shared with the client, which follows the same events over SSE.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelwire.events.bus import EventBus, Subscription
    from modelwire.jobs.manager import JobManager

__all__ = ["FINAL_STATUSES", "SNAPSHOT", "JobUpdate", "JobWatch", "apply_event"]

SNAPSHOT = "job.snapshot"
"""The type of the first update of a watch: the job as it was when the watch began."""
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
RECHECK_S = 5.0

JobUpdate = tuple[str, float, dict[str, Any]]
"""``(event type, Unix time, the whole job as of that event)``."""


def apply_event(current: Mapping[str, Any], type_: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The job after the event ``type_`` carrying ``data``; ``None`` if the event tells nothing new.

    A state event carries the job without what the client sent (``Job.to_event``): it is merged over
    ``current`` (which keeps ``metadata`` and ``callback_url``), and is older when its ``updated_at`` is. A
    ``job.progress`` event carries the progress only: it counts while the job is running and its count
    did not go back.
    """
    if not type_.startswith("job.") or data.get("id") != current.get("id"):
        return None
    if type_ == "job.progress":
        progress = data.get("progress")
        old = current.get("progress") or {}
        if current.get("status") != "running" or not isinstance(progress, Mapping):
            return None
        if _number(progress.get("done")) < _number(old.get("done")):
            return None
        return {**current, "progress": {**old, **progress}}
    if "status" not in data:
        return None
    stamp, seen = _number(data.get("updated_at")), _number(current.get("updated_at"))
    if stamp < seen or (stamp == seen and data.get("status") == current.get("status")):
        return None
    return {**current, **data}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


class JobWatch:
    """The updates of one job (``async for kind, time, job in watch``); ``close()`` ends them from anywhere.

    >>> async for type_, when, job in JobWatch(manager, bus, job_id):     # doctest: +SKIP
    ...     print(type_, job["status"], job["progress"])

    Iteration raises ``JobNotFoundError`` for an unknown job, ``SlowConsumerError`` if the reader fell so
    far behind that the bus dropped it.
    """

    def __init__(
        self, jobs: JobManager, events: EventBus, job_id: str, *, recheck_s: float | None = None
    ) -> None:
        self._jobs = jobs
        self._events = events
        self.job_id = job_id
        self.recheck_s = RECHECK_S if recheck_s is None else recheck_s
        self._sub: Subscription | None = None
        self._closed = False

    def close(self) -> None:
        """Stop: a pending read ends (the iteration finishes), and the subscription is released."""
        self._closed = True
        if self._sub is not None:
            self._sub.close()

    def __aiter__(self) -> AsyncIterator[JobUpdate]:
        return self._updates()

    async def _updates(self) -> AsyncIterator[JobUpdate]:
        jobs, job_id = self._jobs, self.job_id
        await jobs.get(job_id)
        if self._closed:
            return
        sub = self._sub = self._events.subscribe([f"jobs/{job_id}"])
        try:
            current = await jobs.get(job_id)
            yield SNAPSHOT, time.time(), current
            while current["status"] not in FINAL_STATUSES:
                try:
                    async with asyncio.timeout(self.recheck_s):
                        event = await sub.get()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    fresh = await jobs.get(job_id)
                    if fresh != current:
                        changed = fresh["status"] != current["status"]
                        current = fresh
                        yield f"job.{fresh['status']}" if changed else "job.progress", time.time(), current
                    continue
                updated = apply_event(current, event.type, event.data)
                if updated is not None:
                    current = updated
                    yield event.type, event.time, current
        finally:
            sub.close()
