"""``open_job_store``: the ``jobs.backend`` URL picks the store (no I/O: nothing is opened here); a broker URL
gets its credentials back only to connect."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelwire.backends.redis.jobs import RedisJobStore
from modelwire.backends.resolve import open_job_store
from modelwire.backends.sqlite.jobs import SqliteJobStore
from modelwire.backends.urls import with_credentials
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


@pytest.mark.parametrize(
    ("url", "user", "secret", "expected"),
    [
        ("amqp://127.0.0.1:5672/", None, None, "amqp://127.0.0.1:5672/"),
        ("amqp://127.0.0.1:5672/vh", "guest", "p@ss:w/rd", "amqp://guest:p%40ss%3Aw%2Frd@127.0.0.1:5672/vh"),
        ("rediss://cache:6380/0", None, "s3cret", "rediss://:s3cret@cache:6380/0"),
        ("redis://old@cache:6379/0", "new", None, "redis://new@cache:6379/0"),
    ],
)
def test_credentials_are_put_back_into_the_url_only_to_connect(
    url: str, user: str | None, secret: str | None, expected: str
) -> None:
    assert with_credentials(url, user, secret) == expected
