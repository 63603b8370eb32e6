"""What only the Redis job store does, against a real Redis: its keys (what a commit, an abort, a lost
idempotency race and a purge leave), refusing to commit a draft the purge took, its owner index, recovering
a deleted queue stream, an unreachable server. The behaviour it shares with every store is in
``tests/backends/test_job_store_contract.py``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from modelwire.backends.redis.jobs import RedisJobStore
from modelwire.errors import UnavailableError
from modelwire.jobs.store import JobSpec, encode_row
from tests.jobs.conftest import add_job
from tests.redis_server import redis_keys


@pytest.fixture
async def store(redis_backend: str) -> AsyncIterator[RedisJobStore]:
    store = RedisJobStore.from_url(redis_backend)
    await store.open()
    yield store
    await store.close()


def keys(store: RedisJobStore) -> set[str]:
    """Every key of the store, without its prefix (the queue stream and its group always exist)."""
    return redis_keys(store.target.url, store.prefix) - {"queue"}


async def test_a_committed_upload_leaves_no_draft_keys(store: RedisJobStore) -> None:
    upload = await store.begin(JobSpec(model="echo"))
    await upload.append([encode_row("a"), encode_row("b")])
    await upload.commit("h1")
    assert not any(k.startswith("draft") for k in keys(store))


async def test_an_aborted_upload_leaves_no_keys(store: RedisJobStore) -> None:
    upload = await store.begin(JobSpec(model="echo"))
    await upload.append([encode_row(i) for i in range(5000)])
    assert "drafts" in keys(store)
    await upload.abort()
    await upload.abort()  # twice is fine
    assert keys(store) == set()


async def test_the_upload_that_lost_an_idempotency_race_leaves_no_keys(store: RedisJobStore) -> None:
    first = await store.begin(JobSpec(model="echo", idempotency_key="k"))
    second = await store.begin(JobSpec(model="echo", idempotency_key="k"))
    await first.append([encode_row("a")])
    await second.append([encode_row("a")])
    job, _ = await first.commit("same")
    _, created_again = await second.commit("same")
    assert not created_again
    assert {k for k in keys(store) if k.startswith(("in:", "draft"))} == {f"in:{job.id}"}


async def test_a_commit_whose_draft_was_purged_is_refused(store: RedisJobStore) -> None:
    upload = await store.begin(JobSpec(model="echo"))
    await upload.append([encode_row("a")])
    await store.purge(finished_before=0, drafts_before=time.time() + 1)  # abandoned, as after an hour
    with pytest.raises(UnavailableError, match="abandoned"):
        await upload.commit("h")
    assert keys(store) == set()


async def test_a_purge_keeps_the_keys_of_live_jobs_only(store: RedisJobStore) -> None:
    old = await add_job(store, ["a", "b"], idempotency_key="old", callback_url="http://127.0.0.1:9/")
    await store.claim("w", 30)
    await store.write_results(old, "w", [(0, b"1", False)], 30)
    await store.cancel(old)
    keep = await add_job(store, ["c"])  # still queued: never purged
    stale = await store.begin(JobSpec(model="echo"))
    await stale.append([encode_row("x")])
    cutoff = time.time() + 1
    assert await store.purge(finished_before=cutoff, drafts_before=cutoff) == 1
    assert keys(store) == {"seq", "jobs", "status:queued", f"job:{keep}", f"in:{keep}"}


async def test_a_purged_job_leaves_its_owners_index(store: RedisJobStore) -> None:
    alice = "jwt:test|alice"
    kept = await add_job(store, [0], owner=alice)
    purged = await add_job(store, [1], owner=alice)
    await store.cancel(purged)
    await store.purge(finished_before=time.time() + 60, drafts_before=0)
    assert await store.redis.zscore(store.key("owner", alice), purged) is None  # the purge left no trace
    assert await store.redis.zscore(store.key("owner", alice), kept) is not None


async def test_the_queue_recovers_from_a_deleted_stream(store: RedisJobStore, redis_server: str) -> None:
    client = aioredis.Redis.from_url(redis_server)
    try:
        await client.delete(store.key("queue"))  # FLUSHDB-like: the consumer group is gone
    finally:
        await client.aclose()
    assert await store.claim("w", 30) is None
    job_id = await add_job(store, ["a"])
    claimed = await store.claim("w", 30)
    assert claimed is not None
    assert claimed.id == job_id


async def test_unreachable_redis_is_unavailable() -> None:
    store = RedisJobStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(UnavailableError, match="Redis is unreachable"):
        await store.open()
    with pytest.raises(UnavailableError, match="not open"):
        await store.queue_depth()
