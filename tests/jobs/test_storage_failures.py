"""The job store's disk and file going bad: a full disk is a 503 to retry and the workers back off; a
corrupt, foreign or read-only database stops the start with an error naming the file and the cause."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.backends.sqlite import jobs as sqlite_jobs
from modelwire.backends.sqlite.jobs import SqliteJobStore
from modelwire.errors import ConfigurationError, UnavailableError
from modelwire.jobs.manager import JobRequest
from modelwire.jobs.runner import claim_backoff_s
from modelwire.jobs.store import Job, JobSpec, JobStore, encode_row
from modelwire.settings import Settings
from tests.jobs.conftest import chunks
from tests.jobs.test_runner import until_final
from tests.models import EchoModel

PAGE = 4096


async def filled(path: Path, jobs: int = 40) -> Path:
    """A healthy job database of a few hundred pages, closed (its WAL checkpointed into the file)."""
    store = SqliteJobStore(path)
    await store.open()
    for _ in range(jobs):
        upload = await store.begin(JobSpec(model="echo"))
        await upload.append([encode_row("x" * 500)] * 20)
        await upload.commit("hash")
    await store.close()
    assert (
        not path.with_name(path.name + "-wal").exists()
        or path.with_name(path.name + "-wal").stat().st_size == 0
    )
    return path


def test_a_failing_claim_waits_longer_each_time_up_to_30_s() -> None:
    assert [claim_backoff_s(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert claim_backoff_s(10_000) == 30


class FailingClaims:
    """The store, but its first ``failures`` claims fail as on a full disk."""

    def __init__(self, store: JobStore, failures: int) -> None:
        self.store = store
        self.failures = failures
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def claim(self, owner: str, lease_s: float) -> Job | None:
        self.calls += 1
        if self.calls <= self.failures:
            raise UnavailableError("the job store cannot write (its disk is full); try again later")
        return await self.store.claim(owner, lease_s)


async def test_workers_back_off_while_claiming_fails_and_log_it_once(
    jobs_services: Callable[..., Services], caplog: pytest.LogCaptureFixture
) -> None:
    services = jobs_services(EchoModel(), workers=1)
    failing = FailingClaims(services.jobs.store, failures=2)
    services.jobs.runner.store = failing  # type: ignore[assignment]
    caplog.set_level(logging.INFO, logger="modelwire.jobs")
    await start_services(services)
    try:
        job, _ = await services.jobs.submit(JobRequest(model="echo"), chunks(["a", "b"]))
        assert (await until_final(services, job["id"]))["status"] == "succeeded"
    finally:
        await stop_services(services)
    assert failing.calls >= 3
    warnings = [r.getMessage() for r in caplog.records if "claiming a job failed" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "retrying in 1 s" in warnings[0]
    assert any("claiming jobs works again after 2 failures" in r.getMessage() for r in caplog.records)


async def test_a_database_with_a_corrupt_header_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = await filled(tmp_path / "jobs.sqlite3")
    data = path.read_bytes()
    path.write_bytes(b"this is not SQLite at all" + bytes(75) + data[100:])
    with pytest.raises(ConfigurationError) as refused:
        await SqliteJobStore(path).open()
    assert str(path) in refused.value.message
    assert "not a database" in refused.value.message


async def test_a_database_with_corrupt_pages_fails_its_integrity_check(tmp_path: Path) -> None:
    path = await filled(tmp_path / "jobs.sqlite3")
    data = bytearray(path.read_bytes())
    assert len(data) > 10 * PAGE
    data[3 * PAGE : 7 * PAGE] = b"\xa5" * (4 * PAGE)  # b-tree pages overwritten, the header intact
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigurationError) as refused:
        await SqliteJobStore(path).open()
    assert str(path) in refused.value.message
    assert "corrupt" in refused.value.message
    assert "backup" in refused.value.message


async def test_a_read_only_database_is_refused_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await filled(tmp_path / "jobs.sqlite3", jobs=2)
    connect = sqlite3.connect

    def read_only(database: Any, **options: Any) -> sqlite3.Connection:
        # what a file the process may not write gives (the tests may run as root, who writes anything)
        return connect(f"file:{database}?mode=ro", uri=True, **options)

    monkeypatch.setattr(sqlite_jobs.sqlite3, "connect", read_only)
    with pytest.raises(ConfigurationError) as refused:
        await SqliteJobStore(path).open()
    assert str(path) in refused.value.message
    assert "readonly" in refused.value.message
    assert "writable" in refused.value.message


async def test_a_server_does_not_start_on_a_corrupt_job_store(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(data_dir=tmp_path)
    path = await filled(tmp_path / "jobs.sqlite3", jobs=1)
    path.write_bytes(b"garbage" * 20 + path.read_bytes()[140:])
    services = make_services(EchoModel(), settings=settings, default=False)
    try:
        with pytest.raises(ConfigurationError) as refused:
            await start_services(services)
        assert refused.value.message.startswith(
            f"the job store {path} cannot be used: file is not a database"
        )
    finally:
        await stop_services(services)


async def test_the_integrity_check_can_be_turned_off(tmp_path: Path) -> None:
    path = await filled(tmp_path / "jobs.sqlite3")
    data = bytearray(path.read_bytes())
    data[3 * PAGE : 7 * PAGE] = b"\xa5" * (4 * PAGE)
    path.write_bytes(bytes(data))
    store = SqliteJobStore(path, integrity_check=False)
    await store.open()  # unchecked: the damage shows only where it is read
    await store.close()
