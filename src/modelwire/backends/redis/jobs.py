"""The scale-out job backend: Redis, shared by any number of gateways (``serve``) and ``modelwire worker``s.

How it works. The queue is a Redis Stream with one consumer group: a committed job appends an entry, a
worker claims by reading the group (``XREADGROUP``), and the entry stays in the group's pending list while
the job runs; ``XAUTOCLAIM`` hands the entry of a worker that died to another once its lease ran out. The
final state acknowledges and deletes the entry. Job state is a hash; rows and results sit beside it. Every
change that touches more than one key is a Lua script (``redis_scripts.py``): it runs atomically, so an
owner check and the write it guards cannot be separated by another worker's reclaim or the user's cancel.

Keys (``P`` is the prefix, ``modelwire:`` unless the URL says ``?prefix=...``):

    P:job:<id>        hash     the job (status, counters, timestamps, JSON fields, lease, stream entry)
    P:in:<id>         list     input rows in order; row i is at index i (LRANGE pages them)
    P:out:<id>        hash     results: field = row index, value = b"0"/b"1" (error) + JSON body;
                               HSET replaces, so a row processed twice still has one result
    P:draft:<upload>  list     rows of an upload in progress; RENAMEd to P:in:<id> by the commit script
    P:drafts          zset     upload -> last append (Unix s), so abandoned uploads can be purged
    P:queue           stream   one entry per queued or running job; group "workers"
    P:jobs            zset     id -> seq (commit order): the list, newest first, paged by seq
    P:status:<s>      zset     id -> seq for each status: the status filter and the queue depth
    P:owner:<owner>   zset     id -> seq of one submitter's jobs (``Principal.id``): their own list
    P:finished        zset     id -> finished_at: what retention purges
    P:webhooks        zset     id -> seq of final jobs whose webhook is pending
    P:idem:<key>      string   Idempotency-Key -> job id
    P:seq             counter  the last seq

Durability is Redis's: with ``appendonly yes`` (``appendfsync everysec``) an acknowledged job survives a
Redis restart except for the last second; without persistence it survives worker and gateway crashes
only. See docs/decisions.md, "Jobs on Redis".
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from modelwire.backends.redis.connection import RedisTarget, map_redis_errors
from modelwire.backends.redis.job_scripts import SCRIPTS
from modelwire.errors import JobNotFoundError, UnavailableError
from modelwire.jobs.states import JobStatus, Trigger, transition
from modelwire.jobs.store import Job, JobPage, JobSpec, JobStore, ResultRow, Upload, job_not_found, now

__all__ = ["RedisJobStore"]

logger = logging.getLogger("modelwire.jobs")

_DRAFT_EXPIRE_S = 86400  # a safety net: drafts are purged after an hour by ``purge`` anyway
_CONSUMER_IDLE_MS = 3600 * 1000
_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _json(value: bytes | None) -> Any:
    return None if value is None else _decode(value)


def _job(flat: Any) -> Job:
    """A ``Job`` from ``HGETALL``'s reply: a dict (redis-py) or a flat list (a script's)."""
    h: Mapping[bytes, bytes] = (
        flat if isinstance(flat, Mapping) else dict(zip(flat[::2], flat[1::2], strict=True))
    )
    return Job(
        id=h[b"id"].decode(),
        kind=h[b"kind"].decode(),  # type: ignore[arg-type]
        model=h[b"model"].decode(),
        version=_text(h.get(b"version")),
        status=JobStatus(h[b"status"].decode()),
        total=int(h[b"total"]),
        done=int(h[b"done"]),
        errors=int(h[b"errors"]),
        attempts=int(h[b"attempts"]),
        max_attempts=int(h[b"max_attempts"]),
        created_at=float(h[b"created_at"]),
        updated_at=float(h[b"updated_at"]),
        started_at=_float(h.get(b"started_at")),
        finished_at=_float(h.get(b"finished_at")),
        error=_json(h.get(b"error")),
        result=_json(h.get(b"result")),
        stage=_json(h.get(b"stage")),
        callback_url=_text(h.get(b"callback_url")),
        metadata=_json(h.get(b"metadata")) or {},
        params=_json(h.get(b"params")) or {},
        idempotency_key=_text(h.get(b"idempotency_key")),
        request_hash=_text(h.get(b"request_hash")),
        webhook_status=_text(h.get(b"webhook_status")),
        webhook_attempts=_json(h.get(b"webhook_attempts")) or [],
        lease_owner=_text(h.get(b"lease_owner")),
        lease_expires_at=_float(h.get(b"lease_expires_at")),
        owner=_text(h.get(b"owner")),
    )


def _unframe(blob: bytes) -> list[tuple[int, bytes]]:
    """``(index, bytes)`` pairs from a script's framed reply: ``b"<index> <length> <bytes>"`` repeated."""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(blob)
    while pos < end:
        space = blob.index(b" ", pos)
        size_end = blob.index(b" ", space + 1)
        start = size_end + 1
        stop = start + int(blob[space + 1 : size_end])
        out.append((int(blob[pos:space]), blob[start:stop]))
        pos = stop
    return out


