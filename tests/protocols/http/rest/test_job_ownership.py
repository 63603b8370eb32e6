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

from modelwire.settings import JobsSettings, Settings
from tests.models import EchoModel
from tests.serving import ThreadedServer

SECRET = "test-secret-for-job-ownership-0123456789"
USER = "predict jobs:read jobs:write events"


def bearer(sub: str, scope: str = USER) -> dict[str, str]:
    claims = {"sub": sub, "scope": scope, "exp": int(time.time()) + 600}
    return {"authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


ALICE, BOB, ADMIN = bearer("alice"), bearer("bob"), bearer("root", USER + " models:admin")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    settings = Settings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        data_dir=tmp_path_factory.mktemp("owners"),
        auth={"mode": "on", "jwt_secret": SECRET},
        jobs=JobsSettings(workers=0),  # jobs stay queued: nothing but the callers changes what they see
    )
    running = ThreadedServer(settings, EchoModel("echo")).start()
    yield running
    running.stop()


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


def test_another_principal_gets_404_exactly_as_for_an_unknown_job(client: httpx.Client) -> None:
    job_id = submit(client, ALICE)
    unknown = "f" * len(job_id)
    as_unknown = refusals(client, unknown, BOB)
    assert {status for status, _ in as_unknown} == {404}
    assert refusals(client, job_id, BOB) == as_unknown
    mine = client.get(f"/v1/jobs/{job_id}", headers=ALICE)
    assert (mine.status_code, mine.json()["status"]) == (200, "queued")  # Bob's cancel did nothing
    assert "owner" not in mine.json()
    assert client.get(f"/v1/jobs/{job_id}", headers=ADMIN).status_code == 200


def test_the_list_shows_each_principal_its_own_jobs(client: httpx.Client) -> None:
    alices = {submit(client, ALICE) for _ in range(2)}
    bobs = {submit(client, BOB)}

    def listed(who: dict[str, str]) -> set[str]:
        response = client.get("/v1/jobs", params={"limit": 1000}, headers=who)
        assert response.status_code == 200
        return {job["id"] for job in response.json()["jobs"]}

    assert bobs <= listed(BOB)
    assert not alices & listed(BOB)
    assert alices <= listed(ALICE)
    assert not bobs & listed(ALICE)
    assert alices | bobs <= listed(ADMIN)


def test_an_sse_stream_on_someone_elses_job_carries_none_of_its_events(
    client: httpx.Client, server: ThreadedServer
) -> None:
    alices, bobs = submit(client, ALICE), submit(client, BOB)
    topics = {"topics": f"jobs/{alices},jobs/{bobs},jobs/*"}
    with client.stream("GET", "/v1/events", params=topics, headers=BOB) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")  # subscribed: everything published from now is seen
        assert client.delete(f"/v1/jobs/{alices}", headers=ALICE).status_code == 200
        assert client.delete(f"/v1/jobs/{bobs}", headers=BOB).status_code == 200
        data = next(line for line in lines if line.startswith("data:"))
    # the bus delivers in order: had Alice's event reached Bob, it would have come first
    assert f'"id":"{bobs}"' in data.replace(" ", "")
    assert alices not in data
