"""``open_job_store``: the ``jobs.backend`` URL picks the store (no I/O: nothing is opened here)."""

from __future__ import annotations

from pathlib import Path

from modelwire.backends.redis.jobs import RedisJobStore
from modelwire.backends.resolve import open_job_store
from modelwire.backends.sqlite.jobs import SqliteJobStore
from modelwire.settings import JobsSettings, Settings


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    store = open_job_store(Settings(data_dir=tmp_path))
    assert isinstance(store, SqliteJobStore)
    assert store.path == tmp_path / "jobs.sqlite3"
    custom = open_job_store(
        Settings(data_dir=tmp_path, jobs=JobsSettings(backend=f"sqlite:///{tmp_path}/x.db"))
    )
    assert isinstance(custom, SqliteJobStore)
    assert custom.path == tmp_path / "x.db"


def test_open_store_picks_redis_for_a_redis_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jobs=JobsSettings(backend="redis://127.0.0.1:6379/3?prefix=x"))
    store = open_job_store(settings)
    assert isinstance(store, RedisJobStore)
    assert (store.target.url, store.prefix) == ("redis://127.0.0.1:6379/3", "x:")
