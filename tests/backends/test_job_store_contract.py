"""What every ``JobStore`` does, run against each one (``[sqlite]``, ``[redis]``): staging, idempotent
results, leases, the lifecycle, paging, purge, webhooks, owners.

Only behaviour seen through the ``JobStore`` interface is here; how a store keeps it (SQLite's tables, Redis's
keys) is tested next to it, in ``sqlite/test_jobs.py`` and ``redis/test_jobs.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from modelwire.errors import FailedPreconditionError, JobNotFoundError, UnavailableError
from modelwire.jobs.states import JobStatus
from modelwire.jobs.store import JobSpec, JobStore, encode_row
from tests.backends.conftest import ConnectJobStore
from tests.jobs.conftest import add_job

# -- uploads ---------------------------------------------------------------------------------------------


async def test_commit_makes_a_queued_job_with_every_row(job_store: JobStore) -> None:
    store = job_store
    upload = await store.begin(JobSpec(model="echo", metadata={"batch": 7}, version="2"))
    await upload.append([encode_row("a"), encode_row("b")])
    await upload.append([encode_row({"x": 1})])
    assert upload.rows == 3
    assert await store.queue_depth() == 0  # staged rows are invisible
    assert (await store.list_jobs()).jobs == []
    job, created = await upload.commit("h1")
    assert created
    assert (job.status, job.total, job.done, job.metadata, job.version) == (
        JobStatus.QUEUED,
        3,
        0,
        {"batch": 7},
        "2",
    )
    assert await store.read_inputs(job.id) == [(0, b'"a"'), (1, b'"b"'), (2, b'{"x":1}')]
    assert await store.read_inputs(job.id, after=0, limit=1) == [(1, b'"b"')]
    assert await store.queue_depth() == 1
    assert (await store.get(job.id)).request_hash == "h1"


async def test_abort_leaves_nothing_behind(job_store: JobStore) -> None:
    """What is left in the store's own storage: ``test_an_aborted_upload_leaves_no_rows`` (SQLite),
    ``test_an_aborted_upload_leaves_no_keys`` (Redis)."""
    store = job_store
    upload = await store.begin(JobSpec(model="echo"))
    await upload.append([encode_row(i) for i in range(5000)])
    await upload.abort()
    await upload.abort()  # twice is fine
    assert (await store.list_jobs()).jobs == []
    assert await store.queue_depth() == 0


async def test_a_concurrent_idempotency_key_returns_the_first_job(job_store: JobStore) -> None:
    store = job_store
    first = await store.begin(JobSpec(model="echo", idempotency_key="k"))
    second = await store.begin(JobSpec(model="echo", idempotency_key="k"))
    await first.append([encode_row("a")])
    await second.append([encode_row("a")])
    job, created = await first.commit("same")
    again, created_again = await second.commit("same")
    assert created
    assert not created_again
    assert again.id == job.id
    assert (await store.find_idempotent("k")) == await store.get(job.id)
    assert await store.find_idempotent("other") is None


async def test_unknown_job_is_not_found(job_store: JobStore) -> None:
    store = job_store
    calls = (
        store.get("nope"),
        store.cancel("nope"),
        store.retry("nope"),
        store.read_results("nope"),
        store.read_inputs("nope"),
        store.pending_rows("nope"),
    )
    for call in calls:
        with pytest.raises(JobNotFoundError):
            await call


# -- claims and leases -------------------------------------------------------------------------------------


async def test_claim_takes_the_oldest_queued_job_once(job_store: JobStore) -> None:
    store = job_store
    first = await add_job(store, ["a"])
    second = await add_job(store, ["b"])
    a = await store.claim("w1", 30)
    b = await store.claim("w2", 30)
    assert a is not None
    assert b is not None
    assert (a.id, b.id) == (first, second)
    assert (a.status, a.attempts, a.lease_owner) == (JobStatus.RUNNING, 1, "w1")
    assert a.started_at is not None
    assert a.lease_expires_at is not None
    assert a.lease_expires_at > a.started_at + 29
    assert await store.claim("w3", 30) is None


async def test_two_processes_never_claim_the_same_job(
    job_store: JobStore, connect_job_store: ConnectJobStore
) -> None:
    store = job_store
    other = await connect_job_store()  # a second connection, as a second process would have
    ids = {await add_job(store, [i]) for i in range(20)}
    claims = await asyncio.gather(*(s.claim(f"w{i}", 30) for i in range(20) for s in (store, other)))
    taken = [c.id for c in claims if c is not None]
    assert sorted(taken) == sorted(ids)


@pytest.mark.parametrize("lease_runs_out", ["claimed briefly", "renewed briefly"])
async def test_a_lost_lease_stops_the_old_worker(job_store: JobStore, lease_runs_out: str) -> None:
    store = job_store
    job_id = await add_job(store, ["a", "b"])
    if lease_runs_out == "claimed briefly":
        assert await store.claim("dead", 0.05) is not None
    else:
        assert await store.claim("dead", 30) is not None
        assert await store.claim("early", 30) is None  # the lease still runs
        assert await store.renew(job_id, "dead", 0.05) is JobStatus.RUNNING  # its last renewal, then it died
    await asyncio.sleep(0.1)
    again = await store.claim("alive", 30)
    assert again is not None
    assert again.id == job_id
    assert again.attempts == 2
    assert again.lease_owner == "alive"
    assert await store.renew(job_id, "dead", 30) is None
    assert not await store.write_results(job_id, "dead", [(0, b"1", False)], 30)
    assert not await store.set_stage(job_id, "dead", {"stage": "x"})
    assert await store.finish(job_id, "dead") is None
    assert await store.fail(job_id, "dead", {"code": "INTERNAL"}) is None
    await store.release(job_id, "dead")  # does nothing either
    assert await store.renew(job_id, "alive", 30) is JobStatus.RUNNING
    assert await store.write_results(job_id, "alive", [(0, b"1", False)], 30)
    assert await store.set_stage(job_id, "alive", {"stage": "x"})
    assert (await store.get(job_id)).stage == {"stage": "x"}


async def test_renewing_keeps_the_job_from_other_workers(job_store: JobStore) -> None:
    store = job_store
    job_id = await add_job(store, ["a", "b"])
    assert await store.claim("w", 0.05) is not None
    assert await store.renew(job_id, "w", 30) is JobStatus.RUNNING
    await asyncio.sleep(0.1)  # past the first lease, not the renewed one
    assert await store.claim("thief", 30) is None
    assert await store.write_results(job_id, "w", [(0, b"1", False)], 0.05)  # writing renews too
    await asyncio.sleep(0.1)
    stolen = await store.claim("thief", 30)
    assert stolen is not None
    assert (stolen.attempts, stolen.done) == (2, 1)
    assert await store.pending_rows(job_id) == [(1, b'"b"')]


async def test_release_gives_the_attempt_back(job_store: JobStore) -> None:
    store = job_store
    job_id = await add_job(store, ["a"])
    await store.claim("w", 30)
    await store.release(job_id, "w")
    job = await store.get(job_id)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None)
    again = await store.claim("other", 30)  # at once, not after the lease
    assert again is not None
    assert again.attempts == 1


# -- results -----------------------------------------------------------------------------------------------


async def test_results_are_idempotent_and_counted_once(job_store: JobStore) -> None:
    store = job_store
    job_id = await add_job(store, ["a", "b", "c", "d"])
    job = await store.claim("w", 30)
    assert job is not None
    assert await store.write_results(job_id, "w", [(0, b'{"ok":1}', False), (1, b'{"code":"X"}', True)], 30)
    assert (await store.get(job_id)).errors == 1
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
    assert await store.read_results(job_id, offset=1, limit=2) == [(1, b'{"ok":2}', False)]
    assert await store.read_results(job_id, offset=1, limit=0) == []
    assert await store.pending_rows(job_id) == [(2, b'"c"')]
    assert await store.pending_rows(job_id, after=2) == []


async def test_pending_rows_skip_long_runs_of_finished_rows(job_store: JobStore) -> None:
    store = job_store
    job_id = await add_job(store, list(range(3000)))
    await store.claim("w", 30)
    done = [(i, b"0", False) for i in range(3000) if i not in (5, 2100, 2999)]
    for start in range(0, len(done), 500):
        assert await store.write_results(job_id, "w", done[start : start + 500], 30)
    assert [i for i, _ in await store.pending_rows(job_id, limit=2)] == [5, 2100]
    assert [i for i, _ in await store.pending_rows(job_id, after=5)] == [2100, 2999]
    assert await store.pending_rows(job_id, after=2999) == []


async def test_results_stream_in_input_order_and_page(job_store: JobStore) -> None:
    store = job_store
    job_id = await add_job(store, list(range(2500)))
    await store.claim("w", 30)
    for start in (2000, 0, 1000):  # written out of order
        await store.write_results(job_id, "w", [(i, b"%d" % i, False) for i in range(start, start + 500)], 30)
    streamed = [r[0] async for r in store.results(job_id)]
    assert streamed == [*range(500), *range(1000, 1500), *range(2000, 2500)]
    page = [r[0] async for r in store.results(job_id, offset=1400, limit=700)]
    assert page == [*range(1400, 1500), *range(2000, 2100)]
    wide = await store.read_results(job_id, offset=0, limit=5000)  # more than one read (script call)
    assert [r[0] for r in wide] == streamed
    assert wide[500] == (1000, b"1000", False)


# -- the lifecycle -----------------------------------------------------------------------------------------


async def test_failed_attempts_requeue_then_dead_letter_then_retry(job_store: JobStore) -> None:
    store = job_store
    job_id = await add_job(store, ["a"], max_attempts=2)
    error = {"code": "UNAVAILABLE", "message": "overloaded"}
    assert await store.claim("w", 30) is not None
    requeued = await store.fail(job_id, "w", error)
    assert requeued is not None
    assert (requeued.status, requeued.attempts, requeued.error) == (JobStatus.QUEUED, 1, error)
    assert requeued.lease_owner is None
    assert await store.queue_depth() == 1
    assert await store.claim("w", 30) is not None
    dead = await store.fail(job_id, "w", {"code": "UNAVAILABLE", "message": "again"})
    assert dead is not None
    assert dead.error is not None
    assert (dead.status, dead.attempts, dead.error["message"]) == (JobStatus.FAILED, 2, "again")
    assert dead.finished_at is not None
    assert await store.claim("w", 30) is None  # dead letters are not picked up
    assert await store.queue_depth() == 0
    retried = await store.retry(job_id)
    assert (retried.status, retried.attempts, retried.error, retried.finished_at) == (
        JobStatus.QUEUED,
        0,
        None,
        None,
    )
    with pytest.raises(FailedPreconditionError, match="only failed jobs"):
        await store.retry(job_id)
    claimed = await store.claim("w", 30)
    assert claimed is not None
    assert claimed.id == job_id


async def test_a_requeued_job_goes_first(job_store: JobStore) -> None:
    store = job_store
    first = await add_job(store, ["a"])
    second = await add_job(store, ["b"])
    assert (await store.claim("w", 30)) is not None
    await store.fail(first, "w", {"code": "UNAVAILABLE"})
    again = await store.claim("w", 30)
    assert again is not None
    assert again.id == first
    await store.release(first, "w")
    claims = [await store.claim(f"w{i}", 30) for i in range(3)]
    assert [c.id if c else None for c in claims] == [first, second, None]


async def test_permanent_failure_skips_the_remaining_attempts(job_store: JobStore) -> None:
    store = job_store
    job_id = await add_job(store, ["a"], max_attempts=5)
    await store.claim("w", 30)
    failed = await store.fail(job_id, "w", {"code": "NOT_FOUND"}, permanent=True)
    assert failed is not None
    assert failed.status is JobStatus.FAILED


async def test_finish_and_cancel(job_store: JobStore) -> None:
    store = job_store
    done_id = await add_job(store, ["a"], callback_url="http://127.0.0.1:9/hook")
    await store.claim("w", 30)
    finished = await store.finish(done_id, "w", {"accuracy": 0.9})
    assert finished is not None
    assert (finished.status, finished.result, finished.webhook_status, finished.lease_owner) == (
        JobStatus.SUCCEEDED,
        {"accuracy": 0.9},
        "pending",
        None,
    )
    assert await store.finish(done_id, "w") is None  # once
    with pytest.raises(FailedPreconditionError, match="already succeeded"):
        await store.cancel(done_id)
    queued_id = await add_job(store, ["a"])
    assert (await store.cancel(queued_id)).status is JobStatus.CANCELLED
    running_id = await add_job(store, ["a"])
    claimed = await store.claim("w", 30)
    assert claimed is not None
    assert claimed.id == running_id  # the cancelled queued job was skipped
    assert (await store.cancel(running_id)).status is JobStatus.CANCELLED
    assert await store.renew(running_id, "w", 30) is JobStatus.CANCELLED  # the worker learns it
    assert not await store.write_results(running_id, "w", [(0, b"1", False)], 30)
    assert await store.queue_depth() == 0
    assert await store.claim("w", 30) is None


# -- listing, purging, webhooks, owners ---------------------------------------------------------------------


async def test_list_filters_and_pages_newest_first(job_store: JobStore) -> None:
    store = job_store
    ids = [await add_job(store, [i]) for i in range(5)]
    await store.cancel(ids[1])
    page = await store.list_jobs(limit=2)
    assert [j.id for j in page.jobs] == [ids[4], ids[3]]
    rest = await store.list_jobs(limit=10, cursor=page.cursor)
    assert [j.id for j in rest.jobs] == [ids[2], ids[1], ids[0]]
    assert rest.cursor is None
    cancelled = await store.list_jobs(status=JobStatus.CANCELLED)
    assert [j.id for j in cancelled.jobs] == [ids[1]]
    queued = await store.list_jobs(status=JobStatus.QUEUED, limit=3)
    assert [j.id for j in queued.jobs] == [ids[4], ids[3], ids[2]]
    assert [j.id for j in (await store.list_jobs(status=JobStatus.QUEUED, cursor=queued.cursor)).jobs] == [
        ids[0]
    ]


async def test_purge_removes_old_final_jobs_and_abandoned_uploads(job_store: JobStore) -> None:
    """What is left in storage: ``test_a_purge_keeps_the_rows_of_live_jobs_only`` (SQLite),
    ``test_a_purge_keeps_the_keys_of_live_jobs_only`` (Redis)."""
    store = job_store
    old = await add_job(store, ["a", "b"], idempotency_key="old", callback_url="http://127.0.0.1:9/")
    await store.claim("w", 30)
    await store.write_results(old, "w", [(0, b"1", False)], 30)
    await store.cancel(old)
    keep = await add_job(store, ["c"])  # still queued: never purged
    stale = await store.begin(JobSpec(model="echo"))
    await stale.append([encode_row("x")])
    assert await store.purge(finished_before=time.time() - 60, drafts_before=0) == 0  # too recent
    cutoff = time.time() + 1
    assert await store.purge(finished_before=cutoff, drafts_before=cutoff) == 1
    with pytest.raises(JobNotFoundError):
        await store.get(old)
    assert await store.find_idempotent("old") is None
    assert (await store.get(keep)).status is JobStatus.QUEUED


async def test_an_upload_purged_before_its_commit_is_refused_not_committed_empty(job_store: JobStore) -> None:
    store = job_store
    upload = await store.begin(JobSpec(model="echo"))
    await upload.append([encode_row("x"), encode_row("y")])
    cutoff = time.time() + 1
    assert await store.purge(finished_before=0, drafts_before=cutoff) == 0  # counts jobs, not uploads
    with pytest.raises(UnavailableError, match="abandoned"):
        await upload.commit("hash")
    assert (await store.list_jobs()).jobs == []
    assert await store.claim("w", 30) is None


@pytest.mark.parametrize(
    ("attempts", "outcome"),
    [
        pytest.param(
            [
                ({"attempt": 1, "time": 1.0, "status_code": 500}, "pending"),
                ({"attempt": 2, "time": 2.0, "status_code": 204}, "delivered"),
            ],
            "delivered",
            id="delivered",
        ),
        pytest.param(
            [
                ({"attempt": 1, "time": 1795497806.123456, "status_code": 500}, "pending"),
                ({"attempt": 2, "time": 2.0, "error": 'refused "x"'}, "failed"),
            ],
            "failed",
            id="failed",
        ),
    ],
)
async def test_webhook_attempts_are_recorded(
    job_store: JobStore, attempts: list[tuple[dict[str, Any], str]], outcome: str
) -> None:
    store = job_store
    job_id = await add_job(store, ["a"], callback_url="http://127.0.0.1:9/")
    await store.cancel(job_id)
    assert [j.id for j in await store.pending_webhooks()] == [job_id]
    for attempt, status in attempts:
        await store.record_webhook_attempt(job_id, attempt, status=status)
    job = await store.get(job_id)
    assert job.webhook_status == outcome
    assert list(job.webhook_attempts) == [attempt for attempt, _ in attempts]
    assert await store.pending_webhooks() == []
    assert job.to_dict()["webhook"]["attempts"][1]["attempt"] == 2
    await store.record_webhook_attempt("gone", {"attempt": 1}, status="failed")  # no job: nothing


async def test_a_job_without_callback_has_no_webhook(job_store: JobStore) -> None:
    store = job_store
    job_id = await add_job(store, ["a"])
    await store.claim("w", 30)
    finished = await store.finish(job_id, "w")
    assert finished is not None
    assert (finished.webhook_status, finished.result) == (None, None)
    assert await store.pending_webhooks() == []


async def test_jobs_keep_their_owner_and_list_by_owner(job_store: JobStore) -> None:
    """With status and paging, and a purge keeps the lists right (Redis's own owner index:
    ``test_a_purged_job_leaves_its_owners_index``)."""
    store = job_store
    alice, bob = "jwt:test|alice", "jwt:test|bob"
    a0, b0, a1, a2, b1 = [
        await add_job(store, [i], owner=who) for i, who in enumerate([alice, bob, alice, alice, bob])
    ]
    legacy = await add_job(store, ["before owners were kept"])
    assert ((await store.get(a0)).owner, (await store.get(legacy)).owner) == (alice, None)
    await store.cancel(a1)
    page = await store.list_jobs(owner=alice, limit=2)
    assert [j.id for j in page.jobs] == [a2, a1]
    rest = await store.list_jobs(owner=alice, cursor=page.cursor)
    assert ([j.id for j in rest.jobs], rest.cursor) == ([a0], None)
    queued = await store.list_jobs(owner=alice, status=JobStatus.QUEUED, limit=1)
    assert [j.id for j in queued.jobs] == [a2]
    rest = await store.list_jobs(owner=alice, status=JobStatus.QUEUED, limit=1, cursor=queued.cursor)
    assert ([j.id for j in rest.jobs], rest.cursor) == ([a0], None)
    assert [j.id for j in (await store.list_jobs(owner=bob)).jobs] == [b1, b0]
    assert (await store.list_jobs(owner="nobody")).jobs == []
    assert len((await store.list_jobs()).jobs) == 6
    await store.purge(finished_before=time.time() + 60, drafts_before=0)
    assert [j.id for j in (await store.list_jobs(owner=alice)).jobs] == [a2, a0]


# -- connections -------------------------------------------------------------------------------------------


async def test_jobs_survive_reopening_the_store(
    job_store: JobStore, connect_job_store: ConnectJobStore
) -> None:
    store = job_store
    job_id = await add_job(store, ["a", "b"])
    await store.close()
    with pytest.raises(UnavailableError, match="not open"):
        await store.get(job_id)
    reopened = await connect_job_store()
    assert (await reopened.get(job_id)).total == 2
    assert (await reopened.claim("w", 30)) is not None
    await store.open()  # the fixture closes it
