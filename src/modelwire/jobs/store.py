"""``JobStore``: the interface every job backend implements (SQLite embedded, Redis for scale-out).

The contract, whatever the backend:

* **Nothing accepted is lost.** ``Upload.commit()`` returns only once the job and all its rows are durable;
  the API answers 202 after it. Rows arrive in chunks (``Upload.append``), never all at once, and an upload
  that is aborted (over a limit, client gone) leaves nothing behind.
* **At-least-once processing, idempotent results.** A worker ``claim``s a job under a lease (visibility
  timeout) and ``renew``s it while it works. A job whose lease expired is claimed again and resumes from
  ``pending_rows`` (rows without a result). ``write_results`` for row *i* replaces row *i*'s result, never
  adds a second one, so re-processing after a crash cannot duplicate anything.
* **Owner checks.** Worker calls carry the ``owner`` that claimed the job; they do nothing (and say so)
  once the lease was lost or the job was cancelled, which is how a running job learns it must stop.
* State changes follow ``jobs/states.py`` (the transition table).
* **Who submitted it.** ``JobSpec.owner`` (the submitting ``Principal.id``) is stored with the job and
  ``list_jobs(owner=...)`` lists one owner's jobs; who may see which job is ``JobManager``'s business.
  Not to be confused with the worker's ``owner`` argument of the lease methods (``Job.lease_owner``).

Rows are opaque bytes to a store: an input row is the instance JSON-encoded (``encode_row``), or a row that
could not be read at submit time (``encode_row_error``: a NUL byte, then the error as JSON; JSON text never
starts with NUL). A result row is ``(index, body, is_error)`` with ``body`` the output or error as JSON.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from modelwire.errors import (
    InvalidInputError,
    JobNotFoundError,
    ModelwireError,
    error_from_code,
)
from modelwire.jobs.states import JobStatus

if TYPE_CHECKING:
    pass

__all__ = [
    "ROW_ERROR",
    "Job",
    "JobKind",
    "JobPage",
    "JobSpec",
    "JobStore",
    "ResultRow",
    "Upload",
    "decode_row",
    "encode_row",
    "encode_row_error",
    "job_not_found",
    "render_result",
]

JobKind = Literal["predict", "train"]
ResultRow = tuple[int, bytes, bool]
"""``(row index, output or error as JSON, is_error)``."""

ROW_ERROR = b"\x00"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def encode_row(instance: Any) -> bytes:
    """An input row as stored: the instance, JSON-encoded."""
    return _encode(instance)


def encode_row_error(error: ModelwireError) -> bytes:
    """A row that could not be read at submit time (a malformed line); it becomes that row's error result."""
    return ROW_ERROR + _encode(error.to_dict())


def decode_row(row: bytes) -> Any:
    """The instance, or the ``ModelwireError`` stored for a row that could not be read."""
    if row[:1] == ROW_ERROR:
        info = _decode(row[1:])
        return error_from_code(info.get("code", "INVALID_ARGUMENT"), info.get("message", "unreadable row"))
    try:
        return _decode(row)
    except msgspec.DecodeError:
        return InvalidInputError("the stored row is not valid JSON")


def job_not_found(job_id: str) -> JobNotFoundError:
    """The one answer for a job that is not there, or not the caller's: the same words, so ids do not leak."""
    return JobNotFoundError(f"no job {job_id[:200]!r} (never submitted, or removed after its retention)")


