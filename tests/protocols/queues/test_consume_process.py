"""``modelwire consume`` as a real process: killed with SIGKILL mid-burst and restarted, every message is
answered (duplicates counted, as at-least-once allows); a poison message that kills the process each time is
dead-lettered after ``max_deliveries``; SIGTERM drains and exits 0.

Core NATS request-reply is at-most-once by nature (a message in flight when a consumer dies is lost; its
requester's timeout says so), so these tests run over the durable paths: RabbitMQ, JetStream, Redis Streams.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwire.client.queues import QueueSender
from tests.protocols.queues.conftest import BrokerUnderTest, open_broker

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


class ConsumeProcess:
    """``python -m modelwire consume`` with the test's queue, its output in a file."""

    def __init__(self, broker: BrokerUnderTest, tmp_path: Path, model: str, **queue: Any) -> None:
        self.env = {
            **os.environ,
            "MODELWIRE_MODELS": json.dumps(
                [{"name": "echo", "source": model, "options": {"delay_s": 0.002}}]
            ),
            "MODELWIRE_QUEUES": json.dumps([broker.queue(**queue)]),
            "MODELWIRE_LIMITS__SHUTDOWN_GRACE_S": "10",
        }
        self.tmp_path = tmp_path
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "consume-0.log"

    def start(self, *args: str) -> None:
        self.runs += 1
        self.log = self.tmp_path / f"consume-{self.runs}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelwire",
                    "consume",
                    "--data-dir",
                    str(self.tmp_path),
                    "--app-dir",
                    str(ROOT),
                    *args,
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while b"modelwire consume ready" not in self.log.read_bytes():
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"modelwire consume exited {self.proc.returncode}:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"modelwire consume not ready after {timeout:g} s:\n{self.log.read_text()}")
            await asyncio.sleep(0.05)

    async def exited(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"modelwire consume still running after {timeout:g} s:\n{self.log.read_text()}")
            await asyncio.sleep(0.05)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def durable(durable_broker: BrokerUnderTest) -> BrokerUnderTest:
    """Core NATS request-reply is at-most-once: JetStream (``nats-jetstream``) is its durable path."""
    return durable_broker


@pytest.fixture
def processes() -> Iterator[list[ConsumeProcess]]:
    started: list[ConsumeProcess] = []
    yield started
    for process in started:
        process.kill()


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(0.02)


async def test_sigkill_mid_burst_then_restart_answers_every_message(
    durable: BrokerUnderTest, tmp_path: Path, processes: list[ConsumeProcess]
) -> None:
    consumer = ConsumeProcess(durable, tmp_path, "tests.models:EchoModel", prefetch=32)
    processes.append(consumer)
    consumer.start()
    await consumer.ready()
    count = 1000
    async with QueueSender(durable.settings, durable=durable.durable, timeout=120.0) as sender:
        burst = asyncio.gather(
            *(sender.request(json.dumps({"text": f"m{i}"}).encode()) for i in range(count))
        )
        await wait_for(lambda: len(sender._answered) >= 100, 60, "the first 100 answers")
        consumer.kill()  # SIGKILL: no drain, whatever was unacknowledged goes back to the broker
        answered_before = len(sender._answered)
        consumer.start()
        await consumer.ready()
        answers = await burst
        await asyncio.sleep(0)
    assert [json.loads(a)["echo"] for a in answers] == [f"m{i}" for i in range(count)]
    assert answered_before < count, "the burst was over before the kill: nothing was tested"
    print(f"{durable.kind}: {answered_before} answered before SIGKILL, {sender.duplicates} duplicates")
    # at-least-once: only messages answered but not yet acknowledged when the process died come twice
    assert sender.duplicates <= 32 + 1, f"{sender.duplicates} duplicates"


async def test_a_poison_message_is_dead_lettered_after_max_deliveries(
    durable: BrokerUnderTest, tmp_path: Path, processes: list[ConsumeProcess]
) -> None:
    consumer = ConsumeProcess(durable, tmp_path, "tests.models:CrashModel", max_deliveries=2)
    processes.append(consumer)
    async with QueueSender(durable.settings, durable=durable.durable, timeout=120.0) as sender:
        consumer.start()
        await consumer.ready()
        poison = asyncio.ensure_future(sender.request(b'{"text": "crash"}'))
        for _ in range(2):  # delivered, crashes the process; twice
            assert await consumer.exited() == 3
            consumer.start()
            await consumer.ready()
        answer = json.loads(await poison)
        assert answer["error"]["code"] == "INTERNAL"
        assert "max_deliveries 2" in answer["error"]["message"]
        # still serving
        assert json.loads(await sender.request(b'{"text": "fine"}')) == {"echo": "fine"}
    dead = await durable.dead_letters(expect=1)
    assert len(dead) == 1
    assert "max_deliveries" in dead[0][1]
    assert consumer.proc is not None
    consumer.proc.send_signal(signal.SIGTERM)
    assert await consumer.exited() == 0
    assert b"stopped consuming" in consumer.log.read_bytes()


async def test_ops_port_serves_health_and_metrics_and_nothing_else(
    tmp_path: Path, processes: list[ConsumeProcess]
) -> None:
    """``consume --ops-port 0``: probes and Prometheus reach a consumer; it serves no inference over HTTP."""
    async with open_broker("rabbitmq") as broker:
        consumer = ConsumeProcess(broker, tmp_path, "tests.models:EchoModel")
        processes.append(consumer)
        consumer.start("--ops-port", "0")
        await consumer.ready()
        found = re.search(rb"health and metrics http://127\.0\.0\.1:(\d+)", consumer.log.read_bytes())
        assert found, consumer.log.read_text()
        base = f"http://127.0.0.1:{int(found.group(1))}"
        async with QueueSender(broker.settings, timeout=30.0) as sender:
            answer = json.loads(await sender.request(json.dumps({"text": "probe me"}).encode()))
        assert answer["echo"] == "probe me"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            live, ready = await client.get("/v2/health/live"), await client.get("/v2/health/ready")
            assert (live.status_code, live.json()) == (200, {"live": True})
            assert (ready.status_code, ready.json()) == (200, {"ready": True})
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert re.search(
                r'modelwire_queue_messages_total\{[^}]*outcome="answered"[^}]*\} 1\.0', metrics.text
            )
            missing = await client.post("/predict", json={"text": "no"})
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "NOT_FOUND"
            wrong = await client.post("/metrics")
            assert wrong.status_code == 405
        assert consumer.proc is not None
        consumer.proc.send_signal(signal.SIGTERM)
        assert await consumer.exited() == 0
