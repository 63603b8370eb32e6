"""Job ownership in the core (``JobManager`` and the event bus): another principal sees a 404 exactly like an
unknown id's, lists only its own jobs, receives only its own jobs' events; models:admin and anonymous
callers (authentication off) see everything; a credential restricted to some models submits only for them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.errors import JobNotFoundError, PermissionDeniedError
from modelwire.events.bus import Event, Subscription
from modelwire.jobs.manager import JobRequest
from modelwire.security.principal import ALL_SCOPES, Principal, Scope, reset_principal, use_principal
from tests.jobs.conftest import chunks
from tests.models import EchoModel

USER_SCOPES = ALL_SCOPES - {Scope.MODELS_ADMIN}
ALICE = Principal(id="jwt:test|alice", kind="jwt", scopes=USER_SCOPES, authenticated=True)
BOB = Principal(id="jwt:test|bob", kind="jwt", scopes=USER_SCOPES, authenticated=True)
ADMIN = Principal(id="jwt:test|root", kind="jwt", scopes=ALL_SCOPES, authenticated=True)
ANONYMOUS_IP = Principal(id="ip:127.0.0.1", kind="anonymous")  # authentication off
ECHO_ONLY = Principal(
    id="key:k1", kind="key", scopes=USER_SCOPES, models=frozenset({"echo"}), authenticated=True
)


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    token = use_principal(principal)
    try:
        yield
    finally:
        reset_principal(token)


@pytest.fixture
async def services(jobs_services: Callable[..., Services]) -> AsyncIterator[Services]:
    """No workers: every job stays queued, so what each principal sees is all that changes."""
    services = jobs_services(EchoModel(), workers=0)
    await start_services(services)
    yield services
    await stop_services(services)


async def submit(services: Services, principal: Principal, rows: list[Any], **request: Any) -> str:
    with acting_as(principal):
        job, created = await services.jobs.submit(JobRequest(model="echo", **request), chunks(rows))
    assert created
    return str(job["id"])


async def refusal(call: Awaitable[Any]) -> str:
    with pytest.raises(JobNotFoundError) as info:
        await call
    return info.value.message


async def test_another_principal_gets_the_unknown_job_answer(services: Services) -> None:
    job_id = await submit(services, ALICE, ["a", "b"])
    unknown = "0" * len(job_id)
    jobs = services.jobs
    with acting_as(BOB):
        expected = (await refusal(jobs.get(unknown))).replace(unknown, job_id)
        assert await refusal(jobs.get(job_id)) == expected
        assert await refusal(jobs.results(job_id)) == expected
        assert await refusal(jobs.cancel(job_id)) == expected
        assert await refusal(jobs.retry(job_id)) == expected
    with acting_as(ALICE):
        assert (await jobs.get(job_id))["status"] == "queued"  # Bob's cancel did nothing
        assert [row async for row in await jobs.results(job_id)] == []
        assert (await jobs.cancel(job_id))["status"] == "cancelled"


@pytest.mark.parametrize("principal", [ADMIN, ANONYMOUS_IP], ids=["models:admin", "auth-off"])
async def test_admin_and_anonymous_callers_see_every_job(services: Services, principal: Principal) -> None:
    job_id = await submit(services, ALICE, ["a"])
    with acting_as(principal):
        assert (await services.jobs.get(job_id))["id"] == job_id
        assert job_id in [j.id for j in (await services.jobs.list()).jobs]
        assert (await services.jobs.cancel(job_id))["status"] == "cancelled"


async def test_the_list_shows_only_ones_own_jobs_and_pages_through_them(services: Services) -> None:
    alices = [await submit(services, ALICE, [i]) for i in range(3)]
    bobs = [await submit(services, BOB, [i]) for i in range(2)]
    with acting_as(BOB):
        page = await services.jobs.list(limit=1)
        rest = await services.jobs.list(limit=10, cursor=page.cursor)
        queued = await services.jobs.list(status="queued")
    assert [j.id for j in page.jobs + rest.jobs] == bobs[::-1]
    assert rest.cursor is None
    assert [j.id for j in queued.jobs] == bobs[::-1]
    with acting_as(ALICE):
        assert [j.id for j in (await services.jobs.list()).jobs] == alices[::-1]
    with acting_as(ADMIN):
        assert len((await services.jobs.list()).jobs) == 5
    assert "owner" not in (await services.jobs.get(alices[0]))  # no API shows an owner's id


async def next_event(sub: Subscription) -> Event:
    event = sub.get_nowait()
    assert event is not None, "the event was not delivered"
    return event


async def test_job_events_reach_only_their_owner(services: Services) -> None:
    bus = services.events
    alice_id = await submit(services, ALICE, ["first"])
    with acting_as(BOB):
        bob_all = bus.subscribe(["jobs/*"])
        bob_alices = bus.subscribe([f"jobs/{alice_id}"])
    with acting_as(ALICE):
        alice_all = bus.subscribe(["jobs/*"])
    with acting_as(ADMIN):
        admin_all = bus.subscribe(["jobs/*"])
    with acting_as(ALICE):
        await services.jobs.cancel(alice_id)  # publishes job.cancelled, Alice's
    bob_id = await submit(services, BOB, ["second"])  # publishes job.queued, Bob's
    # delivery is synchronous and in order: had Bob received Alice's event, it would come first
    seen = await next_event(bob_all)
    assert seen.data["id"] == bob_id
    assert "owner" not in seen.to_dict()
    assert "owner" not in seen.data
    assert bob_alices.get_nowait() is None
    assert [(await next_event(alice_all)).data["id"], alice_all.get_nowait()] == [alice_id, None]
    assert [(await next_event(admin_all)).data["id"] for _ in range(2)] == [alice_id, bob_id]
    for sub in (bob_all, bob_alices, alice_all, admin_all):
        sub.close()


async def test_a_replay_brings_only_ones_own_events(services: Services) -> None:
    bus = services.events
    with acting_as(ADMIN):
        probe = bus.subscribe(["jobs/*"])
    alice_id = await submit(services, ALICE, ["a"])
    bob_id = await submit(services, BOB, ["b"])
    first = await next_event(probe)
    probe.close()
    with acting_as(BOB):
        sub = bus.subscribe(["jobs/*"], last_event_id=first.id - 1)
    assert [e.data["id"] for e in [await next_event(sub)]] == [bob_id]
    assert sub.get_nowait() is None
    assert first.data["id"] == alice_id
    sub.close()


async def test_an_idempotency_key_is_each_owners_own(services: Services) -> None:
    alice_id = await submit(services, ALICE, ["same"], idempotency_key="k-1")
    bob_id = await submit(services, BOB, ["same"], idempotency_key="k-1")
    assert bob_id != alice_id
    with acting_as(ALICE):
        again, created = await services.jobs.submit(
            JobRequest(model="echo", idempotency_key="k-1"), chunks(["same"])
        )
    assert (again["id"], created) == (alice_id, False)


async def test_a_credential_for_some_models_submits_only_for_them(services: Services) -> None:
    assert await submit(services, ECHO_ONLY, ["ok"])
    with acting_as(ECHO_ONLY), pytest.raises(PermissionDeniedError, match="may not use model 'sentiment'"):
        await services.jobs.submit(JobRequest(model="sentiment"), chunks(["no"]))
    with acting_as(ECHO_ONLY), pytest.raises(PermissionDeniedError):
        await services.jobs.submit(JobRequest(model="sentiment", kind="train"), chunks([]))
    with acting_as(ADMIN):
        assert len((await services.jobs.list()).jobs) == 1  # the refused ones stored nothing
