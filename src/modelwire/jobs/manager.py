"""``JobManager``: the jobs façade every transport calls (submit, get, list, results, cancel, retry).

Submit checks what can be checked before anything is stored (the model exists, the callback URL is
allowed, the queue has room), then streams the rows into an ``Upload`` chunk by chunk while hashing them
for ``Idempotency-Key``, and commits: the job is durable when ``submit`` returns. Any failure on the way
(over a limit, a malformed upload, the client gone) aborts the upload, so nothing is half-stored.

It also owns the job runner, the webhook dispatcher and the retention purge, started and stopped with
``start()`` / ``stop()`` by the lifecycle (``app/lifecycle.py``).

Ownership. A job belongs to the principal that submitted it (``current_principal().id``, set by the ASGI
middleware or the gRPC interceptor), and every read or action here checks ``Principal.owns``: another
principal gets the very ``JobNotFoundError`` an unknown id gets, so ids do not leak; the list shows only the
caller's jobs. Anonymous callers (authentication off) and ``models:admin`` see every job. An
Idempotency-Key is scoped to its owner. Job events carry the owner outside their payload, and the event
bus delivers them to their owner's subscriptions only (``events/bus.py``). This is the one place: the
transports (REST, gRPC, WebSocket, SSE) do not check ownership themselves.

Scope of a job's kind. ``submit`` requires the scope ``security.scopes.job_scope`` names for the kind:
``models:admin`` for a training job (it changes the model everyone is served), ``jobs:write`` for a
prediction job, on top of the route's own scope checked at the edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from modelwire.core.dataplane import DataPlane
from modelwire.errors import (
    IdempotencyKeyReusedError,
    InvalidInputError,
    ModelwireError,
    OverloadedError,
    PayloadTooLargeError,
)
from modelwire.events.bus import EventBus
from modelwire.jobs.runner import JobRunner, publish_job
from modelwire.jobs.states import JobStatus
from modelwire.jobs.store import (
    Job,
    JobKind,
    JobPage,
    JobSpec,
    JobStore,
    ResultRow,
    encode_row,
    encode_row_error,
    job_not_found,
)
from modelwire.jobs.training import Trainer, training_row
from modelwire.jobs.uploads import parser_for
from modelwire.jobs.webhooks import WebhookDispatcher, check_callback_url
from modelwire.security.principal import Principal, current_principal
from modelwire.security.scopes import job_scope
from modelwire.settings import JobsSettings

__all__ = ["JobManager", "JobRequest"]

logger = logging.getLogger("modelwire.jobs")

_APPEND_ROWS = 2000  # rows per store write while uploading
DRAFT_TTL_S = 3600.0  # an upload idle this long is abandoned (its rows purged)


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What a client asks for, besides the rows."""

    model: str
    kind: JobKind = "predict"
    version: str | None = None
    callback_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None