class RedisJobStore(JobStore):
    """Jobs in Redis (``--jobs-backend redis://host:port/db``), for gateways and workers on many hosts.

    >>> store = RedisJobStore(RedisTarget.parse("redis://127.0.0.1:6379/0"))   # doctest: +SKIP
    >>> await store.open()
    """

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.prefix = target.prefix
        self._redis: Redis | None = None
        self._scripts: dict[str, Any] = {}

    @classmethod
    def from_url(cls, backend: str) -> RedisJobStore:
        return cls(RedisTarget.parse(backend))

    # -- plumbing -----------------------------------------------------------------------------------

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise UnavailableError("the job store is not open", retry_after_s=1.0)
        return self._redis

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def _run(self, script: str, *args: Any) -> Any:
        redis = self.redis
        with map_redis_errors():
            try:
                return await self._scripts[script](args=[self.prefix, *args], client=redis)
            except redis_errors.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._create_group()  # the stream was deleted under us (FLUSHDB): start over
                return await self._scripts[script](args=[self.prefix, *args], client=redis)

    async def _create_group(self) -> None:
        with contextlib.suppress(redis_errors.ResponseError):  # BUSYGROUP: it exists
            await self.redis.xgroup_create(self.key("queue"), "workers", id="0", mkstream=True)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._redis is not None:
            return
        redis = self.target.connect("modelwire-jobs")
        try:
            with map_redis_errors():
                await redis.ping()
                self._redis = redis
                self._scripts = {name: redis.register_script(src) for name, src in SCRIPTS.items()}
                await self._create_group()
        except BaseException:
            self._redis = None
            await redis.aclose()
            raise

    async def close(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await redis.aclose()

    # -- submit -------------------------------------------------------------------------------------

    async def begin(self, spec: JobSpec) -> Upload:
        self.redis  # noqa: B018 - fail now, not at the first append, when the store is closed
        return _RedisUpload(self, spec)

    async def find_idempotent(self, key: str) -> Job | None:
        with map_redis_errors():
            job_id = await self.redis.get(self.key("idem", key))
        if job_id is None:
            return None
        with contextlib.suppress(JobNotFoundError):
            return await self.get(_str(job_id))
        return None

    async def queue_depth(self) -> int:
        with map_redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self.key("status", "queued"))
                pipe.zcard(self.key("status", "running"))
                queued, running = await pipe.execute()
        return int(queued) + int(running)

    # -- read ---------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        with map_redis_errors():
            h = await self.redis.hgetall(self.key("job", job_id))
        if not h:
            raise job_not_found(job_id)
        return _job(h)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> JobPage:
        top = f"({int(cursor)}" if cursor and cursor.isdigit() else "+inf"
        if owner is not None:
            return await self._list_owned(owner, status, limit, top)
        index = self.key("status", status.value) if status is not None else self.key("jobs")
        with map_redis_errors():
            ids: list[Any] = await self.redis.zrevrangebyscore(
                index, top, "-inf", start=0, num=limit + 1, withscores=True
            )
            more = len(ids) > limit
            ids = ids[:limit]
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, _ in ids:
                    pipe.hgetall(self.key("job", _str(job_id)))
                found = await pipe.execute()
        jobs = [_job(h) for h in found if h]
        return JobPage(jobs, str(int(ids[-1][1])) if more else None)

    async def _list_owned(self, owner: str, status: JobStatus | None, limit: int, top: str) -> JobPage:
        """One owner's jobs from their index; with a status filter, read on until the page is full."""
        page: list[tuple[int, Job]] = []
        index = self.key("owner", owner)
        while True:
            with map_redis_errors():
                ids: list[Any] = await self.redis.zrevrangebyscore(
                    index, top, "-inf", start=0, num=limit + 1, withscores=True
                )
                async with self.redis.pipeline(transaction=False) as pipe:
                    for job_id, _ in ids:
                        pipe.hgetall(self.key("job", _str(job_id)))
                    found = await pipe.execute()
            for (_, seq), h in zip(ids, found, strict=True):
                if h and (status is None or h[b"status"] == status.value.encode()):
                    page.append((int(seq), _job(h)))
            if len(page) > limit:
                return JobPage([job for _, job in page[:limit]], str(page[limit - 1][0]))
            if len(ids) <= limit:
                return JobPage([job for _, job in page], None)
            top = f"({int(ids[-1][1])}"

    async def read_results(self, job_id: str, *, offset: int = 0, limit: int = 1000) -> list[ResultRow]:
        if limit <= 0:
            await self.get(job_id)  # not found is still not found
            return []
        rows: list[ResultRow] = []
        for start in range(offset, offset + limit, 4096):  # HMGET's arguments stay few
            framed = await self._run("results", job_id, start, min(4096, offset + limit - start))
            if framed is None:
                raise job_not_found(job_id)
            rows += [(index, value[1:], value[:1] == b"1") for index, value in _unframe(framed)]
        return rows

    async def read_inputs(
        self, job_id: str, *, after: int = -1, limit: int = 1000
    ) -> list[tuple[int, bytes]]:
        with map_redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(self.key("job", job_id))
                pipe.lrange(self.key("in", job_id), after + 1, after + limit)
                exists, rows = await pipe.execute()
        if not exists:
            raise job_not_found(job_id)
        return [(after + 1 + i, row) for i, row in enumerate(rows)]

    # -- the user's actions -------------------------------------------------------------------------

    async def _act(self, script: str, job_id: str, trigger: Trigger) -> Job:
        reply = await self._run(script, job_id)
        if reply[0] == b"missing":
            raise job_not_found(job_id)
        if reply[0] == b"refused":
            transition(reply[1].decode(), trigger)  # raises FailedPreconditionError with the reason
        return _job(reply[1])

    async def cancel(self, job_id: str) -> Job:
        return await self._act("cancel", job_id, Trigger.CANCEL)

    async def retry(self, job_id: str) -> Job:
        return await self._act("retry", job_id, Trigger.RETRY)

    # -- the worker's -------------------------------------------------------------------------------

    async def claim(self, owner: str, lease_s: float) -> Job | None:
        reply = await self._run("claim", owner, int(lease_s * 1000))
        return None if reply is None else _job(reply)

    async def renew(self, job_id: str, owner: str, lease_s: float) -> JobStatus | None:
        reply = await self._run("renew", job_id, owner, int(lease_s * 1000))
        return None if reply is None else JobStatus(reply.decode())

    async def pending_rows(
        self, job_id: str, *, after: int = -1, limit: int = 256
    ) -> list[tuple[int, bytes]]:
        rows: list[tuple[int, bytes]] = []
        scan = limit  # usually every row after ``after`` is pending; look further when they are not
        while len(rows) < limit:
            reply = await self._run("pending", job_id, after, limit - len(rows), scan)
            if reply is None:
                raise job_not_found(job_id)
            after, ended = int(reply[0]), reply[1]
            rows += _unframe(reply[2])
            if ended:
                break
            scan = min(4 * scan, 8192)
        return rows

    async def write_results(
        self, job_id: str, owner: str, results: Sequence[ResultRow], lease_s: float
    ) -> bool:
        args: list[Any] = [job_id, owner, int(lease_s * 1000)]
        for index, body, is_error in results:
            args += [index, (b"1" if is_error else b"0") + body]
        return bool(await self._run("write_results", *args))

    async def set_stage(self, job_id: str, owner: str, stage: Mapping[str, Any]) -> bool:
        return bool(await self._run("set_stage", job_id, owner, _encode(dict(stage))))

    async def finish(self, job_id: str, owner: str, result: Mapping[str, Any] | None = None) -> Job | None:
        body = _encode(dict(result)) if result is not None else b""
        reply = await self._run("finish", job_id, owner, body)
        return None if reply is None else _job(reply)

    async def fail(
        self, job_id: str, owner: str, error: Mapping[str, Any], *, permanent: bool = False
    ) -> Job | None:
        reply = await self._run("fail", job_id, owner, _encode(dict(error)), int(permanent))
        return None if reply is None else _job(reply)

    async def release(self, job_id: str, owner: str) -> None:
        await self._run("release", job_id, owner)

    # -- webhooks -----------------------------------------------------------------------------------

    async def record_webhook_attempt(self, job_id: str, attempt: Mapping[str, Any], *, status: str) -> None:
        await self._run("webhook", job_id, _encode(dict(attempt)), status)

    async def pending_webhooks(self, limit: int = 100) -> list[Job]:
        with map_redis_errors():
            ids: list[Any] = await self.redis.zrange(self.key("webhooks"), 0, limit - 1)
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(self.key("job", _str(job_id)))
                found = await pipe.execute()
        jobs = [_job(h) for h in found if h]
        return [j for j in jobs if j.status.final and j.webhook_status == "pending"]

    # -- housekeeping -------------------------------------------------------------------------------

    async def purge(self, *, finished_before: float, drafts_before: float) -> int:
        removed = 0
        while True:
            with map_redis_errors():
                ids: list[Any] = await self.redis.zrangebyscore(
                    self.key("finished"), "-inf", f"({finished_before}", start=0, num=50
                )
            for job_id in ids:
                removed += int(await self._run("purge_job", _str(job_id), finished_before))
            if len(ids) < 50:
                break
        with map_redis_errors():
            drafts: list[Any] = await self.redis.zrangebyscore(
                self.key("drafts"), "-inf", f"({drafts_before}"
            )
            for draft in drafts:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.delete(self.key("draft", _str(draft)))
                    pipe.zrem(self.key("drafts"), draft)
                    await pipe.execute()
        await self._run("forget_consumers", _CONSUMER_IDLE_MS)
        return removed


