"""The embedded job backend: SQLite in WAL mode, one file under the data dir, no service to run.

How it works. One connection, used by one dedicated thread: every method hands a plain function to that
thread and awaits it, so the event loop never blocks on disk and SQLite never sees two threads. Each write
is one transaction (``BEGIN IMMEDIATE``: the write lock is taken up front, so two processes sharing the
file, ``--workers N``, serialise instead of deadlocking; ``busy_timeout`` makes the loser wait).

Durability. ``journal_mode=WAL`` with ``synchronous=NORMAL``: a committed transaction is in the WAL file
before ``COMMIT`` returns, so it survives the process being killed (SIGKILL, OOM); only a power loss or OS
crash can roll back the last few transactions, which ``FULL`` would prevent at the cost of an fsync per
commit. ``Upload.commit()`` is the transaction that makes a job visible, and the API answers 202 after it.

Tables: ``jobs`` (one row per job; ``seq`` orders the queue and pages the list), ``drafts`` (uploads in
progress), ``inputs`` and ``results`` keyed by ``(job_seq, idx)`` WITHOUT ROWID, so rows are stored and
read in input order and a result is written with ``INSERT OR REPLACE``: re-processing row *i* replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from modelwire.errors import ConfigurationError, InternalError, ModelwireError, UnavailableError
from modelwire.jobs.states import FINAL, JobStatus, Trigger, transition
from modelwire.jobs.store import Job, JobPage, JobSpec, JobStore, ResultRow, Upload, job_not_found, now

__all__ = ["SqliteJobStore"]

logger = logging.getLogger("modelwire.jobs")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drafts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    result TEXT,
    stage TEXT,
    callback_url TEXT,
    metadata TEXT NOT NULL,
    params TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    webhook_status TEXT,
    webhook_attempts TEXT NOT NULL DEFAULT '[]',
    lease_owner TEXT,
    lease_expires_at REAL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_webhook ON jobs (webhook_status) WHERE webhook_status = 'pending';
CREATE TABLE IF NOT EXISTS inputs (
    job_seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_seq, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    job_seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    body BLOB NOT NULL,
    is_error INTEGER NOT NULL,
    PRIMARY KEY (job_seq, idx)
) WITHOUT ROWID;
"""

_FINAL = tuple(s.value for s in FINAL)
_LIST = {  # the list's queries by the filters given: fixed texts, each with an index to use
    (): "SELECT * FROM jobs WHERE seq < ? ORDER BY seq DESC LIMIT ?",
    ("status",): "SELECT * FROM jobs WHERE seq < ? AND status = ? ORDER BY seq DESC LIMIT ?",
    ("owner",): "SELECT * FROM jobs WHERE seq < ? AND owner = ? ORDER BY seq DESC LIMIT ?",
    ("status", "owner"): (
        "SELECT * FROM jobs WHERE seq < ? AND status = ? AND owner = ? ORDER BY seq DESC LIMIT ?"
    ),
}
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _json(value: Any) -> str | None:
    return None if value is None else _encode(value).decode()


def _load(text: str | None) -> Any:
    return None if text is None else _decode(text)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database made by an older modelwire up to ``_SCHEMA`` (idempotent, run at every open)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if "owner" not in columns:  # before job owners were kept: old jobs have none (only admins see them)
        db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, seq)")


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        model=row["model"],
        version=row["version"],
        status=JobStatus(row["status"]),
        total=row["total"],
        done=row["done"],
        errors=row["errors"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=_load(row["error"]),
        result=_load(row["result"]),
        stage=_load(row["stage"]),
        callback_url=row["callback_url"],
        metadata=_load(row["metadata"]) or {},
        params=_load(row["params"]) or {},
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        webhook_status=row["webhook_status"],
        webhook_attempts=_load(row["webhook_attempts"]) or [],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        owner=row["owner"],
    )


FULL_RETRY_AFTER_S = 30.0
"""What a caller is told to wait when the job store's disk is full (someone has to free space)."""
_FULL = {"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC"}


