"""``modelwire serve`` ingesting feature events as a real process, killed with SIGKILL mid-stream and
restarted: no acknowledged event is lost, and the replayed ones leave the store exactly as if each event had
been delivered once (last-write-wins by event time). Over the durable brokers, into the embedded store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelwire.backends.sqlite.features import SqliteFeatureStore
from tests.features.brokers import publish, source
from tests.protocols.queues.conftest import BrokerUnderTest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

USERS = 100
EVENTS = 10_000
SERVE = (sys.executable, "-m", "modelwire", "serve", "--http-port", "0", "--grpc-port", "0")


class ServeProcess:
    def __init__(self, under: BrokerUnderTest, data_dir: Path) -> None:
        view = {
            "name": "user_stats",
            "entities": ["user_id"],
            "ttl_s": 86400,
            "features": {"n_reviews": "int"},
            "source": source(under, prefetch=4),
        }
        self.env = {**os.environ, "MODELWIRE_FEATURE_VIEWS": json.dumps([view])}
        self.data_dir = data_dir
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "serve-0.log"

    def start(self) -> None:
        self.runs += 1
        self.log = self.data_dir.parent / f"serve-{self.runs}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*SERVE, "--data-dir", str(self.data_dir), "--app-dir", str(ROOT)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while b"feature view user_stats: consuming" not in self.log.read_bytes():
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"modelwire serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"modelwire serve not ready after {timeout:g} s:\n{self.log.read_text()}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL
            self.proc.wait(10)


@pytest.fixture
def process(under: BrokerUnderTest, trained_data_dir: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(trained_data_dir, data_dir)
    serving = ServeProcess(under, data_dir)
    yield serving
    serving.kill()


async def stored(path: Path) -> dict[str, tuple[int, float]]:
    """What the process wrote, read as another process reads the file."""
    store = SqliteFeatureStore(path)
    await store.open()
    try:
        got = await store.read([("user_stats", json.dumps([f"u{k}"])) for k in range(USERS)])
    finally:
        await store.close()
    return {f"u{k}": got[k]["n_reviews"] for k in range(USERS) if "n_reviews" in got[k]}


async def test_sigkill_mid_stream_then_restart_loses_nothing_and_replays_change_nothing(
    under: BrokerUnderTest,
    process: ServeProcess,
) -> None:
    if under.kind == "nats":
        pytest.skip("core NATS is at-most-once")
    base = time.time() - 3600
    events = [
        {"user_id": f"u{i % USERS}", "n_reviews": i, "event_timestamp": base + i} for i in range(EVENTS)
    ]
    expected = {f"u{k}": (EVENTS - USERS + k, base + EVENTS - USERS + k) for k in range(USERS)}
    path = process.data_dir / "features.sqlite3"
    process.start()
    await process.ready()
    producer = asyncio.ensure_future(publish(under, [json.dumps(e).encode() for e in events]))
    deadline = time.monotonic() + 60
    while not path.exists() or not await stored(path):  # the first events are written
        assert time.monotonic() < deadline, "no progress before the kill"
        await asyncio.sleep(0.01)
    process.kill()  # while the producer is still sending: the broker keeps what comes meanwhile
    at_kill = await stored(path)
    await producer
    assert at_kill != expected, "every event was written before the kill: nothing was tested"
    process.start()
    await process.ready()
    await publish(under, [json.dumps(e).encode() for e in events[: EVENTS // 2]])  # a producer's replay
    deadline = time.monotonic() + 120
    while (now := await stored(path)) != expected:
        assert time.monotonic() < deadline, f"not every event landed: {len(now)} users, e.g. {now.get('u0')}"
        await asyncio.sleep(0.05)
    # every event acknowledged before the kill is in: each user's value is at least what it was then
    assert all(expected[u][0] >= v[0] for u, v in at_kill.items())
    done = sum(1 for u in at_kill if at_kill[u] == expected[u])
    print(f"{under.kind}: {done} of {USERS} users final at the kill")


async def test_consume_ingests_feature_events_with_no_queue_and_no_listener(
    under: BrokerUnderTest, process: ServeProcess
) -> None:
    """``modelwire consume`` runs a view's ingestion alone (no ``--queue``): no REST or gRPC port. ``under``
    is each durable broker (RabbitMQ, JetStream, Redis)."""
    base = time.time() - 60
    events = [{"user_id": f"u{k}", "n_reviews": k, "event_timestamp": base + k} for k in range(USERS)]
    with (process.data_dir.parent / "consume.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelwire", "consume", "--data-dir", str(process.data_dir)],
            env=process.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    process.proc = proc  # the fixture kills it if the test fails
    process.log = process.data_dir.parent / "consume.log"
    await process.ready()
    deadline = time.monotonic() + 30
    while b"modelwire consume ready: features user_stats <- " not in process.log.read_bytes():
        assert proc.poll() is None, process.log.read_text()
        assert time.monotonic() < deadline, process.log.read_text()
        await asyncio.sleep(0.05)
    await publish(under, [json.dumps(e).encode() for e in events])
    path = process.data_dir / "features.sqlite3"
    expected = {f"u{k}": (k, base + k) for k in range(USERS)}
    deadline = time.monotonic() + 60
    while not path.exists() or (now := await stored(path)) != expected:
        assert time.monotonic() < deadline, f"not every event landed: {process.log.read_text()}"
        await asyncio.sleep(0.05)
    assert len(now) == USERS
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