def render_result(row: ResultRow) -> bytes:
    """One NDJSON line (no newline): ``{"index": i, ...output}``, ``{"index": i, "result": v}`` for a
    non-object output, or ``{"index": i, "error": {...}}``. Spliced from the stored bytes, not re-encoded."""
    index, body, is_error = row
    if is_error:
        return b'{"index":%d,"error":%s}' % (index, body)
    if body[:1] == b"{":
        rest = body[1:].lstrip()
        return b'{"index":%d%s%s' % (index, b"" if rest[:1] == b"}" else b",", rest)
    return b'{"index":%d,"result":%s}' % (index, body)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a submit asks for (the rows come separately, streamed into an ``Upload``)."""

    model: str
    kind: JobKind = "predict"
    version: str | None = None
    callback_url: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    max_attempts: int = 3
    owner: str | None = None
    """The submitting ``Principal.id`` (``None``: jobs stored before owners were kept)."""


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored. ``to_dict()`` is what every API shows."""

    id: str
    kind: JobKind
    model: str
    version: str | None
    status: JobStatus
    total: int
    done: int
    errors: int
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: Mapping[str, Any] | None = None
    result: Mapping[str, Any] | None = None
    stage: Mapping[str, Any] | None = None
    """Free-form progress of a job that is not row by row (training: ``{"stage", "fraction"}``)."""
    callback_url: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    request_hash: str | None = None
    webhook_status: str | None = None
    """``pending`` until delivered, then ``delivered`` or ``failed``; ``None`` without a ``callback_url``."""
    webhook_attempts: Sequence[Mapping[str, Any]] = ()
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    owner: str | None = None
    """Who submitted it (``Principal.id``). Not in ``to_dict()``: no API shows one caller's id to another."""

    def to_dict(self) -> dict[str, Any]:
        progress: dict[str, Any] = {"done": self.done, "total": self.total, "errors": self.errors}
        if self.stage:
            progress.update(self.stage)
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "model": self.model,
            "version": self.version,
            "status": self.status.value,
            "progress": progress,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": dict(self.error) if self.error else None,
            "result": dict(self.result) if self.result else None,
            "metadata": dict(self.metadata),
        }
        if self.callback_url is not None:
            out["callback_url"] = self.callback_url
            out["webhook"] = {
                "status": self.webhook_status,
                "attempts": [dict(a) for a in self.webhook_attempts],
            }
        return out

    def to_event(self) -> dict[str, Any]:
        """What a ``jobs/<id>`` state event carries: ``to_dict()`` without what the client sent
        (``metadata``, ``callback_url``) nor the webhook log, so events stay small however large those are
        (``GET /v1/jobs/<id>`` shows them; watchers merge events into that)."""
        out = self.to_dict()
        for key in ("metadata", "callback_url", "webhook"):
            out.pop(key, None)
        return out


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ``list_jobs``: newest first; ``cursor`` fetches the next page (``None``: no more)."""

    jobs: list[Job]
    cursor: str | None


class Upload(abc.ABC):
    """A job being submitted: rows appended in chunks, invisible to every reader until ``commit``.

    >>> upload = await store.begin(JobSpec(model="sentiment"))     # doctest: +SKIP
    >>> await upload.append([encode_row("great"), encode_row("awful")])
    >>> job, created = await upload.commit(request_hash)
    """

    id: str
    rows: int = 0

    @abc.abstractmethod
    async def append(self, rows: Sequence[bytes]) -> None:
        """Stage rows (already encoded) after those appended before; their indexes continue from ``rows``."""

    @abc.abstractmethod
    async def commit(self, request_hash: str) -> tuple[Job, bool]:
        """Make the job durable and ``queued`` in one step. Returns ``(job, True)``.

        When the spec's ``idempotency_key`` already names a job (a concurrent submit won), the staged rows
        are discarded and ``(that job, False)`` is returned; the caller compares ``request_hash``.
        """

    @abc.abstractmethod
    async def abort(self) -> None:
        """Discard everything staged. Safe to call twice, or after ``commit``."""


class JobStore(abc.ABC):
    """Jobs, their input rows and their results, durably. One instance per process, shared by all tasks.

    Every method may be called concurrently from many tasks. Methods that take ``owner`` are the worker's;
    they act only while ``owner`` holds the job's lease and the job is ``running``.
    """

    # -- lifecycle ----------------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect / create what the backend needs. Called once at start-up."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Jobs survive it."""

    # -- submit -------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def begin(self, spec: JobSpec) -> Upload:
        """Start staging a new job's rows."""

    @abc.abstractmethod
    async def find_idempotent(self, key: str) -> Job | None:
        """The job submitted with ``Idempotency-Key: key``, if any (and not yet purged)."""

    @abc.abstractmethod
    async def queue_depth(self) -> int:
        """Jobs queued or running: what ``jobs.max_queue_depth`` bounds."""

    # -- read ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job:
        """The job; ``JobNotFoundError`` if there is none."""

    @abc.abstractmethod
    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> JobPage:
        """Jobs newest first, optionally of one status and/or one ``owner``; ``cursor`` is the previous
        page's."""

    @abc.abstractmethod
    async def read_results(self, job_id: str, *, offset: int = 0, limit: int = 1000) -> list[ResultRow]:
        """Results of rows ``offset`` ≤ index < ``offset + limit`` that have one, in input order."""

    @abc.abstractmethod
    async def read_inputs(
        self, job_id: str, *, after: int = -1, limit: int = 1000
    ) -> list[tuple[int, bytes]]:
        """Input rows with index > ``after``, in order (``(index, row)``)."""

    async def results(
        self, job_id: str, *, offset: int = 0, limit: int | None = None
    ) -> AsyncIterator[ResultRow]:
        """Every result of rows ``offset`` ≤ index < ``offset + limit``, in input order, page by page."""
        total = (await self.get(job_id)).total
        end = total if limit is None else min(total, offset + limit)
        while offset < end:
            size = min(1000, end - offset)
            for row in await self.read_results(job_id, offset=offset, limit=size):
                yield row
            offset += size

    # -- the user's actions -------------------------------------------------------------------------

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> Job:
        """Queued/running → cancelled; ``FailedPreconditionError`` for a final job."""

    @abc.abstractmethod
    async def retry(self, job_id: str) -> Job:
        """Failed → queued with fresh attempts and no error; results kept (only rows without one re-run)."""

    # -- the worker's -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def claim(self, owner: str, lease_s: float) -> Job | None:
        """Take the oldest queued job, or a running one whose lease expired, under a lease of ``lease_s``.

        Counts one attempt. A job whose lease expired with no attempts left becomes ``failed`` instead
        (error ``UNAVAILABLE``: its worker stopped) and the next one is tried. ``None`` when nothing is due.
        """

    @abc.abstractmethod
    async def renew(self, job_id: str, owner: str, lease_s: float) -> JobStatus | None:
        """Extend the lease. The job's status (``cancelled``: stop now), or ``None``: the lease is lost."""

    @abc.abstractmethod
    async def pending_rows(
        self, job_id: str, *, after: int = -1, limit: int = 256
    ) -> list[tuple[int, bytes]]:
        """Input rows with index > ``after`` that have no result yet, in order."""

    @abc.abstractmethod
    async def write_results(
        self, job_id: str, owner: str, results: Sequence[ResultRow], lease_s: float
    ) -> bool:
        """Store results (replacing any for the same rows), update done/errors, renew the lease.

        ``False`` (and nothing written) when ``owner`` no longer holds a running job: stop.
        """

    @abc.abstractmethod
    async def set_stage(self, job_id: str, owner: str, stage: Mapping[str, Any]) -> bool:
        """Record non-row progress (training stages); ``False`` as ``write_results``."""

    @abc.abstractmethod
    async def finish(self, job_id: str, owner: str, result: Mapping[str, Any] | None = None) -> Job | None:
        """Running → succeeded with ``result``; ``None`` when ``owner`` lost the job meanwhile."""

    @abc.abstractmethod
    async def fail(
        self, job_id: str, owner: str, error: Mapping[str, Any], *, permanent: bool = False
    ) -> Job | None:
        """End this attempt with ``error``: back to queued while attempts are left (and not ``permanent``),
        else failed. ``None`` when ``owner`` lost the job meanwhile."""

    @abc.abstractmethod
    async def release(self, job_id: str, owner: str) -> None:
        """Give a running job back (shutdown): queued again at once, the attempt not counted."""

    # -- webhooks -----------------------------------------------------------------------------------

    @abc.abstractmethod
    async def record_webhook_attempt(self, job_id: str, attempt: Mapping[str, Any], *, status: str) -> None:
        """Append one delivery attempt (``{"attempt", "time", "status_code"?, "error"?}``); set the status."""

    @abc.abstractmethod
    async def pending_webhooks(self, limit: int = 100) -> list[Job]:
        """Final jobs whose webhook is still ``pending`` (delivery resumes after a restart)."""

    # -- housekeeping -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def purge(self, *, finished_before: float, drafts_before: float) -> int:
        """Remove final jobs that finished before ``finished_before`` (rows, results, keys) and uploads
        abandoned before ``drafts_before``. Returns the number of jobs removed."""


def now() -> float:
    return time.time()