@contextlib.contextmanager
def map_sqlite_errors() -> Iterator[None]:
    """The one boundary where sqlite3's exceptions become modelwire's."""
    try:
        yield
    except ModelwireError:
        raise
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise UnavailableError("the job store is busy; try again", retry_after_s=1.0) from exc
        if getattr(exc, "sqlite_errorname", None) in _FULL:
            logger.error("job store write failed: %s (is the disk full?)", exc)
            raise UnavailableError(
                "the job store cannot write (its disk is full); try again later",
                retry_after_s=FULL_RETRY_AFTER_S,
            ) from exc
        err = InternalError("the job store failed")
        logger.error("job store error [error_id=%s]: %s", err.error_id, exc)
        raise err from exc
    except sqlite3.Error as exc:
        err = InternalError("the job store failed")
        logger.error("job store error [error_id=%s]: %s", err.error_id, exc)
        raise err from exc


def _cause(exc: sqlite3.DatabaseError) -> str:
    name = getattr(exc, "sqlite_errorname", "")
    return f"{exc} ({name})" if name else str(exc)


def _remedy(exc: sqlite3.DatabaseError) -> str:
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        return "make the file and its directory writable by this process"
    if name.startswith("SQLITE_FULL"):
        return "free space on its disk"
    return "restore it from a backup, or move it away to start with an empty job store"


