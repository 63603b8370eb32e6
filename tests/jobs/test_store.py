"""The SQLite ``JobStore``: staging, idempotent results, leases, the lifecycle, paging, purge."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import msgspec
import pytest

from modelwire.backends.resolve import open_job_store
from modelwire.backends.sqlite.jobs import _SCHEMA, SqliteJobStore
from modelwire.errors import FailedPreconditionError, InvalidInputError, JobNotFoundError
from modelwire.jobs.states import JobStatus
from modelwire.jobs.store import (
    JobSpec,
    decode_row,
    encode_row,
    encode_row_error,
    render_result,
)
from modelwire.settings import JobsSettings, Settings
from tests.jobs.conftest import add_job, owners_contract


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def test_commit_makes_a_queued_job_with_every_row(store: SqliteJobStore) -> None:
    upload = await store.begin(JobSpec(model="echo", metadata={"batch": 7}))
    await upload.append([encode_row("a"), encode_row("b")])
    await upload.append([encode_row({"x": 1})])
    assert upload.rows == 3
    assert await store.queue_depth() == 0  # staged rows are invisible
    job, created = await upload.commit("h1")
    assert created
    assert (job.status, job.total, job.done, job.metadata) == (JobStatus.QUEUED, 3, 0, {"batch": 7})
    assert await store.read_inputs(job.id) == [(0, b'"a"'), (1, b'"b"'), (2, b'{"x":1}')]
    assert await store.queue_depth() == 1
    assert (await store.get(job.id)).request_hash == "h1"


async def test_abort_leaves_nothing_behind(store: SqliteJobStore) -> None:
    upload = await store.begin(JobSpec(model="echo"))
    await upload.append([encode_row(i) for i in range(5000)])
    await upload.abort()
    await upload.abort()  # twice is fine
    assert count(store.path, "inputs") == 0
    assert count(store.path, "drafts") == 0
    assert count(store.path, "jobs") == 0


async def test_a_concurrent_idempotency_key_returns_the_first_job(store: SqliteJobStore) -> None:
    first = await store.begin(JobSpec(model="echo", idempotency_key="k"))
    second = await store.begin(JobSpec(model="echo", idempotency_key="k"))
    await first.append([encode_row("a")])
    await second.append([encode_row("a")])
    job, created = await first.commit("same")
    again, created_again = await second.commit("same")
    assert created
    assert not created_again
    assert again.id == job.id
    assert count(store.path, "inputs") == 1  # the loser's rows were dropped
    assert (await store.find_idempotent("k")) == await store.get(job.id)
    assert await store.find_idempotent("other") is None


async def test_unknown_job_is_not_found(store: SqliteJobStore) -> None:
    for call in (store.get("nope"), store.cancel("nope"), store.retry("nope"), store.read_results("nope")):
        with pytest.raises(JobNotFoundError):
            await call


async def test_claim_takes_the_oldest_queued_job_once(store: SqliteJobStore) -> None:
    first = await add_job(store, ["a"])
    second = await add_job(store, ["b"])
    a = await store.claim("w1", 30)
    b = await store.claim("w2", 30)
    assert a is not None
    assert b is not None
    assert (a.id, b.id) == (first, second)
    assert (a.status, a.attempts, a.lease_owner) == (JobStatus.RUNNING, 1, "w1")
    assert await store.claim("w3", 30) is None


async def test_two_processes_never_claim_the_same_job(store: SqliteJobStore, tmp_path: Path) -> None:
    other = SqliteJobStore(store.path)  # a second connection, as a second process would have
    await other.open()
    try:
        ids = {await add_job(store, [i]) for i in range(20)}
        claims = await asyncio.gather(*(s.claim(f"w{i}", 30) for i in range(20) for s in (store, other)))
        taken = [c.id for c in claims if c is not None]
        assert sorted(taken) == sorted(ids)
    finally:
        await other.close()


async def test_results_are_idempotent_and_counted_once(store: SqliteJobStore) -> None:
    job_id = await add_job(store, ["a", "b", "c", "d"])
    job = await store.claim("w", 30)
    assert job is not None
    assert await store.write_results(job_id, "w", [(0, b'{"ok":1}', False), (1, b'{"code":"X"}', True)], 30)
    # the same rows again (a worker that re-processed them after a crash), plus a new one
    assert await store.write_results(job_id, "w", [(1, b'{"ok":2}', False), (0, b'{"ok":1}', False)], 30)
    assert await store.write_results(job_id, "w", [(3, b"5", False)], 30)
    state = await store.get(job_id)
    assert (state.done, state.errors) == (3, 0)
    assert await store.read_results(job_id) == [
        (0, b'{"ok":1}', False),
        (1, b'{"ok":2}', False),
        (3, b"5", False),
    ]
    assert await store.pending_rows(job_id) == [(2, b'"c"')]
    assert await store.pending_rows(job_id, after=2) == []


async def test_a_lost_lease_stops_the_old_worker(store: SqliteJobStore) -> None:
    job_id = await add_job(store, ["a", "b"])
    assert await store.claim("dead", 0.05) is not None
    await asyncio.sleep(0.1)
    again = await store.claim("alive", 30)
    assert again is not None
    assert again.id == job_id
    assert again.attempts == 2
    assert await store.renew(job_id, "dead", 30) is None
    assert not await store.write_results(job_id, "dead", [(0, b"1", False)], 30)
    assert not await store.set_stage(job_id, "dead", {"stage": "x"})
    assert await store.finish(job_id, "dead") is None
    assert await store.fail(job_id, "dead", {"code": "INTERNAL"}) is None
    assert await store.renew(job_id, "alive", 30) is JobStatus.RUNNING
    assert await store.write_results(job_id, "alive", [(0, b"1", False)], 30)


async def test_failed_attempts_requeue_then_dead_letter_then_retry(store: SqliteJobStore) -> None:
    job_id = await add_job(store, ["a"], max_attempts=2)
    error = {"code": "UNAVAILABLE", "message": "overloaded"}
    assert await store.claim("w", 30) is not None
    requeued = await store.fail(job_id, "w", error)
    assert requeued is not None
    assert (requeued.status, requeued.attempts, requeued.error) == (JobStatus.QUEUED, 1, error)
    assert await store.claim("w", 30) is not None
    dead = await store.fail(job_id, "w", {"code": "UNAVAILABLE", "message": "again"})
    assert dead is not None
    assert (dead.status, dead.attempts, dead.error["message"]) == (JobStatus.FAILED, 2, "again")
    assert dead.finished_at is not None
    assert await store.claim("w", 30) is None  # dead letters are not picked up
    retried = await store.retry(job_id)
    assert (retried.status, retried.attempts, retried.error, retried.finished_at) == (
        JobStatus.QUEUED,
        0,
        None,
        None,
    )
    with pytest.raises(FailedPreconditionError):
        await store.retry(job_id)


async def test_permanent_failure_skips_the_remaining_attempts(store: SqliteJobStore) -> None:
    job_id = await add_job(store, ["a"], max_attempts=5)
    await store.claim("w", 30)
    failed = await store.fail(job_id, "w", {"code": "NOT_FOUND"}, permanent=True)
    assert failed is not None
    assert failed.status is JobStatus.FAILED


async def test_finish_and_cancel(store: SqliteJobStore) -> None:
    done_id = await add_job(store, ["a"], callback_url="http://127.0.0.1:9/hook")
    await store.claim("w", 30)
    finished = await store.finish(done_id, "w", {"accuracy": 0.9})
    assert finished is not None
    assert (finished.status, finished.result, finished.webhook_status) == (
        JobStatus.SUCCEEDED,
        {"accuracy": 0.9},
        "pending",
    )
    with pytest.raises(FailedPreconditionError):
        await store.cancel(done_id)
    queued_id = await add_job(store, ["a"])
    assert (await store.cancel(queued_id)).status is JobStatus.CANCELLED
    running_id = await add_job(store, ["a"])
    await store.claim("w", 30)
    assert (await store.cancel(running_id)).status is JobStatus.CANCELLED
    assert await store.renew(running_id, "w", 30) is JobStatus.CANCELLED  # the worker learns it
    assert not await store.write_results(running_id, "w", [(0, b"1", False)], 30)
    assert await store.queue_depth() == 0


async def test_release_gives_the_attempt_back(store: SqliteJobStore) -> None:
    job_id = await add_job(store, ["a"])
    await store.claim("w", 30)
    await store.release(job_id, "w")
    job = await store.get(job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None)


async def test_list_filters_and_pages_newest_first(store: SqliteJobStore) -> None:
    ids = [await add_job(store, [i]) for i in range(5)]
    await store.cancel(ids[1])
    page = await store.list_jobs(limit=2)
    assert [j.id for j in page.jobs] == [ids[4], ids[3]]
    rest = await store.list_jobs(limit=10, cursor=page.cursor)
    assert [j.id for j in rest.jobs] == [ids[2], ids[1], ids[0]]
    assert rest.cursor is None
    cancelled = await store.list_jobs(status=JobStatus.CANCELLED)
    assert [j.id for j in cancelled.jobs] == [ids[1]]


async def test_results_stream_in_input_order_and_page(store: SqliteJobStore) -> None:
    job_id = await add_job(store, list(range(2500)))
    await store.claim("w", 30)
    for start in (2000, 0, 1000):  # written out of order
        await store.write_results(job_id, "w", [(i, b"%d" % i, False) for i in range(start, start + 500)], 30)
    streamed = [r[0] async for r in store.results(job_id)]
    assert streamed == [*range(500), *range(1000, 1500), *range(2000, 2500)]
    page = [r[0] async for r in store.results(job_id, offset=1400, limit=700)]
    assert page == [*range(1400, 1500), *range(2000, 2100)]


async def test_purge_removes_old_final_jobs_and_abandoned_uploads(store: SqliteJobStore) -> None:
    old = await add_job(store, ["a", "b"])
    await store.cancel(old)
    keep = await add_job(store, ["c"])  # still queued: never purged
    stale = await store.begin(JobSpec(model="echo"))
    await stale.append([encode_row("x")])
    cutoff = time.time() + 1
    assert await store.purge(finished_before=cutoff, drafts_before=cutoff) == 1
    with pytest.raises(JobNotFoundError):
        await store.get(old)
    assert (await store.get(keep)).status is JobStatus.QUEUED
    assert count(store.path, "drafts") == 0
    assert count(store.path, "inputs") == 1


async def test_webhook_attempts_are_recorded(store: SqliteJobStore) -> None:
    job_id = await add_job(store, ["a"], callback_url="http://127.0.0.1:9/")
    await store.cancel(job_id)
    assert [j.id for j in await store.pending_webhooks()] == [job_id]
    await store.record_webhook_attempt(
        job_id, {"attempt": 1, "time": 1.0, "status_code": 500}, status="pending"
    )
    await store.record_webhook_attempt(
        job_id, {"attempt": 2, "time": 2.0, "status_code": 204}, status="delivered"
    )
    job = await store.get(job_id)
    assert job.webhook_status == "delivered"
    assert [a["status_code"] for a in job.webhook_attempts] == [500, 204]
    assert await store.pending_webhooks() == []
    assert job.to_dict()["webhook"]["attempts"][1]["attempt"] == 2


async def test_jobs_survive_reopening_the_file(store: SqliteJobStore) -> None:
    job_id = await add_job(store, ["a", "b"])
    await store.close()
    reopened = SqliteJobStore(store.path)
    await reopened.open()
    try:
        assert (await reopened.get(job_id)).total == 2
    finally:
        await reopened.close()
    await store.open()  # the fixture closes it


def test_row_encoding_round_trips_values_and_errors() -> None:
    assert decode_row(encode_row({"a": [1, "b"]})) == {"a": [1, "b"]}
    error = decode_row(encode_row_error(InvalidInputError("line 3 is not valid JSON")))
    assert isinstance(error, InvalidInputError)
    assert error.message == "line 3 is not valid JSON"


@pytest.mark.parametrize(
    ("row", "line"),
    [
        ((0, b'{"sentiment":"positive"}', False), {"index": 0, "sentiment": "positive"}),
        ((3, b"{}", False), {"index": 3}),
        ((4, b" { } ", False), {"index": 4, "result": {}}),
        ((1, b"[1,2]", False), {"index": 1, "result": [1, 2]}),
        ((2, b'{"code":"INVALID_ARGUMENT"}', True), {"index": 2, "error": {"code": "INVALID_ARGUMENT"}}),
    ],
)
def test_render_result(row: tuple[int, bytes, bool], line: dict[str, object]) -> None:
    assert msgspec.json.decode(render_result(row)) == line


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    store = open_job_store(Settings(data_dir=tmp_path))
    assert isinstance(store, SqliteJobStore)
    assert store.path == tmp_path / "jobs.sqlite3"
    custom = open_job_store(
        Settings(data_dir=tmp_path, jobs=JobsSettings(backend=f"sqlite:///{tmp_path}/x.db"))
    )
    assert isinstance(custom, SqliteJobStore)
    assert custom.path == tmp_path / "x.db"


async def test_jobs_keep_their_owner_and_list_by_owner(store: SqliteJobStore) -> None:
    await owners_contract(store)


def columns(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {r[1] for r in db.execute("PRAGMA table_info(jobs)")}


def test_a_database_from_before_owners_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        # the tables as modelwire made them before owners were kept, with one job
        db.executescript(_SCHEMA.replace(",\n    owner TEXT\n", "\n"))
        db.execute("INSERT INTO drafts (created_at, updated_at) VALUES (0, 0)")  # seq 1, as submit does
        db.execute("DELETE FROM drafts")
        db.execute(
            "INSERT INTO jobs (seq, id, kind, model, status, total, max_attempts, created_at, updated_at, "
            "metadata, params) VALUES (1, 'old', 'predict', 'echo', 'queued', 1, 3, 0, 0, '{}', '{}')"
        )
    assert "owner" not in columns(path)

    async def reopen(submit: bool) -> tuple[str | None, list[str]]:
        store = SqliteJobStore(path)
        await store.open()  # migrates
        try:
            if submit:
                await add_job(store, ["new"], owner="key:k1")
            old = await store.get("old")
            return old.owner, [j.model for j in (await store.list_jobs(owner="key:k1")).jobs]
        finally:
            await store.close()

    assert asyncio.run(reopen(True)) == (None, ["echo"])
    assert "owner" in columns(path)
    assert asyncio.run(reopen(False)) == (None, ["echo"])  # opening again migrates nothing twice
