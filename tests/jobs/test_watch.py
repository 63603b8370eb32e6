"""jobs/watch.py: merging job events (pure), and JobWatch over real services: snapshot first, pushed changes,
re-reading when no event comes, close() from outside."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.errors import JobNotFoundError
from modelwire.events.bus import LocalEventBus
from modelwire.jobs.manager import JobRequest
from modelwire.jobs.watch import SNAPSHOT, JobWatch, apply_event
from tests.jobs.conftest import chunks
from tests.models import EchoModel, SlowModel

RUNNING = {
    "id": "j",
    "status": "running",
    "updated_at": 10.0,
    "progress": {"done": 4, "total": 10, "errors": 1},
}


def test_progress_is_merged_into_the_whole_job() -> None:
    event = {"id": "j", "status": "running", "progress": {"done": 6, "total": 10, "errors": 1}}
    merged = apply_event(RUNNING, "job.progress", event)
    assert merged == {**RUNNING, "progress": {"done": 6, "total": 10, "errors": 1}}
    training = {
        "id": "j",
        "status": "running",
        "progress": {"done": 0, "total": 10, "stage": "fit", "fraction": 0.5},
    }
    assert apply_event(RUNNING, "job.progress", training) is None  # done went back: older than shown
    assert apply_event({**RUNNING, "progress": {"done": 0}}, "job.progress", training) == {
        **RUNNING,
        "progress": training["progress"],
    }


@pytest.mark.parametrize(
    ("type_", "data"),
    [
        ("job.progress", {"id": "j", "status": "running", "progress": {"done": 3, "total": 10}}),
        ("job.running", {"id": "j", "status": "running", "updated_at": 9.0}),
        ("job.running", {"id": "j", "status": "running", "updated_at": 10.0}),
        ("job.succeeded", {"id": "other", "status": "succeeded", "updated_at": 11.0}),
        ("model.loaded", {"id": "j", "status": "succeeded", "updated_at": 11.0}),
        ("job.succeeded", {"id": "j", "updated_at": 11.0}),
    ],
    ids=["progress-behind", "older-state", "same-state", "other-job", "not-a-job-event", "no-status"],
)
def test_events_that_say_nothing_new_are_skipped(type_: str, data: dict[str, Any]) -> None:
    assert apply_event(RUNNING, type_, data) is None


def test_a_newer_state_replaces_the_job_and_progress_after_the_end_is_skipped() -> None:
    done = {"id": "j", "status": "succeeded", "updated_at": 12.0, "progress": {"done": 10, "total": 10}}
    assert apply_event(RUNNING, "job.succeeded", done) == done
    late = {"id": "j", "status": "running", "progress": {"done": 10, "total": 10}}
    assert apply_event(done, "job.progress", late) is None


@pytest.fixture
async def services(jobs_services: Callable[..., Services]) -> Any:
    services = jobs_services(EchoModel(), SlowModel("slow", delay_s=0.2), batch_size=1)
    await start_services(services)
    yield services
    await stop_services(services)


async def submit(services: Services, model: str, rows: list[Any]) -> str:
    job, created = await services.jobs.submit(JobRequest(model), chunks(rows))
    assert created
    return str(job["id"])


async def test_snapshot_then_pushed_changes_to_the_end(services: Services) -> None:
    job_id = await submit(services, "slow", ["a", "b", "c"])
    updates = [u async for u in JobWatch(services.jobs, services.events, job_id, recheck_s=3600)]
    types = [type_ for type_, _, _ in updates]
    assert types[0] == SNAPSHOT
    assert types[-1] == "job.succeeded"
    assert updates[-1][2]["progress"]["done"] == 3
    dones = [job["progress"]["done"] for _, _, job in updates]
    assert dones == sorted(dones)
    assert all(job["model"] == "slow" for _, _, job in updates)  # progress merged into whole jobs


async def test_a_watch_with_no_events_re_reads_the_job(services: Services) -> None:
    job_id = await submit(services, "echo", ["a"])
    deaf = LocalEventBus()  # a bus nobody publishes on: only re-reading can see the job end
    updates = [u async for u in JobWatch(services.jobs, deaf, job_id, recheck_s=0.05)]
    assert updates[-1][2]["status"] == "succeeded"
    assert updates[-1][0] in (SNAPSHOT, "job.succeeded")
    assert deaf.subscriber_count == 0


async def test_close_ends_a_watch_and_frees_its_subscription(services: Services) -> None:
    job_id = await submit(services, "slow", ["a"] * 50)
    watch = JobWatch(services.jobs, services.events, job_id, recheck_s=3600)
    updates = aiter(watch)
    before = services.events.subscriber_count
    assert (await anext(updates))[0] == SNAPSHOT
    assert services.events.subscriber_count == before + 1
    watch.close()
    rest = [u async for u in updates]
    assert all(job["status"] != "succeeded" for _, _, job in rest)
    assert services.events.subscriber_count == before
    await services.jobs.cancel(job_id)


async def test_an_unknown_job_is_not_found(services: Services) -> None:
    with pytest.raises(JobNotFoundError):
        await anext(aiter(JobWatch(services.jobs, services.events, "no-such-job")))
    await asyncio.sleep(0)
    assert services.events.subscriber_count == 0