class SqliteJobStore(JobStore):
    """Jobs in one SQLite file (``<data_dir>/jobs.sqlite3`` by default)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0, integrity_check: bool = True) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.integrity_check = integrity_check
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    # -- plumbing -----------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise UnavailableError("the job store is not open", retry_after_s=1.0)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._guarded, fn, args)

    @staticmethod
    def _guarded(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with map_sqlite_errors():
            return fn(*args)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None
        return self._db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")  # may fail too (a full disk): the transaction is then rolled back below
        except BaseException:
            # SQLite has already rolled back after some errors (SQLITE_FULL): the first error is the one
            # to report, never a "no transaction is active" from this ROLLBACK
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def _get(self, job_id: str) -> Job:
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise job_not_found(job_id)
        return _job(row)

    def _seq(self, job_id: str) -> int:
        row = self.db.execute("SELECT seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise job_not_found(job_id)
        return int(row[0])

    # -- lifecycle ----------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            return
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelwire-jobs-db")
        try:
            await self._call(self._open)
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise

    def _open(self) -> None:
        """Connect, check the file (``PRAGMA quick_check``, unless ``integrity_check`` is off) and bring its
        schema up to date. A file that cannot be used (corrupt, not a database, read-only, unreadable) is a
        ``ConfigurationError`` naming the file and the cause: the server does not start on it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")] if self.integrity_check else []
            if problems not in ([], ["ok"]):
                raise self._unusable("it is corrupt: " + "; ".join(problems), "restore it from a backup")
            db.executescript(_SCHEMA)
            _migrate(db)
            db.execute("BEGIN IMMEDIATE")  # a file opened read-only answers reads: prove it takes a write
            try:
                db.execute("DELETE FROM drafts WHERE seq < 0")
            finally:
                db.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            db.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise
            raise self._unusable(_cause(exc), _remedy(exc)) from exc
        except BaseException:
            db.close()
            raise
        self._db = db

    def _unusable(self, cause: str, remedy: str) -> ConfigurationError:
        return ConfigurationError(f"the job store {self.path} cannot be used: {cause}; {remedy}")

    async def close(self) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(ModelwireError):
            await self._call(self._close)
        self._thread.shutdown(wait=True)
        self._thread = None

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- submit -------------------------------------------------------------------------------------

    async def begin(self, spec: JobSpec) -> Upload:
        seq = await self._call(self._begin)
        return _SqliteUpload(self, seq, spec)

    def _begin(self) -> int:
        t = now()
        with self._tx() as db:
            cursor = db.execute("INSERT INTO drafts (created_at, updated_at) VALUES (?, ?)", (t, t))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def find_idempotent(self, key: str) -> Job | None:
        return await self._call(self._find_idempotent, key)

    def _find_idempotent(self, key: str) -> Job | None:
        row = self.db.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (key,)).fetchone()
        return None if row is None else _job(row)

    async def queue_depth(self) -> int:
        return await self._call(
            lambda: int(
                self.db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[
                    0
                ]
            )
        )

    # -- read ---------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        return await self._call(self._get, job_id)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> JobPage:
        return await self._call(self._list, status, limit, cursor, owner)

    def _list(self, status: JobStatus | None, limit: int, cursor: str | None, owner: str | None) -> JobPage:
        before = int(cursor) if cursor and cursor.isdigit() else 2**62
        filters = [
            (column, value) for column, value in (("status", status), ("owner", owner)) if value is not None
        ]
        query = _LIST[tuple(column for column, _ in filters)]
        args = [before, *(str(value) for _, value in filters), limit + 1]
        rows = self.db.execute(query, args).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return JobPage([_job(r) for r in rows], str(rows[-1]["seq"]) if more else None)

    async def read_results(self, job_id: str, *, offset: int = 0, limit: int = 1000) -> list[ResultRow]:
        return await self._call(self._read_results, job_id, offset, limit)

    def _read_results(self, job_id: str, offset: int, limit: int) -> list[ResultRow]:
        seq = self._seq(job_id)
        rows = self.db.execute(
            "SELECT idx, body, is_error FROM results WHERE job_seq = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (seq, offset, offset + limit),
        ).fetchall()
        return [(r[0], bytes(r[1]), bool(r[2])) for r in rows]

    async def read_inputs(
        self, job_id: str, *, after: int = -1, limit: int = 1000
    ) -> list[tuple[int, bytes]]:
        return await self._call(self._read_inputs, job_id, after, limit)

    def _read_inputs(self, job_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        seq = self._seq(job_id)
        rows = self.db.execute(
            "SELECT idx, data FROM inputs WHERE job_seq = ? AND idx > ? ORDER BY idx LIMIT ?",
            (seq, after, limit),
        ).fetchall()
        return [(r[0], bytes(r[1])) for r in rows]

    # -- the user's actions -------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job:
        return await self._call(self._cancel, job_id)

    def _cancel(self, job_id: str) -> Job:
        with self._tx() as db:
            job = self._get(job_id)
            transition(job.status, Trigger.CANCEL)
            t = now()
            db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ?, "
                "webhook_status = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END "
                "WHERE id = ?",
                (t, t, job_id),
            )
            return self._get(job_id)

    async def retry(self, job_id: str) -> Job:
        return await self._call(self._retry, job_id)

    def _retry(self, job_id: str) -> Job:
        with self._tx() as db:
            job = self._get(job_id)
            transition(job.status, Trigger.RETRY)
            db.execute(
                "UPDATE jobs SET status = 'queued', attempts = 0, error = NULL, finished_at = NULL, "
                "webhook_status = NULL, webhook_attempts = '[]', lease_owner = NULL, "
                "lease_expires_at = NULL, updated_at = ? WHERE id = ?",
                (now(), job_id),
            )
            return self._get(job_id)

    # -- the worker's -------------------------------------------------------------------------------

    async def claim(self, owner: str, lease_s: float) -> Job | None:
        return await self._call(self._claim, owner, lease_s)

    def _claim(self, owner: str, lease_s: float) -> Job | None:
        with self._tx() as db:
            t = now()
            row = db.execute(
                "SELECT seq, status FROM jobs WHERE status = 'running' AND lease_expires_at < ? "
                "ORDER BY lease_expires_at LIMIT 1",
                (t,),
            ).fetchone()
            trigger = Trigger.RECLAIM
            if row is None:
                row = db.execute(
                    "SELECT seq, status FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1"
                ).fetchone()
                trigger = Trigger.CLAIM
            if row is None:
                return None
            transition(row["status"], trigger)
            db.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?, "
                "lease_expires_at = ?, started_at = COALESCE(started_at, ?), updated_at = ? WHERE seq = ?",
                (owner, t + lease_s, t, t, row["seq"]),
            )
            return _job(db.execute("SELECT * FROM jobs WHERE seq = ?", (row["seq"],)).fetchone())

    async def renew(self, job_id: str, owner: str, lease_s: float) -> JobStatus | None:
        return await self._call(self._renew, job_id, owner, lease_s)

    def _renew(self, job_id: str, owner: str, lease_s: float) -> JobStatus | None:
        with self._tx() as db:
            t = now()
            changed = db.execute(
                "UPDATE jobs SET lease_expires_at = ? "
                "WHERE id = ? AND lease_owner = ? AND status = 'running'",
                (t + lease_s, job_id, owner),
            ).rowcount
            if changed:
                return JobStatus.RUNNING
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None and row[0] == JobStatus.CANCELLED.value:
                return JobStatus.CANCELLED
            return None

    async def pending_rows(
        self, job_id: str, *, after: int = -1, limit: int = 256
    ) -> list[tuple[int, bytes]]:
        return await self._call(self._pending_rows, job_id, after, limit)

    def _pending_rows(self, job_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        seq = self._seq(job_id)
        rows = self.db.execute(
            "SELECT i.idx, i.data FROM inputs AS i WHERE i.job_seq = ? AND i.idx > ? AND NOT EXISTS "
            "(SELECT 1 FROM results AS r WHERE r.job_seq = i.job_seq AND r.idx = i.idx) "
            "ORDER BY i.idx LIMIT ?",
            (seq, after, limit),
        ).fetchall()
        return [(r[0], bytes(r[1])) for r in rows]

    def _owned(self, job_id: str, owner: str) -> int | None:
        row = self.db.execute(
            "SELECT seq FROM jobs WHERE id = ? AND lease_owner = ? AND status = 'running'", (job_id, owner)
        ).fetchone()
        return None if row is None else int(row[0])

    async def write_results(
        self, job_id: str, owner: str, results: Sequence[ResultRow], lease_s: float
    ) -> bool:
        return await self._call(self._write_results, job_id, owner, results, lease_s)

    def _write_results(self, job_id: str, owner: str, results: Sequence[ResultRow], lease_s: float) -> bool:
        with self._tx() as db:
            seq = self._owned(job_id, owner)
            if seq is None:
                return False
            if results:
                lo = min(r[0] for r in results)
                hi = max(r[0] for r in results)
                count = (
                    "SELECT COUNT(*), TOTAL(is_error) FROM results WHERE job_seq = ? AND idx BETWEEN ? AND ?"
                )
                before = db.execute(count, (seq, lo, hi)).fetchone()
                db.executemany(
                    "INSERT OR REPLACE INTO results (job_seq, idx, body, is_error) VALUES (?, ?, ?, ?)",
                    [(seq, idx, body, int(err)) for idx, body, err in results],
                )
                after = db.execute(count, (seq, lo, hi)).fetchone()
                done, errors = after[0] - before[0], int(after[1] - before[1])
            else:
                done = errors = 0
            t = now()
            db.execute(
                "UPDATE jobs SET done = done + ?, errors = errors + ?, lease_expires_at = ?, updated_at = ? "
                "WHERE seq = ?",
                (done, errors, t + lease_s, t, seq),
            )
            return True

    async def set_stage(self, job_id: str, owner: str, stage: Mapping[str, Any]) -> bool:
        return await self._call(self._set_stage, job_id, owner, stage)

    def _set_stage(self, job_id: str, owner: str, stage: Mapping[str, Any]) -> bool:
        with self._tx() as db:
            return bool(
                db.execute(
                    "UPDATE jobs SET stage = ?, updated_at = ? "
                    "WHERE id = ? AND lease_owner = ? AND status = 'running'",
                    (_json(dict(stage)), now(), job_id, owner),
                ).rowcount
            )

    async def finish(self, job_id: str, owner: str, result: Mapping[str, Any] | None = None) -> Job | None:
        return await self._call(self._finish, job_id, owner, result)

    def _finish(self, job_id: str, owner: str, result: Mapping[str, Any] | None) -> Job | None:
        with self._tx() as db:
            if self._owned(job_id, owner) is None:
                return None
            transition(JobStatus.RUNNING, Trigger.SUCCEED)
            t = now()
            db.execute(
                "UPDATE jobs SET status = 'succeeded', result = ?, error = NULL, finished_at = ?, "
                "updated_at = ?, "
                "lease_owner = NULL, lease_expires_at = NULL, "
                "webhook_status = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END "
                "WHERE id = ?",
                (_json(dict(result) if result is not None else None), t, t, job_id),
            )
            return self._get(job_id)

    async def fail(
        self, job_id: str, owner: str, error: Mapping[str, Any], *, permanent: bool = False
    ) -> Job | None:
        return await self._call(self._fail, job_id, owner, error, permanent)

    def _fail(self, job_id: str, owner: str, error: Mapping[str, Any], permanent: bool) -> Job | None:
        with self._tx() as db:
            if self._owned(job_id, owner) is None:
                return None
            job = self._get(job_id)
            t = now()
            if not permanent and job.attempts < job.max_attempts:
                transition(job.status, Trigger.REQUEUE)
                db.execute(
                    "UPDATE jobs SET status = 'queued', error = ?, lease_owner = NULL, "
                    "lease_expires_at = NULL, updated_at = ? WHERE id = ?",
                    (_json(dict(error)), t, job_id),
                )
            else:
                transition(job.status, Trigger.FAIL)
                db.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, attempts = MIN(attempts, max_attempts), "
                    "finished_at = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL, "
                    "webhook_status = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END "
                    "WHERE id = ?",
                    (_json(dict(error)), t, t, job_id),
                )
            return self._get(job_id)

    async def release(self, job_id: str, owner: str) -> None:
        await self._call(self._release, job_id, owner)

    def _release(self, job_id: str, owner: str) -> None:
        with self._tx() as db:
            if self._owned(job_id, owner) is None:
                return
            transition(JobStatus.RUNNING, Trigger.RELEASE)
            db.execute(
                "UPDATE jobs SET status = 'queued', attempts = MAX(attempts - 1, 0), lease_owner = NULL, "
                "lease_expires_at = NULL, updated_at = ? WHERE id = ?",
                (now(), job_id),
            )

    # -- webhooks -----------------------------------------------------------------------------------

    async def record_webhook_attempt(self, job_id: str, attempt: Mapping[str, Any], *, status: str) -> None:
        await self._call(self._record_webhook_attempt, job_id, attempt, status)

    def _record_webhook_attempt(self, job_id: str, attempt: Mapping[str, Any], status: str) -> None:
        with self._tx() as db:
            row = db.execute("SELECT webhook_attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            attempts = [*(_load(row[0]) or []), dict(attempt)]
            db.execute(
                "UPDATE jobs SET webhook_attempts = ?, webhook_status = ?, updated_at = ? WHERE id = ?",
                (_json(attempts), status, now(), job_id),
            )

    async def pending_webhooks(self, limit: int = 100) -> list[Job]:
        return await self._call(self._pending_webhooks, limit)

    def _pending_webhooks(self, limit: int) -> list[Job]:
        rows = self.db.execute(
            "SELECT * FROM jobs WHERE webhook_status = 'pending' AND status IN (?, ?, ?) "
            "ORDER BY seq LIMIT ?",
            (*_FINAL, limit),
        ).fetchall()
        return [_job(r) for r in rows]

    # -- housekeeping -------------------------------------------------------------------------------

    async def purge(self, *, finished_before: float, drafts_before: float) -> int:
        return await self._call(self._purge, finished_before, drafts_before)

    def _purge(self, finished_before: float, drafts_before: float) -> int:
        removed = 0
        while True:  # in slices, so workers' writes get the lock in between
            with self._tx() as db:
                seqs = [
                    r[0]
                    for r in db.execute(
                        "SELECT seq FROM jobs WHERE finished_at < ? AND status IN (?, ?, ?) LIMIT 50",
                        (finished_before, *_FINAL),
                    ).fetchall()
                ]
                for seq in seqs:
                    db.execute("DELETE FROM inputs WHERE job_seq = ?", (seq,))
                    db.execute("DELETE FROM results WHERE job_seq = ?", (seq,))
                    db.execute("DELETE FROM jobs WHERE seq = ?", (seq,))
            removed += len(seqs)
            if len(seqs) < 50:
                break
        with self._tx() as db:
            for (seq,) in db.execute(
                "SELECT seq FROM drafts WHERE updated_at < ?", (drafts_before,)
            ).fetchall():
                db.execute("DELETE FROM inputs WHERE job_seq = ?", (seq,))
                db.execute("DELETE FROM drafts WHERE seq = ?", (seq,))
        return removed

    # -- uploads (called by _SqliteUpload) ----------------------------------------------------------

    def _append(self, seq: int, start: int, rows: Sequence[bytes]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT INTO inputs (job_seq, idx, data) VALUES (?, ?, ?)",
                [(seq, start + i, row) for i, row in enumerate(rows)],
            )
            db.execute("UPDATE drafts SET updated_at = ? WHERE seq = ?", (now(), seq))

    def _commit(
        self, seq: int, job_id: str, spec: JobSpec, total: int, request_hash: str
    ) -> tuple[Job, bool]:
        with self._tx() as db:
            if spec.idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE idempotency_key = ?", (spec.idempotency_key,)
                ).fetchone()
                if row is not None:
                    existing = _job(row)
                    self._drop_draft(seq)
                    return existing, False
            if db.execute("SELECT 1 FROM drafts WHERE seq = ?", (seq,)).fetchone() is None:
                # purged while idle (its rows are gone): committing would queue a job without inputs
                raise UnavailableError(
                    "the upload was abandoned (idle for too long) before it was committed; submit it again",
                    retry_after_s=1.0,
                )
            t = now()
            db.execute(
                "INSERT INTO jobs (seq, id, kind, model, version, status, total, max_attempts, created_at, "
                "updated_at, callback_url, metadata, params, idempotency_key, request_hash, owner) "
                "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    job_id,
                    spec.kind,
                    spec.model,
                    spec.version,
                    total,
                    spec.max_attempts,
                    t,
                    t,
                    spec.callback_url,
                    _json(dict(spec.metadata)),
                    _json(dict(spec.params)),
                    spec.idempotency_key,
                    request_hash,
                    spec.owner,
                ),
            )
            db.execute("DELETE FROM drafts WHERE seq = ?", (seq,))
            return self._get(job_id), True

    def _drop_draft(self, seq: int) -> None:
        # inside a transaction; only rows of an uncommitted draft are ever dropped here
        if self.db.execute("SELECT 1 FROM drafts WHERE seq = ?", (seq,)).fetchone() is None:
            return
        self.db.execute("DELETE FROM inputs WHERE job_seq = ?", (seq,))
        self.db.execute("DELETE FROM drafts WHERE seq = ?", (seq,))

    def _abort(self, seq: int) -> None:
        with self._tx():
            self._drop_draft(seq)


class _SqliteUpload(Upload):
    def __init__(self, store: SqliteJobStore, seq: int, spec: JobSpec) -> None:
        self.store = store
        self.seq = seq
        self.spec = spec
        self.id = uuid.uuid4().hex
        self.rows = 0
        self._finished = False

    async def append(self, rows: Sequence[bytes]) -> None:
        if rows:
            await self.store._call(self.store._append, self.seq, self.rows, list(rows))
            self.rows += len(rows)

    async def commit(self, request_hash: str) -> tuple[Job, bool]:
        job, created = await self.store._call(
            self.store._commit, self.seq, self.id, self.spec, self.rows, request_hash
        )
        self._finished = True
        return job, created

    async def abort(self) -> None:
        if not self._finished:
            self._finished = True
            await self.store._call(self.store._abort, self.seq)
