"""What only the SQLite job store does: its tables (what an abort, a lost idempotency race and a purge leave
in them) and migrating a file made by an older modelwire. The behaviour it shares with every store is in
``tests/backends/test_job_store_contract.py``."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelwire.backends.sqlite.jobs import _SCHEMA, SqliteJobStore
from modelwire.errors import JobNotFoundError
from modelwire.jobs.states import JobStatus
from modelwire.jobs.store import JobSpec, encode_row
from tests.jobs.conftest import add_job


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteJobStore]:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    yield store
    await store.close()


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def columns(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {r[1] for r in db.execute("PRAGMA table_info(jobs)")}


async def test_an_aborted_upload_leaves_no_rows(store: SqliteJobStore) -> None:
    upload = await store.begin(JobSpec(model="echo"))
    await upload.append([encode_row(i) for i in range(5000)])
    await upload.abort()
    await upload.abort()  # twice is fine
    assert count(store.path, "inputs") == 0
    assert count(store.path, "drafts") == 0
    assert count(store.path, "jobs") == 0


async def test_the_upload_that_lost_an_idempotency_race_leaves_no_rows(store: SqliteJobStore) -> None:
    first = await store.begin(JobSpec(model="echo", idempotency_key="k"))
    second = await store.begin(JobSpec(model="echo", idempotency_key="k"))
    await first.append([encode_row("a")])
    await second.append([encode_row("a")])
    await first.commit("same")
    _, created_again = await second.commit("same")
    assert not created_again
    assert count(store.path, "inputs") == 1  # the loser's rows were dropped


async def test_a_purge_keeps_the_rows_of_live_jobs_only(store: SqliteJobStore) -> None:
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
