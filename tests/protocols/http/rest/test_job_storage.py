"""``/v1/jobs`` when the job store's disk fills or its reads fail, on a real server with httpx: a 503 to
retry, and NDJSON results that keep the documented shape even after the 200 was sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest

from modelwire.app.lifecycle import Server
from modelwire.app.services import Services
from modelwire.errors import InternalError
from modelwire.jobs.store import ResultRow
from modelwire.settings import JobsSettings, Settings
from tests.models import EchoModel


@pytest.fixture
async def served(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    settings = make_settings(jobs=JobsSettings(lease_s=5.0))
    services = make_services(EchoModel(), settings=settings)
    server = Server(settings, services=services)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as client:
            yield client, services
    finally:
        await server.stop()


async def finished(client: httpx.AsyncClient, job_id: str) -> None:
    async with asyncio.timeout(30):
        while (await client.get(f"/v1/jobs/{job_id}")).json()["status"] != "succeeded":
            await asyncio.sleep(0.05)


async def test_a_full_disk_on_submit_is_a_503_to_retry(served: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = served
    store: Any = services.jobs.store

    def fill() -> None:  # the database may not grow by a page: SQLite answers SQLITE_FULL, as on a full disk
        (pages,) = store.db.execute("PRAGMA page_count").fetchone()
        store.db.execute(f"PRAGMA max_page_count = {pages}")

    await store._call(fill)
    response = await client.post("/v1/jobs", json={"model": "echo", "inputs": ["x" * 2000] * 200})
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "30"
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "UNAVAILABLE"
    assert "disk is full" in error["message"]
    assert (await client.get("/v2/health/live")).status_code == 200  # and the server keeps serving


async def test_results_failing_after_the_stream_started_end_with_an_error_line(
    served: tuple[httpx.AsyncClient, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, services = served
    job = (await client.post("/v1/jobs", json={"model": "echo", "inputs": ["a", "b", "c"]})).json()
    await finished(client, job["id"])
    store = services.jobs.store
    real = store.results

    async def failing(job_id: str, *, offset: int = 0, limit: int | None = None) -> AsyncIterator[ResultRow]:
        async for row in real(job_id, offset=offset, limit=2):
            yield row
        raise InternalError("the job store failed", error_id="feedfacefeedface")

    monkeypatch.setattr(store, "results", failing)
    response = await client.get(f"/v1/jobs/{job['id']}/results")
    assert response.status_code == 200
    lines = [msgspec.json.decode(line) for line in response.content.splitlines()]
    assert [line.get("index") for line in lines] == [0, 1, None]
    assert lines[-1] == {
        "error": {
            "code": "INTERNAL",
            "message": "the job store failed",
            "details": {"error_id": "feedfacefeedface"},
        }
    }


async def test_results_failing_before_the_first_row_are_a_json_error(
    served: tuple[httpx.AsyncClient, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, services = served
    job = (await client.post("/v1/jobs", json={"model": "echo", "inputs": ["a"]})).json()
    await finished(client, job["id"])

    async def failing(job_id: str, *, offset: int = 0, limit: int | None = None) -> AsyncIterator[ResultRow]:
        raise InternalError("the job store failed", error_id="0123456789abcdef")
        yield  # an async generator, as the store's

    monkeypatch.setattr(services.jobs.store, "results", failing)
    response = await client.get(f"/v1/jobs/{job['id']}/results")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["details"] == {"error_id": "0123456789abcdef"}
