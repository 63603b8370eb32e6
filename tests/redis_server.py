"""The real Redis the Redis-backend tests run against (a pytest plugin, loaded by ``tests/conftest.py``).

``MODELWIRE_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``) names it. Each test gets its own key
prefix, and every key under it is deleted afterwards. When Redis is unreachable the tests are skipped,
unless ``CI=true``: there Redis is part of the environment, so its absence fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.required import unavailable

REDIS_URL = os.environ.get("MODELWIRE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _reachable() -> str | None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc)
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The Redis URL (no prefix); skips (fails when ``CI=true``) if nothing answers there."""
    problem = _reachable()
    if problem is not None:
        message = f"Redis at {REDIS_URL} is unreachable: {problem}"
        unavailable(message)
    return REDIS_URL


def delete_prefix(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix of this test's own (``test-<hex>:``); every key under it is deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_prefix(redis_server, prefix)


@pytest.fixture
def redis_backend(redis_server: str, redis_prefix: str) -> str:
    """A ``--jobs-backend`` URL on the test Redis with this test's own prefix."""
    return f"{redis_server}?prefix={redis_prefix}"


def redis_keys(url: str, prefix: str) -> set[str]:
    """Every key under ``prefix``, without it."""
    client = redis.Redis.from_url(url)
    try:
        return {k.decode()[len(prefix) :] for k in client.scan_iter(match=prefix + "*", count=1000)}
    finally:
        client.close()
