"""The job runner over Redis, in process: services built with ``jobs.backend = redis://...`` use the Redis
store and the Redis event bus. Two ``Services`` stand for a gateway and a worker sharing one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from modelwire.app.follow import adopt_version
from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.backends.redis.events import RedisEventBus
from modelwire.backends.redis.jobs import RedisJobStore
from modelwire.core.dataplane import CallContext
from modelwire.events.bus import Event
from modelwire.jobs.manager import JobRequest
from modelwire.jobs.store import JobSpec, encode_row, render_result
from modelwire.model.sentiment import load_reviews
from tests.jobs.conftest import chunks
from tests.models import EchoModel, SlowModel

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
async def running(
    jobs_services: Callable[..., Services], redis_backend: str
) -> AsyncIterator[Callable[..., Any]]:
    """Start services on this test's Redis prefix; all are stopped at the end of the test."""
    started: list[Services] = []

    async def start(*models: Any, **jobs: Any) -> Services:
        services = jobs_services(*models, backend=redis_backend, **jobs)
        await start_services(services)
        started.append(services)
        return services

    yield start
    for services in reversed(started):
        if not services.closing.is_set():  # not stopped by the test itself
            await stop_services(services)


async def final(services: Services, job_id: str, since: list[Event] | None = None) -> dict[str, Any]:
    """Wait, on the event bus, until the job is final (polling the store between events)."""
    async with services.events.subscribe([f"jobs/{job_id}"]) as sub:
        job = await services.jobs.get(job_id)
        while job["status"] not in FINAL:
            async with asyncio.timeout(60):
                event = await sub.get()
            if since is not None:
                since.append(event)
            job = await services.jobs.get(job_id)
        # The store turns final before the final event is published: a caller collecting events also
        # waits for that event (it must come; the timeout fails the test otherwise).
        while since is not None and (not since or since[-1].type != f"job.{job['status']}"):
            async with asyncio.timeout(60):
                since.append(await sub.get())
        return job


async def results(services: Services, job_id: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(render_result(r)) async for r in await services.jobs.results(job_id)]


async def test_services_on_redis_use_the_redis_store_and_bus(running: Callable[..., Any]) -> None:
    services = await running(EchoModel(), batch_size=4)
    assert isinstance(services.jobs.store, RedisJobStore)
    assert isinstance(services.events, RedisEventBus)
    events: list[Event] = []
    async with services.events.subscribe(["jobs/*"]) as sub:
        job, created = await services.jobs.submit(
            JobRequest(model="echo"), chunks(["a", "bad", 3], ["d"] * 7)
        )
        assert created
        state = await final(services, job["id"])
        while (event := sub.get_nowait()) is not None:
            events.append(event)
    assert state["status"] == "succeeded"
    assert state["progress"] == {"done": 10, "total": 10, "errors": 2}
    out = await results(services, job["id"])
    assert [r["index"] for r in out] == list(range(10))
    assert out[0] == {"index": 0, "echo": "a", "length": 1}
    assert out[1]["error"]["code"] == "INVALID_ARGUMENT"
    types = [e.type for e in events]
    assert types[0] == "job.queued"
    assert types[-1] == "job.succeeded"
    assert "job.progress" in types
    assert [e.id for e in events] == sorted(e.id for e in events)


async def test_a_gateway_sees_the_events_of_a_job_another_process_runs(running: Callable[..., Any]) -> None:
    gateway = await running(EchoModel(), workers=0)  # accepts jobs, runs none
    worker = await running(EchoModel(), batch_size=2)
    events: list[Event] = []
    # Subscribed before the submit: the worker may claim the job (job.running) before the id is known.
    async with gateway.events.subscribe(["jobs/*"]) as sub:
        job, _ = await gateway.jobs.submit(JobRequest(model="echo"), chunks([f"r{i}" for i in range(9)]))
        while not events or events[-1].type != "job.succeeded":
            async with asyncio.timeout(60):
                event = await sub.get()
            if event.data.get("id") == job["id"]:
                events.append(event)
    state = await gateway.jobs.get(job["id"])
    assert state["status"] == "succeeded"
    assert state["progress"]["done"] == 9
    assert "job.running" in [e.type for e in events]
    assert events[-1].type == "job.succeeded"
    assert events[-1].data["progress"]["done"] == 9
    assert worker.registry.get("echo").model.calls  # type: ignore[attr-defined]
    assert not gateway.registry.get("echo").model.calls  # type: ignore[attr-defined]


