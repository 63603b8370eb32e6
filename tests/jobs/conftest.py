from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from modelwire.app.services import Services
from modelwire.backends.sqlite.jobs import SqliteJobStore
from modelwire.jobs.states import JobStatus
from modelwire.jobs.store import JobSpec, JobStore, encode_row
from modelwire.settings import JobsSettings, Settings


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteJobStore]:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    yield store
    await store.close()


async def add_job(store: JobStore, rows: Sequence[Any], **spec: Any) -> str:
    """Submit ``rows`` straight into the store (no manager); returns the job id."""
    upload = await store.begin(JobSpec(model=spec.pop("model", "echo"), **spec))
    await upload.append([encode_row(r) for r in rows])
    job, created = await upload.commit("hash")
    assert created
    return job.id


async def chunks(*parts: Sequence[Any]) -> AsyncIterator[Sequence[Any]]:
    for part in parts:
        yield part


@pytest.fixture
def jobs_services(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> Callable[..., Services]:
    """Services (default model plus the given test models) with job settings suited to tests."""

    def make(*models: Any, **jobs: Any) -> Services:
        values: dict[str, Any] = {
            "lease_s": 2.0,
            "progress_interval_ms": 0,
            "webhook_allow": ("127.0.0.1",),
        }
        values.update(jobs)
        settings = make_settings(jobs=JobsSettings(**values))
        return make_services(*models, settings=settings)

    return make


async def owners_contract(store: JobStore) -> tuple[str, str]:
    """Every store: jobs keep their owner, list by owner (with status and paging), and purge keeps it right.

    Returns ``(an owner, a job of theirs that was purged)`` for backend-specific checks.
    """
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
    return alice, a1
