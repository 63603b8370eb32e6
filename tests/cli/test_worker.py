"""``modelwire worker``: real processes sharing a real Redis with each other and with ``modelwire serve``.

Every process is started with ``python -m modelwire`` in its own session and stopped by its PID; logs go
to files the tests read (the ready line, the port the server picked).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from typer.testing import CliRunner

from modelwire.backends.redis.jobs import RedisJobStore
from modelwire.cli import app
from modelwire.jobs.store import JobSpec, encode_row

ROOT = Path(__file__).resolve().parents[2]
ECHO = [{"name": "echo", "source": "tests.models:EchoModel", "options": {"delay_s": 0.05}}]


class Process:
    """``python -m modelwire ARGS`` with its output in ``log``."""

    def __init__(self, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELWIRE_")}
        clean.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **(env or {})})
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelwire", *args],
                cwd=ROOT,
                env=clean,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.text()):
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the log (exit {self.proc.poll()}):\n{self.text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"pid {self.pid} ignored signal {sig}:\n{self.text()[-3000:]}") from None


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Processes a test starts; any still running at the end is killed (by its PID)."""
    started: list[Process] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.proc.wait(10)


@pytest.fixture
async def store(redis_backend: str) -> AsyncIterator[RedisJobStore]:
    store = RedisJobStore.from_url(redis_backend)
    await store.open()
    yield store
    await store.close()


def worker(
    processes: list[Process],
    tmp_path: Path,
    backend: str,
    data_dir: Path,
    name: str,
    *args: str,
    **env: str,
) -> Process:
    process = Process(
        tmp_path / f"{name}.log",
        "worker",
        "--jobs-backend",
        backend,
        "--data-dir",
        str(data_dir),
        "--concurrency",
        "1",
        *args,
        env=env,
    )
    processes.append(process)
    return process


@pytest.mark.slow
async def test_a_job_survives_its_worker_killed_mid_job(
    processes: list[Process], tmp_path: Path, redis_backend: str, data_dir: Path, store: RedisJobStore
) -> None:
    env = {
        "MODELWIRE_MODELS": json.dumps(ECHO),  # 50 ms per batch of 10 rows: a job of a few seconds
        "MODELWIRE_JOBS__BATCH_SIZE": "10",
        "MODELWIRE_JOBS__LEASE_S": "1.5",
        "MODELWIRE_JOBS__WEBHOOK_SECRET": "one key for every process",
    }
    workers = [worker(processes, tmp_path, redis_backend, data_dir, f"w{i}", **env) for i in range(2)]
    for process in workers:
        process.wait_for("ready: 1 job worker")
    rows = [f"row {i}" for i in range(600)]
    upload = await store.begin(JobSpec(model="echo"))
    await upload.append([encode_row(r) for r in rows])
    job, _ = await upload.commit("h")

    async with asyncio.timeout(60):
        while (state := await store.get(job.id)).done < 100:  # well into the job
            await asyncio.sleep(0.05)
    owner = state.lease_owner or ""
    (victim,) = [p for p in workers if f":{p.pid}:" in owner]
    (survivor,) = [p for p in workers if p is not victim]
    assert victim.stop(signal.SIGKILL) == -signal.SIGKILL
    assert state.done < len(rows)

    async with asyncio.timeout(60):
        while not (state := await store.get(job.id)).status.final:
            await asyncio.sleep(0.1)
    assert state.status == "succeeded", state.error
    assert state.attempts == 2  # the dead worker's, then the survivor's after the lease ran out
    assert (state.done, state.total, state.errors) == (len(rows), len(rows), 0)
    results = [r async for r in store.results(job.id)]
    assert [index for index, _, _ in results] == list(range(len(rows)))  # every row exactly once
    assert all(json.loads(body)["echo"] == rows[i] for i, body, _ in results)
    assert await store.redis.hlen(store.key("out", job.id)) == len(rows)  # nothing else stored
    survivor.wait_for(rf"job {job.id} succeeded")
    assert survivor.stop() == 0  # SIGTERM: a clean exit
    assert "WEBHOOK_SECRET is not set" not in survivor.text()


@pytest.mark.slow
async def test_sigterm_gives_the_running_job_back(
    processes: list[Process], tmp_path: Path, redis_backend: str, data_dir: Path, store: RedisJobStore
) -> None:
    env = {"MODELWIRE_MODELS": json.dumps(ECHO), "MODELWIRE_JOBS__BATCH_SIZE": "5"}
    first = worker(processes, tmp_path, redis_backend, data_dir, "first", **env)
    first.wait_for("ready: 1 job worker")
    upload = await store.begin(JobSpec(model="echo"))
    await upload.append([encode_row(f"r{i}") for i in range(400)])
    job, _ = await upload.commit("h")
    async with asyncio.timeout(60):
        while (await store.get(job.id)).done < 20:
            await asyncio.sleep(0.05)
    assert first.stop() == 0
    released = await store.get(job.id)
    assert (released.status, released.attempts, released.lease_owner) == ("queued", 0, None)
    assert "stopping: giving running jobs back" in first.text()
    assert "WEBHOOK_SECRET is not set" in first.text()  # one key per data dir would not verify everywhere


