"""The job runner: N worker tasks inside ``modelwire serve`` that take jobs from the store and run them.

How it works. Each worker loops: ``claim`` a job under a lease (or sleep until woken by a submit, or a
poll interval passes), run it, repeat. While a job runs a heartbeat renews the lease every third of
``lease_s``; when the renewal says the job was cancelled or the lease was lost, the work is cancelled at
once (a running batch is abandoned; its rows are simply not written).

A prediction job runs in batches of ``batch_size`` rows *without a result* (``pending_rows``), through
``DataPlane.infer`` with ``CallContext("jobs")``: the same batching path as every request, no second
inference path. Each row's output or error is written in one transaction per batch (``write_results``,
which replaces, never duplicates), so a worker that dies loses at most the batch in flight, and whoever
claims the job next resumes from the first row without a result. A row the model rejects gets its error
as its result; the job goes on. A batch-wide input or model error (one item over a limit, one the model
raised on) is retried row by row so only that row fails; a batch-wide transient error (overload,
deadline, shutdown) is retried a few times and then ends the attempt, which re-queues the job while
attempts are left and fails it otherwise.

Events on ``jobs/<id>``: ``job.running``, ``job.progress`` (at most every ``progress_interval_ms``),
``job.succeeded`` / ``job.failed``, ``job.queued`` when an attempt is re-queued. Final states go to the
webhook dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from modelwire.core.dataplane import CallContext, DataPlane
from modelwire.errors import (
    ErrorCode,
    InternalError,
    InvalidInputError,
    ModelError,
    ModelwireError,
    UnavailableError,
)
from modelwire.events.bus import EventBus
from modelwire.jobs.states import JobStatus
from modelwire.jobs.store import Job, JobStore, ResultRow, decode_row
from modelwire.jobs.training import Trainer, TrainingStoppedError
from modelwire.jobs.webhooks import WebhookDispatcher
from modelwire.observability.tracing import span
from modelwire.settings import JobsSettings

__all__ = ["JobRunner", "JobStoppedError", "claim_backoff_s", "publish_job"]

logger = logging.getLogger("modelwire.jobs")

_POLL_S = 1.0
_CLAIM_BACKOFF_MAX_S = 30.0
_TRANSIENT = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.DEADLINE_EXCEEDED, ErrorCode.RESOURCE_EXHAUSTED})
_PERMANENT = frozenset({ErrorCode.NOT_FOUND, ErrorCode.INVALID_ARGUMENT, ErrorCode.PAYLOAD_TOO_LARGE})
_BATCH_RETRIES = 3


def claim_backoff_s(failures: int) -> float:
    """How long a worker waits after its ``failures``-th failed claim in a row: 1, 2, 4, ... 30 s."""
    return min(_POLL_S * (1 << min(max(failures - 1, 0), 16)), _CLAIM_BACKOFF_MAX_S)


class JobStoppedError(Exception):
    """The job was cancelled, or another worker holds it now: stop without touching it."""


async def publish_job(events: EventBus, type_: str, data: dict[str, Any], owner: str | None) -> None:
    """Publish on ``jobs/<id>`` for ``owner``'s subscriptions; a failing bus never fails the job."""
    try:
        await events.publish(f"jobs/{data['id']}", type_, data, owner=owner)
    except Exception:
        logger.exception("publishing %s for job %s failed", type_, data.get("id"))


def _error_body(exc: ModelwireError) -> bytes:
    return msgspec.json.encode(exc.to_dict())