class _RedisUpload(Upload):
    """Rows go to ``P:draft:<id>``, invisible to readers; the commit script renames it into place."""

    def __init__(self, store: RedisJobStore, spec: JobSpec) -> None:
        self.store = store
        self.spec = spec
        self.id = uuid.uuid4().hex
        self.draft = uuid.uuid4().hex
        self.rows = 0
        self._finished = False

    async def append(self, rows: Sequence[bytes]) -> None:
        if not rows:
            return
        store = self.store
        draft = store.key("draft", self.draft)
        with map_redis_errors():
            async with store.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(draft, *rows)
                pipe.expire(draft, _DRAFT_EXPIRE_S)
                pipe.zadd(store.key("drafts"), {self.draft: now()})
                await pipe.execute()
        self.rows += len(rows)

    async def commit(self, request_hash: str) -> tuple[Job, bool]:
        spec = self.spec
        fields: dict[str, Any] = {
            "kind": spec.kind,
            "model": spec.model,
            "max_attempts": spec.max_attempts,
            "metadata": _encode(dict(spec.metadata)),
            "params": _encode(dict(spec.params)),
            "request_hash": request_hash,
        }
        optional = {
            "version": spec.version,
            "callback_url": spec.callback_url,
            "idempotency_key": spec.idempotency_key,
            "owner": spec.owner,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        args = [self.draft, self.id, self.rows, spec.idempotency_key or ""]
        for name, value in fields.items():
            args += [name, value]
        try:
            created, job_id = await self.store._run("commit", *args)
        except BaseException:
            await self.abort()
            raise
        if created == -1:
            await self.abort()
            raise UnavailableError(
                "the upload was abandoned (idle for too long) before it was committed; submit it again",
                retry_after_s=1.0,
            )
        self._finished = True
        return await self.store.get(job_id.decode()), created == 1

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        store = self.store
        with map_redis_errors():
            async with store.redis.pipeline(transaction=True) as pipe:
                pipe.delete(store.key("draft", self.draft))
                pipe.zrem(store.key("drafts"), self.draft)
                await pipe.execute()
