from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from modelwire.app.services import Services
from modelwire.backends.sqlite.jobs import SqliteJobStore
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
