"""Async jobs submitted from a queue (``"op": "job"``), the same over every broker (``conftest.broker``):
answered with the job (the REST 202 body), run by the job workers, an idempotency key kept by the job
store, the kind's scope decided by the jobs façade, a malformed job message dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from modelwire.app.lifecycle import Server
from modelwire.security.principal import Scope
from tests.protocols.queues.conftest import BrokerUnderTest, Start
from tests.protocols.queues.test_queue_contract import ask, sender


async def finished(server: Server, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """The job once it finished (a bounded wait on the jobs façade)."""
    assert server.services is not None
    jobs = server.services.jobs
    async with asyncio.timeout(timeout):
        while (job := await jobs.get(job_id))["status"] in ("queued", "running"):
            await asyncio.sleep(0.05)
    return job


async def test_a_job_message_is_answered_with_the_job_which_then_runs(
    broker: BrokerUnderTest, start: Start
) -> None:
    server = await start()
    job = await ask(broker, {"op": "job", "inputs": ["a", "ccc"], "metadata": {"batch": 7}})
    assert job["status"] == "queued", job
    assert job["kind"] == "predict"
    assert job["model"] == "echo"  # the queue's model: the message named none
    assert job["metadata"] == {"batch": 7}
    assert job["progress"]["total"] == 2
    done = await finished(server, job["id"])
    assert done["status"] == "succeeded", done
    assert server.services is not None
    rows = [row async for row in await server.services.jobs.results(job["id"])]
    assert len(rows) == 2


async def test_an_idempotency_key_gives_the_same_job(broker: BrokerUnderTest, start: Start) -> None:
    await start()
    message = {"op": "job", "model": "echo", "inputs": ["once"]}
    first = await ask(broker, message, headers={"idempotency-key": "job-1"})
    again = await ask(broker, message, headers={"idempotency-key": "job-1"})
    assert first["id"] == again["id"]
    other = await ask(broker, {**message, "inputs": ["other"]}, headers={"idempotency-key": "job-1"})
    assert other["error"]["code"] == "ALREADY_EXISTS"  # the key was used for a different job
    assert other["error"]["details"]["job_id"] == first["id"]


async def test_a_job_error_is_an_answer(broker: BrokerUnderTest, start: Start) -> None:
    await start()
    missing = await ask(broker, {"op": "job", "model": "nope", "inputs": ["a"]})
    assert missing["error"]["code"] == "NOT_FOUND"
    empty = await ask(broker, {"op": "job", "inputs": []})
    assert empty["error"]["code"] == "INVALID_ARGUMENT"
    assert await broker.dead_letters(expect=0, timeout=0) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"op": "job", "inputs": "not a list"}', "$.inputs"),
        (b'{"op": "job", "inputs": ["a"], "text": "b"}', "text"),
        (b'{"op": "submit", "inputs": ["a"]}', "unknown op"),
        (b'{"op": "job", "kind": "tune", "inputs": ["a"]}', "$.kind"),
    ],
)
async def test_a_malformed_job_message_is_dead_lettered(
    broker: BrokerUnderTest, start: Start, body: bytes, reason: str
) -> None:
    await start()
    async with sender(broker) as s:
        answer = json.loads(await s.request(body))
    assert answer["error"]["code"] == "INVALID_ARGUMENT"
    dead = await broker.dead_letters(expect=1)
    assert [d[0] for d in dead] == [body]
    assert reason in dead[0][1]


async def test_the_jobs_facade_decides_the_scope_of_each_kind(broker: BrokerUnderTest, start: Start) -> None:
    server = await start(auth={"mode": "on"})
    assert server.services is not None
    keys = server.services.security.keys
    predict_only, _ = keys.create({Scope.PREDICT})
    writer, _ = keys.create({Scope.JOBS_WRITE})
    admin, _ = keys.create({Scope.MODELS_ADMIN})
    job = {"op": "job", "inputs": ["a"]}
    train = {"op": "job", "kind": "train", "inputs": [{"text": "good", "label": 1}]}

    def bearer(key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    refused = await ask(broker, job, headers=bearer(predict_only))
    assert refused["error"]["code"] == "PERMISSION_DENIED"
    assert refused["error"]["details"]["required_scope"] == "jobs:write"
    assert (await ask(broker, job, headers=bearer(writer)))["status"] == "queued"
    no_training = await ask(broker, train, headers=bearer(writer))
    assert no_training["error"]["details"]["required_scope"] == "models:admin"
    # models:admin passes the façade's scope check; the echo model itself cannot be trained
    trained = await ask(broker, train, headers=bearer(admin))
    assert trained["error"]["code"] == "INVALID_ARGUMENT"
    assert "cannot be trained" in trained["error"]["message"]
    assert (await ask(broker, job))["error"]["code"] == "UNAUTHENTICATED"


async def test_a_trusted_broker_submits_jobs_with_the_scopes_it_was_given(
    broker: BrokerUnderTest, start: Start
) -> None:
    await start(auth={"mode": "on"}, queue={"trust_broker": True, "scopes": ["predict", "jobs:write"]})
    job = await ask(broker, {"op": "job", "inputs": ["a"]})
    assert job["status"] == "queued", job
    assert await ask(broker, {"text": "hi"}) == {"echo": "hi", "length": 2}


async def test_a_trusted_broker_without_jobs_write_may_not_submit(
    broker: BrokerUnderTest, start: Start
) -> None:
    await start(auth={"mode": "on"}, queue={"trust_broker": True})
    refused = await ask(broker, {"op": "job", "inputs": ["a"]})
    assert refused["error"]["code"] == "PERMISSION_DENIED"