@pytest.mark.slow
async def test_a_job_submitted_to_serve_runs_on_a_worker_and_its_events_reach_sse(
    processes: list[Process], tmp_path: Path, redis_backend: str, data_dir: Path
) -> None:
    serve = Process(
        tmp_path / "serve.log",
        "serve",
        "--host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--jobs-backend",
        redis_backend,
        "--data-dir",
        str(data_dir),
        env={"MODELWIRE_JOBS__WORKERS": "0"},  # a gateway: it accepts jobs, runs none
    )
    processes.append(serve)
    remote = worker(processes, tmp_path, redis_backend, data_dir, "worker")
    port = int(serve.wait_for(r"REST http://127\.0\.0\.1:(\d+)").group(1))
    remote.wait_for("ready: 1 job worker")
    texts = [f"I loved this film {i}" if i % 2 else f"awful, boring film {i}" for i in range(300)]
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        async with aconnect_sse(client, "GET", "/v1/events", params={"topics": "jobs/*"}) as source:
            submitted = await client.post("/v1/jobs", json={"model": "sentiment", "inputs": texts})
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["id"]
            async with asyncio.timeout(60):
                async for sse in source.aiter_sse():
                    if not sse.data:
                        continue  # the first message only sets the retry delay
                    event = json.loads(sse.data)
                    if event["data"].get("id") == job_id:
                        events.append(event)
                        if sse.event in ("job.succeeded", "job.failed"):
                            break
        types = [e["type"] for e in events]
        assert types[0] == "job.queued"
        assert "job.running" in types
        assert types[-1] == "job.succeeded"
        assert events[-1]["data"]["progress"] == {"done": 300, "total": 300, "errors": 0}
        lines = (await client.get(f"/v1/jobs/{job_id}/results")).text.splitlines()
        assert [json.loads(line)["index"] for line in lines] == list(range(300))
        assert json.loads(lines[1])["sentiment"] == "positive"
    remote.wait_for(rf"job {job_id} succeeded")
    assert f"job {job_id}" not in serve.text()
    assert remote.stop() == 0
    assert serve.stop() == 0


def test_worker_refuses_a_sqlite_store_no_server_made(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["worker", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no job database" in result.output
    assert "redis://" in result.output


def test_worker_refuses_zero_workers(runner: CliRunner) -> None:
    result = runner.invoke(app, ["worker", "--concurrency", "0"])
    assert result.exit_code == 2
    result = runner.invoke(
        app, ["worker", "--jobs-backend", "redis://127.0.0.1:1/0"], env={"MODELWIRE_JOBS__WORKERS": "0"}
    )
    assert result.exit_code == 1
    assert "at least one job worker" in result.output


def test_worker_help_names_every_environment_twin(runner: CliRunner) -> None:
    result = runner.invoke(app, ["worker", "--help"])
    assert result.exit_code == 0
    for env in (
        "MODELWIRE_JOBS__BACKEND",
        "MODELWIRE_JOBS__WORKERS",
        "MODELWIRE_DATA_DIR",
        "MODELWIRE_OPS_PORT",
    ):
        assert env in result.stdout


def test_worker_with_an_unreachable_redis_fails_with_one_line(runner: CliRunner, data_dir: Path) -> None:
    result = runner.invoke(
        app, ["worker", "--jobs-backend", "redis://127.0.0.1:1/0", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 1
    assert "Redis is unreachable" in result.output


def test_worker_takes_the_backend_from_the_environment(runner: CliRunner, data_dir: Path) -> None:
    env = {"MODELWIRE_JOBS__BACKEND": "redis://127.0.0.1:1/0?prefix=x"}
    result = runner.invoke(app, ["worker", "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 1
    assert "Redis is unreachable" in result.output  # not the SQLite refusal: the variable was read
    assert "redis://127.0.0.1:1/0 (keys x:*)" in result.output


async def test_a_worker_with_an_ops_port_answers_probes_and_scrapes(
    processes: list[Process], tmp_path: Path, redis_backend: str, data_dir: Path
) -> None:
    env = {"MODELWIRE_MODELS": json.dumps(ECHO)}
    process = worker(processes, tmp_path, redis_backend, data_dir, "ops", "--ops-port", "0", **env)
    process.wait_for("ready: 1 job worker")
    port = int(process.wait_for(r"health and metrics http://127\.0\.0\.1:(\d+)").group(1))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        ready = await client.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (200, {"ready": True})
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert re.search(r'modelwire_model_ready\{[^}]*model="echo"[^}]*\} 1\.0', metrics.text), metrics.text
        assert (await client.get("/v1/jobs")).status_code == 404  # no jobs API: a worker only runs them
    assert process.stop() == 0
