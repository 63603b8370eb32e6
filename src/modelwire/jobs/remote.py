"""What a process does with the job events of other processes, when jobs are in Redis.

Every gateway and worker receives every ``jobs/*`` event (``events/redis.py``). Two of them concern this
process even when another one ran the job:

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
    from modelwire.services import Services

__all__ = ["adopt_version", "follow_remote_jobs"]

logger = logging.getLogger("modelwire.jobs")


def follow_remote_jobs(services: Services) -> None:
    """Listen, on a Redis event bus, for the job events above (no-op on the local bus)."""
    from modelwire.events.redis import RedisEventBus

    if not isinstance(services.events, RedisEventBus):
        return
    wakeup = services.jobs.wakeup
    pending: set[asyncio.Task[None]] = set()

    def on_event(event: Event) -> None:
        if event.type == "job.queued":
            wakeup.set()
        elif event.type == "job.succeeded" and event.data.get("kind") == "train":
            version = (event.data.get("result") or {}).get("version")
            if version is not None:
                task = asyncio.create_task(adopt_version(services, str(event.data["model"]), str(version)))
                pending.add(task)
                task.add_done_callback(pending.discard)

    services.events.listeners.append(on_event)


async def adopt_version(services: Services, name: str, version: str) -> None:
    """Serve ``name`` ``version``, trained by another process, if this model repository has it."""
    from modelwire.model.sentiment import SentimentModel

    if services.closing.is_set() or version in services.registry.versions(name):
        return  # trained here (the trainer registered it), or already adopted
    repository = services.jobs.trainer.repository
    try:
        if version not in repository.versions(name):
            logger.warning(
                "model %s version %s was trained by another process into a repository this one does not "
                "share (%s); it is served there, and here after a restart with that repository",
                name,
                version,
                repository.root,
            )
            return
        served = services.registry.get(name, require_ready=False).model
        await services.register_version(
            SentimentModel(name, version, repository=repository, **served.options)
        )
        logger.info("serving model %s version %s, trained by another process", name, version)
    except Exception:
        logger.exception("loading model %s version %s trained by another process failed", name, version)