class JobRunner:
    """``settings.workers`` concurrent job workers over one store."""

    def __init__(
        self,
        store: JobStore,
        dataplane: DataPlane,
        events: EventBus,
        settings: JobsSettings,
        webhooks: WebhookDispatcher,
        trainer: Trainer,
        wakeup: asyncio.Event,
    ) -> None:
        self.store = store
        self.dataplane = dataplane
        self.events = events
        self.settings = settings
        self.webhooks = webhooks
        self.trainer = trainer
        self.wakeup = wakeup
        self.batch_size = min(settings.batch_size, dataplane.limits.max_batch_items)
        self._prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for n in range(self.settings.workers):
            self._workers.append(
                asyncio.create_task(self._worker(f"{self._prefix}:{n}"), name=f"job-worker-{n}")
            )

    async def stop(self) -> None:
        """Cancel the workers; each gives its running job back to the queue (the attempt not counted)."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    async def _publish(self, job: Job, type_: str, data: dict[str, Any]) -> None:
        await publish_job(self.events, type_, data, job.owner)

    # -- the worker loop ----------------------------------------------------------------------------

    def leases(self, lease_owner: str | None) -> bool:
        """Whether ``lease_owner`` (a job's ``lease_owner``) is one of this process's workers."""
        return (lease_owner or "").startswith(self._prefix + ":")

    async def _worker(self, owner: str) -> None:
        failures = 0
        while True:
            if _cancelling():
                raise asyncio.CancelledError  # a cancel that landed while a job was ending
            try:
                job = await self.store.claim(owner, self.settings.lease_s)
            except ModelwireError as exc:
                # A store that fails (disk full, gone) is retried with a growing wait, and logged on the
                # first failure and then once per longest wait, not on every poll.
                failures += 1
                delay = claim_backoff_s(failures)
                if failures == 1 or delay == _CLAIM_BACKOFF_MAX_S:
                    logger.warning(
                        "%s: claiming a job failed (%s); retrying in %g s (%d failures in a row)",
                        owner.rsplit(":", 1)[-1],
                        exc.message,
                        delay,
                        failures,
                    )
                await asyncio.sleep(delay)
                continue
            if failures:
                logger.info("claiming jobs works again after %d failures", failures)
                failures = 0
            if job is None:
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_POLL_S):
                        await self.wakeup.wait()
                continue
            try:
                await self._run(job, owner)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.release(job.id, owner))
                raise
            except Exception:
                logger.exception(
                    "job %s: the worker failed; its lease will expire and it will be retried", job.id
                )

    async def _run(self, job: Job, owner: str) -> None:
        if job.attempts > job.max_attempts:
            # Its lease expired on the last attempt: the worker running it died (or hung) every time.
            error = (
                job.error
                or UnavailableError(
                    f"the worker running this job stopped {job.max_attempts} times (lease expired)"
                ).to_dict()
            )
            await self._ended(await self.store.fail(job.id, owner, error, permanent=True))
            return
        await self._publish(job, "job.running", job.to_event())
        stop = threading.Event()
        work = asyncio.create_task(self._work(job, owner, stop))
        heartbeat = asyncio.create_task(self._heartbeat(job, owner, work, stop))
        try:
            result = await work
        except (JobStoppedError, asyncio.CancelledError, TrainingStoppedError):
            if not stop.is_set() and (work.cancelled() or _cancelling()):
                # The worker itself is being cancelled (shutdown). ``work`` may have ended on its own in
                # the same turn (a user's cancel seen, or its last write refused): the worker's cancel was
                # then spent on ``work`` and must not be swallowed here, or ``stop()`` waits forever.
                raise asyncio.CancelledError from None
            logger.info("job %s stopped (cancelled, or its lease moved to another worker)", job.id)
            return
        except ModelwireError as exc:
            await self._failed(job, owner, exc)
        except Exception as exc:
            err = InternalError("the job failed unexpectedly")
            logger.error("job %s failed [error_id=%s]", job.id, err.error_id, exc_info=exc)
            await self._failed(job, owner, err)
        else:
            await self._ended(await self.store.finish(job.id, owner, result))
        finally:
            stop.set()
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)

    async def _heartbeat(self, job: Job, owner: str, work: asyncio.Task[Any], stop: threading.Event) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                status = await self.store.renew(job.id, owner, self.settings.lease_s)
            except ModelwireError as exc:
                logger.warning("job %s: renewing the lease failed (%s)", job.id, exc.message)
                continue
            if status is not JobStatus.RUNNING:
                stop.set()
                work.cancel()
                return

    async def _failed(self, job: Job, owner: str, exc: ModelwireError) -> None:
        permanent = exc.code in _PERMANENT
        await self._ended(await self.store.fail(job.id, owner, exc.to_dict(), permanent=permanent))

    async def _ended(self, job: Job | None) -> None:
        if job is None:
            return  # another worker or the user acted first
        await self._publish(job, f"job.{job.status.value}", job.to_event())
        if job.status.final:
            self.webhooks.deliver_later(job)
        else:
            self.wakeup.set()

    # -- the work -----------------------------------------------------------------------------------

    async def _work(self, job: Job, owner: str, stop: threading.Event) -> dict[str, Any] | None:
        if job.kind == "train":

            async def on_stage(stage: str, fraction: float) -> None:
                info = {"stage": stage, "fraction": round(fraction, 3)}
                if await self.store.set_stage(job.id, owner, info):
                    data = {
                        "id": job.id,
                        "status": "running",
                        "progress": {"done": 0, "total": job.total, **info},
                    }
                    await self._publish(job, "job.progress", data)

            return await self.trainer.run(job, self.store, on_stage, stop)
        await self._predict(job, owner)
        return None

    async def _predict(self, job: Job, owner: str) -> None:
        # A three-stage pipeline: while the model runs batch k, the store writes batch k-1's results and
        # reads batch k+1's rows, so store round trips overlap inference instead of adding to it.
        interval = self.settings.progress_interval_ms / 1000
        last = time.monotonic()
        lease = self.settings.lease_s
        rows = await self.store.pending_rows(job.id, after=-1, limit=self.batch_size)
        writing: asyncio.Task[bool] | None = None
        reading: asyncio.Task[list[tuple[int, bytes]]] | None = None
        try:
            while rows:
                reading = asyncio.ensure_future(
                    self.store.pending_rows(job.id, after=rows[-1][0], limit=self.batch_size)
                )
                attributes = {
                    "modelwire.job.id": job.id,
                    "modelwire.model": job.model,
                    "modelwire.job.rows": len(rows),
                }
                with span("job batch", attributes):
                    results = await self._infer(job, rows)
                if writing is not None and not await writing:
                    raise JobStoppedError(job.id)
                writing = asyncio.ensure_future(self.store.write_results(job.id, owner, results, lease))
                rows = await reading
                reading = None
                if time.monotonic() - last >= interval:
                    last = time.monotonic()
                    if not await writing:  # report what is stored: this batch's rows count
                        raise JobStoppedError(job.id)
                    writing = None
                    await self._progress(job)
            if writing is not None and not await writing:
                raise JobStoppedError(job.id)
            writing = None
        finally:
            for task in (reading, writing):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _progress(self, job: Job) -> None:
        now = await self.store.get(job.id)
        progress = {"done": now.done, "total": now.total, "errors": now.errors}
        await self._publish(job, "job.progress", {"id": job.id, "status": "running", "progress": progress})

    async def _infer(self, job: Job, rows: Sequence[tuple[int, bytes]]) -> list[ResultRow]:
        results: list[ResultRow] = []
        where: list[int] = []
        instances: list[Any] = []
        for index, data in rows:
            value = decode_row(data)
            if isinstance(value, ModelwireError):
                results.append((index, _error_body(value), True))
            else:
                where.append(index)
                instances.append(value)
        if instances:
            outputs = await self._call(job, instances)
            for index, output in zip(where, outputs, strict=True):
                results.append(self._result(index, output))
        results.sort(key=lambda r: r[0])
        return results

    async def _call(self, job: Job, instances: list[Any]) -> list[Any]:
        ctx = CallContext("jobs")
        try:
            outputs = await self._batch(job, instances, ctx)
        except (InvalidInputError, ModelError) as exc:
            outputs = [exc] * len(instances)  # failed as a whole (no batcher to split it): isolate below
        suspects = [i for i, out in enumerate(outputs) if isinstance(out, InvalidInputError | ModelError)]
        if len(instances) > 1 and suspects:
            # One item can fail the whole model call (over max_text_chars, or the model raised on it) and
            # so every row batched with it: run those rows alone so only the guilty one keeps its error.
            for i in suspects:
                outputs[i] = await self._one(job, instances[i], ctx)
            if len(suspects) == len(instances) and all(isinstance(out, ModelError) for out in outputs):
                raise outputs[0]  # every row fails even alone: the model is broken, not the rows
        return outputs

    async def _batch(self, job: Job, instances: list[Any], ctx: CallContext) -> list[Any]:
        for attempt in range(_BATCH_RETRIES + 1):
            try:
                return await self.dataplane.infer(job.model, instances, version=job.version, ctx=ctx)
            except ModelwireError as exc:
                if exc.code not in _TRANSIENT or attempt == _BATCH_RETRIES:
                    raise
                await asyncio.sleep(min(5.0, exc.retry_after_s or 0.2 * 2**attempt))
        raise AssertionError("unreachable")

    async def _one(self, job: Job, item: Any, ctx: CallContext) -> Any:
        try:
            (output,) = await self._batch(job, [item], ctx)
        except (InvalidInputError, ModelError) as exc:
            return exc
        return output

    @staticmethod
    def _result(index: int, output: Any) -> ResultRow:
        if isinstance(output, ModelwireError):
            return (index, _error_body(output), True)
        if isinstance(output, BaseException):
            return (index, _error_body(InternalError("the model failed on this row")), True)
        try:
            return (index, msgspec.json.encode(output), False)
        except (TypeError, msgspec.EncodeError):
            return (index, _error_body(InternalError("the model's output is not JSON-serialisable")), True)


def _cancelling() -> bool:
    """Whether the running task was asked to cancel (the request may have been spent on a task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
