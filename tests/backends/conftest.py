"""Every job store, opened the way the server opens one: from a ``jobs.backend`` URL (``open_job_store``);
the rules the rate limiter contract runs with.

``job_store`` runs a test once per store: ``[sqlite]`` on a file in the test's own folder, ``[redis]`` on the
test Redis under the test's own key prefix (``tests/redis_server.py``: skipped when Redis is unreachable,
failed when ``CI=true``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from modelwire.backends.resolve import open_job_store
from modelwire.jobs.store import JobStore
from modelwire.settings import JobsSettings, RateLimitRule, Settings

JOB_STORES = ["sqlite", "redis"]

RATE = 0.5  # rate limiters: a token every 2 s, slow enough that a stalled test machine does not refill
RULES = (
    RateLimitRule(scope="*", rate_per_s=RATE, burst=3),
    RateLimitRule(scope="jobs:write", rate_per_s=RATE, burst=1),
)

ConnectJobStore = Callable[[], Awaitable[JobStore]]


@pytest.fixture(params=JOB_STORES)
def jobs_backend(request: pytest.FixtureRequest) -> str:
    """The ``jobs.backend`` URL: ``sqlite`` (the file in the data dir) or Redis with this test's prefix."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_backend"))
    return "sqlite"


@pytest.fixture
async def connect_job_store(jobs_backend: str, tmp_path: Path) -> AsyncIterator[ConnectJobStore]:
    """``await connect()``: another open store on the same jobs, as a second process (or a restarted one)
    has. Every store it opened is closed at the end."""
    settings = Settings(data_dir=tmp_path, jobs=JobsSettings(backend=jobs_backend))
    opened: list[JobStore] = []

    async def connect() -> JobStore:
        store = open_job_store(settings)
        await store.open()
        opened.append(store)
        return store

    yield connect
    for store in opened:
        await store.close()


@pytest.fixture
async def job_store(connect_job_store: ConnectJobStore) -> JobStore:
    """An open store of each kind (the test runs once per store)."""
    return await connect_job_store()
