"""The job runner inside Services: batches through the data plane, per-row errors, events, cancel,
leases that expire, dead letters, retries, training, retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from modelwire import Datatype, Model, TensorSpec
from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.backends.sqlite.jobs import SqliteJobStore
from modelwire.core.dataplane import CallContext
from modelwire.errors import (
    FailedPreconditionError,
    IdempotencyKeyReusedError,
    InvalidInputError,
    JobNotFoundError,
    ModelNotFoundError,
    OverloadedError,
    PayloadTooLargeError,
)
from modelwire.events.bus import Event
from modelwire.jobs.manager import JobRequest
from modelwire.jobs.runner import JobStoppedError
from modelwire.jobs.store import JobSpec, encode_row, render_result
from modelwire.model.sentiment import load_reviews
from tests.jobs.conftest import chunks
from tests.models import EchoModel, ErrorModel, SlowModel


class CrashOnBoom(Model):
    """Raises (a plain exception, failing the whole batch) when any text in the batch is 'boom'."""

    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("text", Datatype.BYTES),)

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        if "boom" in batch:
            raise RuntimeError("boom")
        return [{"upper": str(t).upper()} for t in batch]


@pytest.fixture
async def running(jobs_services: Callable[..., Services]) -> AsyncIterator[Callable[..., Any]]:
    """Start services built by ``jobs_services``; all are stopped at the end of the test."""
    started: list[Services] = []

    async def start(*models: Any, **jobs: Any) -> Services:
        services = jobs_services(*models, **jobs)
        await start_services(services)
        started.append(services)
        return services

    yield start
    for services in started:
        await stop_services(services)


async def until_final(services: Services, job_id: str, *, since: list[Event] | None = None) -> dict[str, Any]:
    """Wait (on the event bus) until the job is final; returns its state. ``since`` collects the events."""
    async with services.events.subscribe([f"jobs/{job_id}"]) as sub:
        return await final(services, sub, job_id, since)


async def final(
    services: Services, sub: Any, job_id: str, since: list[Event] | None = None
) -> dict[str, Any]:
    job = await services.jobs.get(job_id)
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        async with asyncio.timeout(60):
            event = await sub.get()
        if since is not None and event.topic == f"jobs/{job_id}":
            since.append(event)
        job = await services.jobs.get(job_id)
    return job


async def results(services: Services, job_id: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(render_result(r)) async for r in await services.jobs.results(job_id)]


async def test_rows_run_in_batches_with_per_row_errors(running: Callable[..., Any]) -> None:
    echo = EchoModel()
    services = await running(echo, batch_size=4)
    rows = ["a", "bad", 3, *[f"row {i}" for i in range(10)]]
    events: list[Event] = []
    async with services.events.subscribe(["jobs/*"]) as sub:
        job, created = await services.jobs.submit(JobRequest(model="echo"), chunks(rows[:5], rows[5:]))
        assert created
        assert job["status"] == "queued"
        state = await final(services, sub, job["id"], events)
    assert state["status"] == "succeeded"
    assert state["progress"] == {"done": 13, "total": 13, "errors": 2}
    out = await results(services, job["id"])
    assert [r["index"] for r in out] == list(range(13))
    assert out[0] == {"index": 0, "echo": "a", "length": 1}
    assert out[1]["error"]["code"] == "INVALID_ARGUMENT"
    assert out[2]["error"]["message"] == "text must be a string, not int"
    assert max(len(call) for call in echo.calls) <= 4
    types = [e.type for e in events]
    assert types[0] == "job.queued"
    assert types[-1] == "job.succeeded"
    assert "job.running" in types
    assert "job.progress" in types
    assert services.metrics.requests.labels("jobs", "echo", "OK")._value.get() >= 4


async def test_one_row_crashing_the_model_fails_alone(running: Callable[..., Any]) -> None:
    services = await running(CrashOnBoom("crash"), batch_size=8)
    job, _ = await services.jobs.submit(JobRequest(model="crash"), chunks(["x", "boom", "y"]))
    state = await until_final(services, job["id"])
    assert state["status"] == "succeeded"
    out = await results(services, job["id"])
    assert out[0]["upper"] == "X"
    assert out[2]["upper"] == "Y"
    assert out[1]["error"]["code"] == "INTERNAL"
    assert "error_id" in out[1]["error"]["details"]


async def test_a_model_that_fails_every_row_fails_the_job_after_its_attempts(
    running: Callable[..., Any],
) -> None:
    services = await running(ErrorModel("broken"), max_attempts=2)
    job, _ = await services.jobs.submit(JobRequest(model="broken"), chunks(["a", "b"]))
    state = await until_final(services, job["id"])
    assert state["status"] == "failed"
    assert state["attempts"] == 2
    assert state["error"]["code"] == "INTERNAL"
    assert "secret" not in state["error"]["message"]


async def test_cancel_stops_a_running_job_at_the_next_batch(running: Callable[..., Any]) -> None:
    services = await running(SlowModel("slow", delay_s=0.2), batch_size=1)
    job, _ = await services.jobs.submit(JobRequest(model="slow"), chunks([f"t{i}" for i in range(200)]))
    async with services.events.subscribe([f"jobs/{job['id']}"], last_event_id=0) as sub:
        while (await sub.get()).type != "job.progress":
            pass
    cancelled = await services.jobs.cancel(job["id"])
    assert cancelled["status"] == "cancelled"
    await asyncio.sleep(0.6)  # three batches' time: none of them may be written
    after = await services.jobs.get(job["id"])
    assert after["status"] == "cancelled"
    assert after["progress"]["done"] == cancelled["progress"]["done"] < 200
    with pytest.raises(FailedPreconditionError):
        await services.jobs.cancel(job["id"])


async def dead_worker(data_dir: Path, rows: list[str], done: int, *, max_attempts: int = 3) -> str:
    """A job claimed by a worker that wrote ``done`` results and died (its lease ran out)."""
    store = SqliteJobStore(data_dir / "jobs.sqlite3")
    await store.open()
    try:
        upload = await store.begin(JobSpec(model="echo", max_attempts=max_attempts))
        await upload.append([encode_row(r) for r in rows])
        job, _ = await upload.commit("h")
        assert await store.claim("dead-worker", 0.01) is not None
        marks = [(i, b'{"by":"the dead worker"}', False) for i in range(done)]
        assert await store.write_results(job.id, "dead-worker", marks, 0.01)
        return job.id
    finally:
        await store.close()


async def test_a_job_whose_worker_died_resumes_where_it_stopped(
    running: Callable[..., Any], data_dir: Path
) -> None:
    rows = [f"r{i}" for i in range(30)]
    job_id = await dead_worker(data_dir, rows, 12)
    services = await running(EchoModel(), batch_size=5)
    state = await until_final(services, job_id)
    assert state["status"] == "succeeded"
    assert state["attempts"] == 2
    assert state["progress"] == {"done": 30, "total": 30, "errors": 0}
    out = await results(services, job_id)
    assert [r["index"] for r in out] == list(range(30))  # each row exactly once
    assert all(r == {"index": i, "by": "the dead worker"} for i, r in enumerate(out[:12]))
    assert all(r["echo"] == f"r{r['index']}" for r in out[12:])


async def test_lease_expired_on_the_last_attempt_is_a_dead_letter_the_user_can_retry(
    running: Callable[..., Any], data_dir: Path
) -> None:
    job_id = await dead_worker(data_dir, ["a", "b", "c"], 1, max_attempts=1)
    services = await running(EchoModel())
    state = await until_final(services, job_id)
    assert state["status"] == "failed"
    assert state["attempts"] == 1
    assert state["error"]["code"] == "UNAVAILABLE"
    assert "lease expired" in state["error"]["message"]
    retried = await services.jobs.retry(job_id)
    assert retried["status"] == "queued"
    assert retried["error"] is None
    state = await until_final(services, job_id)
    assert state["status"] == "succeeded"
    assert [r["index"] for r in await results(services, job_id)] == [0, 1, 2]
    with pytest.raises(FailedPreconditionError):
        await services.jobs.retry(job_id)


async def test_submit_refuses_before_storing_anything(running: Callable[..., Any]) -> None:
    services = await running(EchoModel(), max_queue_depth=1, max_rows=5, workers=0)
    with pytest.raises(ModelNotFoundError):
        await services.jobs.submit(JobRequest(model="nope"), chunks(["a"]))
    with pytest.raises(InvalidInputError, match="callback_url"):
        await services.jobs.submit(JobRequest(model="echo", callback_url="http://10.0.0.1/"), chunks(["a"]))
    with pytest.raises(InvalidInputError, match="no rows"):
        await services.jobs.submit(JobRequest(model="echo"), chunks([]))
    with pytest.raises(PayloadTooLargeError, match="5 rows"):
        await services.jobs.submit(JobRequest(model="echo"), chunks(["a"] * 3, ["b"] * 3))
    assert (await services.jobs.list()).jobs == []
    await services.jobs.submit(JobRequest(model="echo"), chunks(["a"]))
    with pytest.raises(OverloadedError) as info:
        await services.jobs.submit(JobRequest(model="echo"), chunks(["a"]))
    assert info.value.retry_after_s
    assert len((await services.jobs.list()).jobs) == 1


async def test_idempotency_key_same_body_same_job_other_body_refused(running: Callable[..., Any]) -> None:
    services = await running(EchoModel(), workers=0)
    request = JobRequest(model="echo", idempotency_key="abc", metadata={"n": 1})
    first, created = await services.jobs.submit(request, chunks(["a", "b"]))
    again, created_again = await services.jobs.submit(request, chunks(["a"], ["b"]))
    assert created
    assert not created_again
    assert again["id"] == first["id"]
    with pytest.raises(IdempotencyKeyReusedError):
        await services.jobs.submit(request, chunks(["a", "c"]))
    other = JobRequest(model="echo", idempotency_key="abc", metadata={"n": 2})
    with pytest.raises(IdempotencyKeyReusedError):
        await services.jobs.submit(other, chunks(["a", "b"]))
    assert len((await services.jobs.list()).jobs) == 1


async def test_retention_purge_removes_finished_jobs(running: Callable[..., Any]) -> None:
    services = await running(EchoModel(), retention_s=0.05)
    job, _ = await services.jobs.submit(JobRequest(model="echo"), chunks(["a"]))
    await until_final(services, job["id"])
    await asyncio.sleep(0.1)
    assert await services.jobs.purge() == 1
    with pytest.raises(JobNotFoundError):
        await services.jobs.get(job["id"])


async def test_training_job_registers_a_version_that_serves_at_once(running: Callable[..., Any]) -> None:
    services = await running()
    texts, labels = load_reviews()
    step = len(texts) // 600
    labelled = [
        {"text": t, "label": y} for t, y in zip(texts[::step][:600], labels[::step][:600], strict=True)
    ]
    async with services.events.subscribe(["models"]) as models:
        job, _ = await services.jobs.submit(JobRequest(model="sentiment", kind="train"), chunks(labelled))
        events: list[Event] = []
        state = await until_final(services, job["id"], since=events)
        assert state["status"] == "succeeded", state["error"]
        result = state["result"]
        assert result["version"] == "2"
        assert 0.5 <= result["accuracy"] <= 1.0
        assert (result["n_train"], result["n_test"]) == (480, 120)
        stages = [e.data["progress"]["stage"] for e in events if e.type == "job.progress"]
        assert "fitting logistic regression" in stages
        seen = [(await models.get()).type for _ in range(2)]
        assert seen == ["model.registered", "model.loaded"]
    assert services.registry.versions("sentiment") == ["1", "2"]
    ctx = CallContext("rest")
    out = await services.dataplane.predict("sentiment", "I loved it", version="2", ctx=ctx)
    assert out["sentiment"] in ("positive", "negative")


async def test_training_refuses_bad_rows_and_untrainable_models(running: Callable[..., Any]) -> None:
    services = await running(EchoModel(), workers=0)
    train = JobRequest(model="sentiment", kind="train")
    with pytest.raises(InvalidInputError, match="label must be 0 or 1") as info:
        await services.jobs.submit(train, chunks([{"text": "ok", "label": 1}, {"text": "x", "label": 5}]))
    assert info.value.field == "$.rows[1].label"
    with pytest.raises(InvalidInputError, match="both labels"):
        await services.jobs.submit(
            train, chunks([{"text": "ok", "label": 1}, {"text": "fine", "label": "1"}])
        )
    with pytest.raises(InvalidInputError, match="cannot be trained"):
        await services.jobs.submit(
            JobRequest(model="echo", kind="train"), chunks([{"text": "a", "label": 1}])
        )
    assert (await services.jobs.list()).jobs == []


def test_a_redis_backend_builds_the_redis_store(jobs_services: Callable[..., Services]) -> None:
    from modelwire.backends.redis.jobs import RedisJobStore  # no I/O until start(): no Redis needed here

    services = jobs_services(backend="redis://127.0.0.1:6379/0?prefix=unused")
    assert isinstance(services.jobs.store, RedisJobStore)
    assert services.jobs.store.prefix == "unused:"


async def test_limits_apply_to_job_rows_like_requests(running: Callable[..., Any]) -> None:
    services = await running(EchoModel(), batch_size=8)
    limit = services.settings.limits.max_text_chars
    job, _ = await services.jobs.submit(JobRequest(model="echo"), chunks(["ok", "x" * (limit + 1), "ok"]))
    await until_final(services, job["id"])
    out = await results(services, job["id"])
    assert out[1]["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert out[0]["echo"] == out[2]["echo"] == "ok"


async def test_graceful_stop_gives_a_running_job_back(jobs_services: Callable[..., Services]) -> None:
    services = jobs_services(SlowModel("slow", delay_s=0.2), batch_size=1)
    await start_services(services)
    try:
        job, _ = await services.jobs.submit(JobRequest(model="slow"), chunks([f"t{i}" for i in range(100)]))
        async with services.events.subscribe([f"jobs/{job['id']}"]) as sub:
            while (await sub.get()).type != "job.progress":
                pass
    finally:
        await stop_services(services)
    store = SqliteJobStore(services.settings.data_dir / "jobs.sqlite3")
    await store.open()
    try:
        state = await store.get(job["id"])
        assert (state.status.value, state.attempts, state.lease_owner) == ("queued", 0, None)
        assert 0 < state.done < 100
    finally:
        await store.close()


async def test_stop_is_not_lost_when_a_job_ends_as_the_worker_is_cancelled(
    jobs_services: Callable[..., Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race that hung a shutdown: the worker's cancel lands while its job ends on its own (here: the
    job sees it was stopped in the very turn the server stops). ``stop()`` must still end the worker."""
    services = jobs_services(EchoModel())
    runner = services.jobs.runner
    ended = asyncio.Event()

    async def work(job: Any, owner: str, stop: Any) -> None:
        for worker in runner._workers:
            worker.cancel()  # spent on this task, which the worker awaits
        ended.set()
        raise JobStoppedError(job.id)

    monkeypatch.setattr(runner, "_work", work)
    await start_services(services)
    try:
        await services.jobs.submit(JobRequest(model="echo"), chunks(["a"]))
        await ended.wait()
        async with asyncio.timeout(60):  # a guard against the hang, not a speed check
            await runner.stop()
    finally:
        await stop_services(services)