class JobManager:
    """Jobs over one ``JobStore``: the API side (submit and friends) and the workers (``start``/``stop``)."""

    def __init__(
        self,
        settings: JobsSettings,
        store: JobStore,
        dataplane: DataPlane,
        events: EventBus,
        webhooks: WebhookDispatcher,
        trainer: Trainer,
    ) -> None:
        self.settings = settings
        self.store = store
        self.dataplane = dataplane
        self.events = events
        self.webhooks = webhooks
        self.trainer = trainer
        self.max_depth = dataplane.limits.max_json_depth
        self.wakeup = asyncio.Event()
        self.runner = JobRunner(store, dataplane, events, settings, webhooks, trainer, self.wakeup)
        self._purger: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        self.runner.start()
        await self.webhooks.start()
        self._purger = asyncio.create_task(self._purge_loop(), name="jobs-purge")

    async def stop(self) -> None:
        """Stop the workers (running jobs are released, to resume at the next start), then the store."""
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await self.runner.stop()
        await self.webhooks.close()
        await self.store.close()

    async def purge(self) -> int:
        """Remove jobs finished longer than ``retention_s`` ago, and abandoned uploads."""
        t = time.time()
        removed = await self.store.purge(
            finished_before=t - self.settings.retention_s, drafts_before=t - DRAFT_TTL_S
        )
        if removed:
            logger.info("removed %d jobs past their retention", removed)
        return removed

    async def _purge_loop(self) -> None:
        interval = min(300.0, max(1.0, self.settings.retention_s / 10))
        while True:
            try:
                await self.purge()
            except Exception:
                logger.exception("purging old jobs failed; trying again later")
            await asyncio.sleep(interval)

    # -- submit -------------------------------------------------------------------------------------

    def read_upload(
        self,
        chunks: AsyncIterable[bytes],
        media_type: str,
        *,
        kind: JobKind = "predict",
        boundary: str | None = None,
    ) -> AsyncIterator[list[Any]]:
        """Rows of a streamed upload (NDJSON, CSV, multipart), refusing it past ``max_upload_bytes`` (413)."""
        parser = parser_for(
            media_type,
            columns=("text", "label") if kind == "train" else ("text",),
            boundary=boundary,
            max_depth=self.max_depth,
        )
        limit = self.settings.max_upload_bytes

        async def rows() -> AsyncIterator[list[Any]]:
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"the upload is over the limit of {limit} bytes")
                if parsed := parser.feed(chunk):
                    yield parsed
            if parsed := parser.close():
                yield parsed

        return rows()

    async def submit(
        self, request: JobRequest, rows: AsyncIterable[Sequence[Any]]
    ) -> tuple[dict[str, Any], bool]:
        """Store a new job; ``(job, True)``, or ``(the existing job, False)`` for a repeated Idempotency-Key.

        Raises ``ModelNotFoundError`` (404), ``InvalidInputError`` (bad callback, no rows: 400),
        ``PayloadTooLargeError`` (413: rows, upload or ``metadata`` over its limit), ``OverloadedError``
        (queue full: 503), ``IdempotencyKeyReusedError``, ``PermissionDeniedError`` (403: a training job
        without ``models:admin``, a prediction job without ``jobs:write``, a credential restricted to other
        models).
        """
        self._check_metadata(request.metadata)
        principal = current_principal()
        principal.require(job_scope(request.kind))  # train needs models:admin, whichever wire asked
        principal.require_model(request.model)
        model = self.dataplane.model(request.model, request.version)
        if request.kind == "train":
            self.trainer.check_trainable(model)
        if request.callback_url is not None:
            await check_callback_url(request.callback_url, self.settings.webhook_allow)
        digest = hashlib.sha256(
            msgspec.json.encode(
                [request.kind, request.model, request.version, request.callback_url, request.metadata]
            )
        )
        key = request.idempotency_key
        stored_key = None if key is None else _scoped_key(principal, key)
        if key is not None and (existing := await self.store.find_idempotent(_scoped_key(principal, key))):
            async for chunk in rows:  # read (and hash) the body, store nothing
                for row in self._encode(chunk, request.kind, 0, set()):
                    digest.update(row)
            return self._replay(existing.request_hash, digest.hexdigest(), existing.to_dict(), key)
        depth = await self.store.queue_depth()
        if depth >= self.settings.max_queue_depth:
            raise OverloadedError(
                f"{depth} jobs are queued or running; the limit is {self.settings.max_queue_depth}",
                retry_after_s=5.0,
            )
        spec = JobSpec(
            model=request.model,
            kind=request.kind,
            version=request.version,
            callback_url=request.callback_url,
            metadata=request.metadata,
            idempotency_key=stored_key,
            max_attempts=self.settings.max_attempts,
            owner=principal.id,
        )
        upload = await self.store.begin(spec)
        try:
            pending: list[bytes] = []
            labels: set[int] = set()
            count = 0
            async for chunk in rows:
                encoded = self._encode(chunk, request.kind, count, labels)
                count += len(encoded)
                if count > self.settings.max_rows:
                    raise PayloadTooLargeError(f"the job has more than {self.settings.max_rows} rows")
                for row in encoded:
                    digest.update(row)
                pending.extend(encoded)
                if len(pending) >= _APPEND_ROWS:
                    await upload.append(pending)
                    pending = []
            await upload.append(pending)
            if request.kind == "train" and count and len(labels) < 2:
                raise InvalidInputError("training data needs both labels (0 and 1)", field="$.labels")
            if count == 0:
                raise InvalidInputError("the job has no rows", field="$.inputs")
            job, created = await upload.commit(digest.hexdigest())
        except BaseException:
            await asyncio.shield(upload.abort())
            raise
        if not created:
            assert key is not None
            return self._replay(job.request_hash, digest.hexdigest(), job.to_dict(), key)
        await publish_job(self.events, "job.queued", job.to_event(), job.owner)
        self.wakeup.set()
        return job.to_dict(), True

    def _check_metadata(self, metadata: Mapping[str, Any]) -> None:
        limit = self.settings.max_metadata_bytes
        size = len(msgspec.json.encode(metadata))
        if size > limit:
            raise PayloadTooLargeError(
                f"the job's metadata is {size} bytes as JSON; the limit is {limit} "
                "(jobs.max_metadata_bytes): keep large data in the rows or behind a reference",
                field="$.metadata",
                details={"size": size, "limit": limit},
            )

    @staticmethod
    def _replay(stored: str | None, given: str, job: dict[str, Any], key: str) -> tuple[dict[str, Any], bool]:
        if stored != given:
            raise IdempotencyKeyReusedError(
                f"Idempotency-Key {key[:100]!r} was used for a different request; use a new key",
                details={"job_id": job["id"]},
            )
        return job, False

    def _encode(self, chunk: Sequence[Any], kind: JobKind, start: int, labels: set[int]) -> list[bytes]:
        out = []
        for i, row in enumerate(chunk):
            if kind == "train":
                labelled = training_row(row, start + i)
                labels.add(labelled["label"])
                out.append(encode_row(labelled))
            elif isinstance(row, ModelwireError):
                out.append(encode_row_error(row))
            else:
                out.append(encode_row(row))
        return out

    # -- read and act -------------------------------------------------------------------------------

    async def _visible(self, job_id: str) -> Job:
        """The job, if the current principal may see it; else the same 404 as for no job at all."""
        job = await self.store.get(job_id)
        if not current_principal().owns(job.owner):
            raise job_not_found(job_id)
        return job

    async def get(self, job_id: str) -> dict[str, Any]:
        return (await self._visible(job_id)).to_dict()

    async def list(self, *, status: str | None = None, limit: int = 50, cursor: str | None = None) -> JobPage:
        try:
            wanted = JobStatus(status) if status else None
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise InvalidInputError(
                f"unknown status {status!r}: use one of {known}", field="status"
            ) from None
        if not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be from 1 to 1000", field="limit")
        if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19):
            # every store's cursor is a job's sequence number: anything else was not given by this server
            raise InvalidInputError(
                "cursor is not one this server gave: pass a list's next_cursor as it is", field="cursor"
            )
        principal = current_principal()
        # owns(None) holds for the principals who see every job (anonymous, models:admin)
        owner = None if principal.owns(None) else principal.id
        return await self.store.list_jobs(status=wanted, limit=limit, cursor=cursor, owner=owner)

    async def results(
        self, job_id: str, *, offset: int = 0, limit: int | None = None
    ) -> AsyncIterator[ResultRow]:
        """The job's results in input order (checks the job exists before the first row)."""
        if offset < 0 or (limit is not None and limit < 0):
            raise InvalidInputError("offset and limit must not be negative")
        await self._visible(job_id)
        return self.store.results(job_id, offset=offset, limit=limit)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (a running one stops at its next batch); 409 when final."""
        await self._visible(job_id)
        job = await self.store.cancel(job_id)
        await publish_job(self.events, "job.cancelled", job.to_event(), job.owner)
        self.webhooks.deliver_later(job)
        return job.to_dict()

    async def retry(self, job_id: str) -> dict[str, Any]:
        """Queue a failed job again with fresh attempts; rows that have a result are not re-run."""
        await self._visible(job_id)
        job = await self.store.retry(job_id)
        await publish_job(self.events, "job.queued", job.to_event(), job.owner)
        self.wakeup.set()
        return job.to_dict()


def _scoped_key(principal: Principal, key: str) -> str:
    """The Idempotency-Key as stored: per owner once callers are authenticated, so one principal's key
    can neither replay nor reveal another's job (\x1f cannot occur in a header or metadata value)."""
    if not principal.authenticated:
        return key
    return f"{principal.id}\x1f{key}"
