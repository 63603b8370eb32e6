"""The payload log under a burst: every request answered, every call either written or dropped (and counted),
files rotate, every line a CloudEvents envelope; a full queue drops exactly what does not fit; SIGKILL
leaves no half-written line; ``modelwire payloads tail|export`` read the files; a broker sink gets the
records."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelwire.cli import app
from modelwire.cli.monitoring import read_payloads
from modelwire.monitoring.payloads import payload_files
from modelwire.settings import Settings
from tests.protocols.queues.conftest import NATS_URL, REDIS_URL, _require
from tests.serving import ThreadedServer

ROOT = Path(__file__).resolve().parents[2]


def start(data_dir: Path, **payload_log: Any) -> ThreadedServer:
    settings = Settings(
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        data_dir=data_dir,
        monitoring={"enabled": False, "payload_log": {"sample_rate": 1.0, **payload_log}},
    )
    return ThreadedServer(settings).start()


def metric(server: ThreadedServer, outcome: str) -> float:
    text = httpx.get(server.http_url + "/metrics").text
    found = re.search(rf'modelwire_payload_log_total{{outcome="{outcome}"}} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


async def burst(url: str, n: int, concurrency: int = 16) -> list[int]:
    statuses: list[int] = []
    queue = list(range(n))
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one() -> None:
            while queue:
                i = queue.pop()
                r = await client.post(
                    "/v1/models/sentiment/predict", json={"text": f"review {i}: a fine film"}
                )
                statuses.append(r.status_code)

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return statuses


def check_lines(folder: Path) -> list[dict[str, Any]]:
    """Every line of every file is a complete CloudEvents envelope of a call.

    A file may be empty: a process killed between creating the next file and its first write leaves one,
    which holds no line, so no broken line.
    """
    records = []
    for path in payload_files(folder):
        raw = path.read_bytes()
        assert raw == b"" or raw.endswith(b"\n"), path
        for line in raw.splitlines():
            record = json.loads(line)
            assert record["specversion"] == "1.0"
            assert record["type"] == "io.modelwire.inference.payload"
            data = record["data"]
            assert data["model"] == "sentiment"
            assert data["status"] == "OK"
            assert len(data["inputs"]) == len(data["outputs"]) == 1
            records.append(record)
    return records


async def test_a_burst_is_answered_counted_rotated_and_well_formed(data_dir: Path) -> None:
    server = start(data_dir, buffer=200, max_file_bytes=4096, max_files=10_000, flush_interval_s=0.01)
    try:
        statuses = await burst(server.http_url, 1500)
        assert statuses == [200] * 1500
    finally:
        server.stop()  # flushes what is queued
    records = check_lines(data_dir / "payloads")
    files = payload_files(data_dir / "payloads")
    assert len(files) > 1  # rotated
    assert len({r["id"] for r in records}) == len(records)  # one request id each
    log = server.server.services.payload_log  # type: ignore[union-attr]
    assert log.written == len(records)
    assert log.written + log.dropped == 1500


async def test_a_full_queue_drops_what_does_not_fit_and_counts_it(data_dir: Path) -> None:
    # the writer wakes every 60 s or at 512 queued: the queue of 50 fills and everything after is dropped
    server = start(data_dir, buffer=50, flush_interval_s=60)
    try:
        assert await burst(server.http_url, 300) == [200] * 300
        assert metric(server, "dropped") == 250
        assert metric(server, "written") == 0
    finally:
        server.stop()
    assert len(check_lines(data_dir / "payloads")) == 50  # written at the stop


@pytest.mark.parametrize("mode", ["hash", "redact"])
def test_hashed_and_redacted_inputs(data_dir: Path, mode: str) -> None:
    server = start(data_dir, inputs=mode, flush_interval_s=0.01)
    try:
        r = httpx.post(server.http_url + "/v1/models/sentiment/predict", json={"texts": ["secret text", " "]})
        assert r.status_code == 200
    finally:
        server.stop()
    records = list(read_payloads(data_dir / "payloads"))
    assert len(records) == 1, records
    data = records[0]["data"]
    assert "inputs" not in data
    if mode == "hash":
        assert [len(h) for h in data["inputs_sha256"]] == [64, 64]
    else:
        assert "inputs_sha256" not in data
    assert data["outputs"][1]["error"]["code"] == "INVALID_ARGUMENT"
    assert "secret" not in json.dumps(records[0])


class Serve:
    """``python -m modelwire serve`` in its own session, with its log in a file; stopped by its PID."""

    def __init__(self, log: Path, data_dir: Path, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWIRE_")}
        env.update({"NO_COLOR": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
        self.log = log
        with log.open("wb") as out:
            args = ["serve", "--http-port", "0", "--grpc-port", "0", "--data-dir", str(data_dir)]
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelwire", *args, "--config", str(config)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def url(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"REST http://127\.0\.0\.1:(\d+)", self.log.read_text(errors="replace"))
            if found:
                return f"http://127.0.0.1:{found.group(1)}"
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        raise AssertionError(f"never ready:\n{self.log.read_text()[-2000:]}")


@pytest.fixture
def serve_process(data_dir: Path, tmp_path: Path) -> Iterator[Serve]:
    config = tmp_path / "modelwire.toml"
    config.write_text(
        "[monitoring.payload_log]\nsample_rate = 1.0\nflush_interval_s = 0.01\nmax_file_bytes = 2048\n"
        "max_files = 10000\n"
    )
    process = Serve(tmp_path / "serve.log", data_dir, config)
    yield process
    if process.proc.poll() is None:
        os.kill(process.proc.pid, signal.SIGKILL)
        process.proc.wait(10)


def test_sigkill_leaves_no_corrupted_line(serve_process: Serve, data_dir: Path) -> None:
    url = serve_process.url()
    answered = 0
    stop = threading.Event()
    with httpx.Client(base_url=url, timeout=30) as client:

        def traffic() -> None:
            nonlocal answered
            while not stop.is_set():
                try:
                    r = client.post("/v1/models/sentiment/predict", json={"text": "x" * 50 + " good"})
                except httpx.TransportError:
                    return
                answered += r.status_code == 200

        thread = threading.Thread(target=traffic)
        thread.start()
        folder = data_dir / "payloads"
        deadline = time.monotonic() + 60
        while len(payload_files(folder)) < 3:  # writing under load, several files in
            assert time.monotonic() < deadline, "the payload log never rotated"
            time.sleep(0.02)
        os.kill(serve_process.proc.pid, signal.SIGKILL)
        serve_process.proc.wait(10)
        stop.set()
        thread.join(30)
    records = check_lines(folder)
    assert 0 < len(records) <= answered


def test_tail_and_export(data_dir: Path) -> None:
    server = start(data_dir, flush_interval_s=0.01)
    try:
        for text in ("one good film", "two bad films", "three"):
            assert (
                httpx.post(server.http_url + "/v1/models/sentiment/predict", json={"text": text}).status_code
                == 200
            )
    finally:
        server.stop()
    runner = CliRunner()
    tail = runner.invoke(app, ["payloads", "tail", "-n", "2", "--data-dir", str(data_dir)])
    assert tail.exit_code == 0, tail.output
    shown = [json.loads(line)["data"]["inputs"] for line in tail.stdout.splitlines()]
    assert shown == [["two bad films"], ["three"]]
    out = runner.invoke(app, ["payloads", "export", "--format", "csv", "--data-dir", str(data_dir)])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["input"] for r in rows] == ["one good film", "two bad films", "three"]
    assert {r["output.sentiment"] for r in rows} <= {"positive", "negative"}
    assert all(0.5 <= float(r["output.confidence"]) <= 1 for r in rows)
    later = runner.invoke(
        app, ["payloads", "export", "--since", "2999-01-01T00:00:00Z", "--data-dir", str(data_dir)]
    )
    assert later.exit_code == 0
    assert later.stdout == ""
    bad = runner.invoke(app, ["payloads", "export", "--since", "yesterday", "--data-dir", str(data_dir)])
    assert bad.exit_code == 1
    assert "ISO 8601" in bad.output


async def _records_nats(destination: str, received: list[dict[str, Any]]) -> Any:
    import nats

    nc = await nats.connect(NATS_URL)

    async def on_message(msg: Any) -> None:
        received.append(json.loads(msg.data))

    await nc.subscribe(destination + ".>", cb=on_message)
    await nc.flush()
    return nc.close


async def _records_redis(destination: str, received: list[dict[str, Any]]) -> Any:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    stop = asyncio.Event()

    async def read() -> None:
        last = "0-0"
        while not stop.is_set():
            for _key, entries in await client.xread({destination: last}, count=100, block=100) or ():
                for entry_id, fields in entries:
                    last = entry_id
                    assert fields[b"topic"] == b"payloads"
                    received.append(json.loads(fields[b"body"]))

    reader = asyncio.create_task(read())

    async def close() -> None:
        stop.set()
        await reader
        await client.delete(destination)
        await client.aclose()

    return close


@pytest.mark.parametrize("kind", ["nats", "redis"])
async def test_the_broker_sink_publishes_the_records(data_dir: Path, kind: str) -> None:
    url = {"nats": NATS_URL, "redis": REDIS_URL}[kind]
    _require(url)
    destination = f"test_{uuid.uuid4().hex[:8]}.payloads"
    received: list[dict[str, Any]] = []
    close = await (_records_nats if kind == "nats" else _records_redis)(destination, received)
    server = start(data_dir, sink=url, destination=destination, flush_interval_s=0.01)
    try:
        async with httpx.AsyncClient(base_url=server.http_url) as client:
            r = await client.post("/v1/models/sentiment/predict", json={"text": "a lovely film"})
            assert r.status_code == 200
        deadline = time.monotonic() + 30
        while not received:
            assert time.monotonic() < deadline, f"no payload record on {kind}"
            await asyncio.sleep(0.02)
    finally:
        server.stop()
        await close()
    (record,) = received
    assert record["data"]["inputs"] == ["a lovely film"]
    assert record["inferenceservicename"] == "sentiment"
    assert record["type"] == "io.modelwire.inference.payload"
