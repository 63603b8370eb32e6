"""Many gateways over one Redis: a job submitted through gateway B, run by ``modelwire worker --upstream``
(which calls the model service over gRPC), is seen live by a WebSocket client of gateway A."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.gateway.conftest import Processes, gateway_port, service_port, wait_ready

pytestmark = pytest.mark.slow

PID = [{"name": "pid", "source": "tests.gateway.models:PidModel"}]


async def test_a_websocket_on_gateway_a_sees_a_job_submitted_through_gateway_b(
    processes: Processes, redis_backend: str
) -> None:
    service = processes.model_service("service", PID)
    port = service_port(service)
    shared = ("--jobs-backend", redis_backend)
    no_jobs_here = {"MODELWIRE_JOBS__WORKERS": "0", "MODELWIRE_JOBS__WEBHOOK_SECRET": "one key"}
    gateways = [processes.gateway(name, [port], *shared, env=no_jobs_here) for name in ("a", "b")]
    worker = processes.start(
        "worker",
        "worker",
        "--upstream",
        f"127.0.0.1:{port}",
        "--jobs-backend",
        redis_backend,
        "--data-dir",
        str(processes.root / "worker"),
        env={"MODELWIRE_JOBS__WEBHOOK_SECRET": "one key"},
    )
    url_a, url_b = (f"http://127.0.0.1:{gateway_port(g)}" for g in gateways)
    for url in (url_a, url_b):
        wait_ready(url)
    worker.wait_for("ready: .* job worker")

    events: list[dict[str, Any]] = []
    async with connect(url_a.replace("http", "ws", 1) + "/v1/models/pid/ws") as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": "jobs/*", "id": 1}))
        assert json.loads(await ws.recv())["op"] == "subscribed"
        async with httpx.AsyncClient(base_url=url_b, timeout=30) as client:
            submitted = await client.post("/v1/jobs", json={"model": "pid", "inputs": ["a", "b", "c"]})
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["id"]
            async with asyncio.timeout(45):
                while not events or events[-1]["type"] not in ("job.succeeded", "job.failed"):
                    message = json.loads(await ws.recv())
                    if message.get("op") == "event" and message["data"].get("id") == job_id:
                        events.append(message)
            lines = (await client.get(f"/v1/jobs/{job_id}/results")).text.splitlines()
    types = [e["type"] for e in events]
    assert types[0] == "job.queued"
    assert "job.running" in types
    assert types[-1] == "job.succeeded", events[-1]
    rows = [json.loads(line) for line in lines]
    assert [row["echo"] for row in rows] == ["a", "b", "c"]
    assert {row["pid"] for row in rows} == {service.pid}  # run by the model service, not the worker
    worker.wait_for(rf"job {job_id} succeeded")
    assert all(f"job {job_id}" not in g.text() for g in gateways)
    assert worker.stop() == 0
