"""Nothing accepted is lost: ``modelwire serve`` killed with SIGKILL mid-job, restarted on the same data
dir, finishes the job with exactly one result per row. And the server's memory does not grow with the
size of an upload."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, data_dir: Path, delay_s: float, batch_size: int) -> Path:
    config = tmp_path / "modelwire.toml"
    config.write_text(
        f"""
data_dir = "{data_dir}"
http_port = 0
grpc_port = 0
log_level = "info"

[limits]
shutdown_grace_s = 2

[jobs]
lease_s = 2.0
batch_size = {batch_size}
workers = 1

[[models]]
name = "echo"
source = "tests.models:SlowModel"  # answers {{"echo": text}} after delay_s; keeps nothing
options = {{ delay_s = {delay_s} }}
"""
    )
    return config


class Served:
    """``python -m modelwire serve --config …`` as a child process; ``url`` once it logged its port."""

    def __init__(self, config: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelwire", "serve", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        port = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            if match := re.search(r"REST http://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        if not port:
            self.kill()
            pytest.fail("the server did not report its port")
        self.url = f"http://127.0.0.1:{port}"

    def rss_kib(self, field: str = "VmRSS") -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None
        return int(match.group(1))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for server in started:
        server.kill()


def ndjson_rows(n: int, width: int = 0) -> Iterator[bytes]:
    pad = "x" * width
    for start in range(0, n, 5000):
        yield b"".join(b'"row-%d%s"\n' % (i, pad.encode()) for i in range(start, min(n, start + 5000)))


def job_state(client: httpx.Client, job_id: str) -> dict[str, Any]:
    state: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
    return state


def wait_final(client: httpx.Client, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = job_state(client, job_id)
        if state["status"] in ("succeeded", "failed", "cancelled"):
            return state
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not finish in {timeout_s} s")


@pytest.mark.slow
def test_sigkill_mid_job_then_restart_completes_every_row_exactly_once(
    tmp_path: Path, served: list[Served]
) -> None:
    rows = 20_000
    config = write_config(tmp_path, tmp_path / "data", delay_s=0.02, batch_size=100)
    first = Served(config)
    served.append(first)
    with httpx.Client(base_url=first.url, timeout=60) as client:
        response = client.post(
            "/v1/jobs?model=echo", content=ndjson_rows(rows), headers={"content-type": "application/x-ndjson"}
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        while (state := job_state(client, job_id))["progress"]["done"] < 1000:
            assert state["status"] in ("queued", "running")
            time.sleep(0.02)
    first.kill()  # SIGKILL: no shutdown, no lease released, a batch possibly half-done
    assert state["progress"]["done"] < rows, "the job finished before the kill; make it slower"

    second = Served(config)
    served.append(second)
    with httpx.Client(base_url=second.url, timeout=60) as client:
        final = wait_final(client, job_id)
        assert final["status"] == "succeeded"
        assert final["attempts"] == 2
        assert final["progress"] == {"done": rows, "total": rows, "errors": 0}
        lines = client.get(f"/v1/jobs/{job_id}/results").content.splitlines()
    results = [msgspec.json.decode(line) for line in lines]
    assert len(results) == rows  # nothing duplicated
    assert [r["index"] for r in results] == list(range(rows))  # nothing lost, in input order
    assert all(r["echo"] == f"row-{r['index']}" for r in results)  # each result is its own row's


@pytest.mark.slow
def test_server_memory_does_not_grow_with_the_upload(tmp_path: Path, served: list[Served]) -> None:
    rows, width = 200_000, 200  # ~41 MB of NDJSON, streamed
    server = Served(write_config(tmp_path, tmp_path / "data", delay_s=0.0, batch_size=512))
    served.append(server)
    with httpx.Client(base_url=server.url, timeout=120) as client:
        client.post("/v1/jobs", json={"model": "echo", "inputs": ["warm up"]})  # first-use allocations
        time.sleep(0.5)
        before = server.rss_kib()
        response = client.post(
            "/v1/jobs?model=echo",
            content=ndjson_rows(rows, width),
            headers={"content-type": "application/x-ndjson"},
        )
        assert response.status_code == 202, response.text
        peak_upload = server.rss_kib("VmHWM")
        final = wait_final(client, response.json()["id"])
        assert final["progress"]["done"] == rows
        peak = server.rss_kib("VmHWM")
    upload_kib = rows * (width + 12) // 1024
    growth = peak - before
    print(f"RSS {before} KiB, peak {peak_upload} KiB uploaded, {peak} KiB processed; {upload_kib} KiB sent")
    # Holding the upload (or its rows) in memory would cost more than the upload itself; streaming
    # costs a few chunks plus SQLite's page cache.
    assert growth < upload_kib // 2, (growth, upload_kib)
