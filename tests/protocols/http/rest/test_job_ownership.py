"""Job ownership over the wire: a real server with authentication on, two JWT principals. Bob gets the very
404 an unknown id gets on Alice's job (read, results, cancel, retry), does not see it listed, and his SSE
stream on ``jobs/<Alice's id>`` carries none of its events; a models:admin token sees it all."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from modelwire.settings import JobsSettings
from tests.models import EchoModel
from tests.serving import ServeModule, ThreadedServer

SECRET = "test-secret-for-job-ownership-0123456789"
USER = "predict jobs:read jobs:write events"


def bearer(sub: str, scope: str = USER) -> dict[str, str]:
    """An ``Authorization`` header with a token valid for ten minutes from now (call it in the test)."""
    claims = {"sub": sub, "scope": scope, "exp": int(time.time()) + 600}
    return {"authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@pytest.fixture
def alice() -> dict[str, str]:
    return bearer("alice")


@pytest.fixture
def bob() -> dict[str, str]:
    return bearer("bob")


@pytest.fixture
def admin() -> dict[str, str]:
    return bearer("root", USER + " models:admin")


@pytest.fixture(scope="module")
def server(serve_module: ServeModule) -> ThreadedServer:
    return serve_module(
        EchoModel("echo"),
        trained=False,
        auth={"mode": "on", "jwt_secret": SECRET},
        jobs=JobsSettings(workers=0),  # jobs stay queued: nothing but the callers changes what they see
    )


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


def submit(client: httpx.Client, who: dict[str, str]) -> str:
    response = client.post("/v1/jobs", json={"model": "echo", "inputs": ["a", "b"]}, headers=who)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def refusals(client: httpx.Client, job_id: str, who: dict[str, str]) -> list[tuple[int, Any]]:
    calls = [
        client.get(f"/v1/jobs/{job_id}", headers=who),
        client.get(f"/v1/jobs/{job_id}/results", headers=who),
        client.delete(f"/v1/jobs/{job_id}", headers=who),
        client.post(f"/v1/jobs/{job_id}/retry", headers=who),
    ]
    return [(r.status_code, r.json()["error"]["message"].replace(job_id, "<id>")) for r in calls]


def test_another_principal_gets_404_exactly_as_for_an_unknown_job(
    client: httpx.Client, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    job_id = submit(client, alice)
    unknown = "f" * len(job_id)
    as_unknown = refusals(client, unknown, bob)
    assert {status for status, _ in as_unknown} == {404}
    assert refusals(client, job_id, bob) == as_unknown
    mine = client.get(f"/v1/jobs/{job_id}", headers=alice)
    assert (mine.status_code, mine.json()["status"]) == (200, "queued")  # Bob's cancel did nothing
    assert "owner" not in mine.json()
    assert client.get(f"/v1/jobs/{job_id}", headers=admin).status_code == 200


def test_the_list_shows_each_principal_its_own_jobs(
    client: httpx.Client, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    alices = {submit(client, alice) for _ in range(2)}
    bobs = {submit(client, bob)}

    def listed(who: dict[str, str]) -> set[str]:
        response = client.get("/v1/jobs", params={"limit": 1000}, headers=who)
        assert response.status_code == 200
        return {job["id"] for job in response.json()["jobs"]}

    assert bobs <= listed(bob)
    assert not alices & listed(bob)
    assert alices <= listed(alice)
    assert not bobs & listed(alice)
    assert alices | bobs <= listed(admin)


def test_an_sse_stream_on_someone_elses_job_carries_none_of_its_events(
    client: httpx.Client, alice: dict[str, str], bob: dict[str, str]
) -> None:
    alices, bobs = submit(client, alice), submit(client, bob)
    topics = {"topics": f"jobs/{alices},jobs/{bobs},jobs/*"}
    with client.stream("GET", "/v1/events", params=topics, headers=bob) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")  # subscribed: everything published from now is seen
        assert client.delete(f"/v1/jobs/{alices}", headers=alice).status_code == 200
        assert client.delete(f"/v1/jobs/{bobs}", headers=bob).status_code == 200
        data = next(line for line in lines if line.startswith("data:"))
    # the bus delivers in order: had Alice's event reached Bob, it would have come first
    assert f'"id":"{bobs}"' in data.replace(" ", "")
    assert alices not in data