async def test_a_job_whose_worker_died_resumes_where_it_stopped(
    running: Callable[..., Any], redis_backend: str
) -> None:
    store = RedisJobStore.from_url(redis_backend)
    await store.open()
    try:
        upload = await store.begin(JobSpec(model="echo"))
        await upload.append([encode_row(f"r{i}") for i in range(30)])
        job, _ = await upload.commit("h")
        assert await store.claim("dead-worker", 0.01) is not None
        marks = [(i, b'{"by":"the dead worker"}', False) for i in range(12)]
        assert await store.write_results(job.id, "dead-worker", marks, 0.01)
    finally:
        await store.close()
    services = await running(EchoModel(), batch_size=5)
    state = await final(services, job.id)
    assert state["status"] == "succeeded"
    assert state["attempts"] == 2
    assert state["progress"] == {"done": 30, "total": 30, "errors": 0}
    out = await results(services, job.id)
    assert [r["index"] for r in out] == list(range(30))
    assert all(r == {"index": i, "by": "the dead worker"} for i, r in enumerate(out[:12]))
    assert all(r["echo"] == f"r{r['index']}" for r in out[12:])


async def test_lease_expired_on_the_last_attempt_is_a_dead_letter(
    running: Callable[..., Any], redis_backend: str
) -> None:
    store = RedisJobStore.from_url(redis_backend)
    await store.open()
    try:
        upload = await store.begin(JobSpec(model="echo", max_attempts=1))
        await upload.append([encode_row("a")])
        job, _ = await upload.commit("h")
        assert await store.claim("dead-worker", 0.01) is not None
    finally:
        await store.close()
    services = await running(EchoModel())
    state = await final(services, job.id)
    assert state["status"] == "failed"
    assert state["attempts"] == 1
    assert "lease expired" in state["error"]["message"]
    await services.jobs.retry(job.id)
    assert (await final(services, job.id))["status"] == "succeeded"


async def test_cancel_stops_a_job_running_in_another_process(running: Callable[..., Any]) -> None:
    gateway = await running(SlowModel("slow", delay_s=0.1), workers=0)
    await running(SlowModel("slow", delay_s=0.1), batch_size=1)
    rows = [f"t{i}" for i in range(200)]
    async with gateway.events.subscribe(["jobs/*"]) as sub:
        job, _ = await gateway.jobs.submit(JobRequest(model="slow"), chunks(rows))
        async with asyncio.timeout(30):
            while (await sub.get()).type != "job.progress":
                pass
    cancelled = await gateway.jobs.cancel(job["id"])
    assert cancelled["status"] == "cancelled"
    await asyncio.sleep(0.5)  # five batches' time
    after = await gateway.jobs.get(job["id"])
    assert after["status"] == "cancelled"
    assert after["progress"]["done"] <= cancelled["progress"]["done"] + 1 < 200  # one batch in flight


async def test_stopping_a_worker_gives_its_job_back(running: Callable[..., Any], redis_backend: str) -> None:
    first = await running(SlowModel("slow", delay_s=0.05), batch_size=1, workers=1)
    async with first.events.subscribe(["jobs/*"]) as sub:
        job, _ = await first.jobs.submit(JobRequest(model="slow"), chunks([f"t{i}" for i in range(40)]))
        async with asyncio.timeout(30):
            while (await sub.get()).type != "job.progress":
                pass
    await stop_services(first)
    store = RedisJobStore.from_url(redis_backend)
    await store.open()
    try:
        released = await store.get(job["id"])
    finally:
        await store.close()
    assert (released.status, released.attempts, released.lease_owner) == ("queued", 0, None)
    assert 0 < released.done < 40
    second = await running(SlowModel("slow", delay_s=0.01), batch_size=8)
    done = await final(second, job["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1
    assert [r["index"] for r in await results(second, job["id"])] == list(range(40))


async def test_a_version_trained_on_a_worker_is_served_by_the_gateway(running: Callable[..., Any]) -> None:
    gateway = await running(workers=0)  # the same data dir, so the same model repository
    await running()
    texts, labels = load_reviews()
    step = len(texts) // 600
    labelled = [
        {"text": t, "label": y} for t, y in zip(texts[::step][:600], labels[::step][:600], strict=True)
    ]
    async with gateway.events.subscribe(["models"]) as models:
        job, _ = await gateway.jobs.submit(JobRequest(model="sentiment", kind="train"), chunks(labelled))
        state = await final(gateway, job["id"])
        assert state["status"] == "succeeded", state["error"]
        assert state["result"]["version"] == "2"
        async with asyncio.timeout(60):
            while (await models.get()).type != "model.loaded":
                pass
    assert gateway.registry.versions("sentiment") == ["1", "2"]
    out = await gateway.dataplane.predict("sentiment", "I loved it", version="2", ctx=CallContext("rest"))
    assert out["sentiment"] in ("positive", "negative")


async def test_a_version_missing_from_this_repository_is_not_served(
    running: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    services = await running(workers=0)
    await adopt_version(services, "sentiment", "7")
    assert services.registry.versions("sentiment") == ["1"]
    assert "does not share" in caplog.text
