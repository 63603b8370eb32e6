"""What a process does with the job events of other processes, when jobs are in Redis.

Every gateway and worker receives every ``jobs/*`` event (``backends/redis/events.py``). Two of them
concern this process even when another one ran the job:

- ``job.queued``: a job was submitted (or re-queued) elsewhere; wake this process's job workers now
  rather than at their next poll.
- ``job.succeeded`` of a training job: the new version is in the model repository the worker wrote to; if
  this process's repository has it too (the same data dir, or a shared volume), load and serve it here,
  so ``/v1/models/{name}/versions/{v}/predict`` answers on every gateway, not only in the worker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from modelwire.events.bus import Event

if TYPE_CHECKING:
    from modelwire.app.services import Services

__all__ = ["adopt_version", "follow_remote_jobs"]

logger = logging.getLogger("modelwire.jobs")


def follow_remote_jobs(services: Services) -> None:
    """Listen for the job events above, on an event bus that carries other processes' events."""
    if not services.events.shared:
        return
    wakeup = services.jobs.wakeup
    pending: set[asyncio.Task[None]] = set()

    def on_event(event: Event) -> None:
        if event.type == "job.queued":
            wakeup.set()
        elif event.type == "job.succeeded" and event.data.get("kind") == "train":
            result = event.data.get("result") or {}
            version = result.get("version")
            if version is not None:
                # the process that trained it judged it: follow its verdict
                mode = "always" if result.get("promoted", True) else "never"
                adopt = adopt_version(services, str(event.data["model"]), str(version), mode=mode)
                task = asyncio.create_task(adopt)
                pending.add(task)
                task.add_done_callback(pending.discard)

    services.events.add_remote_listener(on_event)


async def adopt_version(services: Services, name: str, version: str, *, mode: str | None = None) -> None:
    """Serve ``name`` ``version``, trained by another process, if this model repository has it."""
    if services.closing.is_set() or services.versions.has(name, version):
        return  # trained here (the trainer registered it), or already adopted
    trainer = services.jobs.trainer
    try:
        if not trainer.has_version(name, version):
            logger.warning(
                "model %s version %s was trained by another process into a repository this one does not "
                "share (%s); it is served there, and here after a restart with that repository",
                name,
                version,
                trainer.repository.root,
            )
            return
        await services.versions.register(trainer.model_version(name, version), mode=mode)
        logger.info("serving model %s version %s, trained by another process", name, version)
    except Exception:
        logger.exception("loading model %s version %s trained by another process failed", name, version)
