"""A burst of 10,000 requests through ``modelwire consume`` (a real process) on every broker: each answered
exactly once (matched by correlation id, its body checked against its request, no duplicate, and the
consumer's own count of answers exact), with the consumer's memory bounded.

Memory: the consumer's resident set (``/proc/<pid>/status`` ``VmRSS``) is read after a warm-up (so what
grows once, the interpreter's caches and the broker client's buffers, has grown) and again after the burst.
Each request carries a 2,000-character text and is answered with it: a consumer that kept the 10,000
messages it answered (their bodies, answers or tasks) would hold more than 40 MB more. The bound is
``_GROWTH_BOUND`` (16 MiB): a size, not a time. Prefetch bounds what it holds at once (64 messages).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path

import pytest

from modelwire.client.queues import QueueSender
from tests.protocols.queues.conftest import BrokerUnderTest
from tests.protocols.queues.test_consume_process import ConsumeProcess

pytestmark = pytest.mark.slow

_COUNT = 10_000
_WARM_UP = 1_000
_TEXT_CHARS = 2_000
_GROWTH_BOUND = 16 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, status
    return int(match.group(1)) * 1024


def body(i: int) -> bytes:
    prefix = f"m{i}-"
    return json.dumps({"text": prefix + "x" * (_TEXT_CHARS - len(prefix))}).encode()


async def burst(sender: QueueSender, start: int, count: int) -> None:
    answers = await asyncio.gather(*(sender.request(body(i)) for i in range(start, start + count)))
    for i, answer in zip(range(start, start + count), answers, strict=True):
        value = json.loads(answer)["value"]
        assert value.startswith(f"m{i}-"), f"request {i} got the answer of {value[:12]!r}"
        assert len(value) == _TEXT_CHARS


async def test_ten_thousand_answered_exactly_once_with_memory_bounded(
    broker: BrokerUnderTest, tmp_path: Path
) -> None:
    consumer = ConsumeProcess(broker, tmp_path, "tests.models:IdentityModel", prefetch=64)
    consumer.start()
    try:
        await consumer.ready()
        assert consumer.proc is not None
        pid = consumer.proc.pid
        async with QueueSender(broker.settings, durable=broker.durable, timeout=300.0) as sender:
            await burst(sender, 0, _WARM_UP)
            before = rss_bytes(pid)
            await burst(sender, _WARM_UP, _COUNT)
            after = rss_bytes(pid)
            await asyncio.sleep(0)  # every answer is in; a late duplicate would count
        assert sender.duplicates == 0
        consumer.proc.send_signal(signal.SIGTERM)
        assert await consumer.exited() == 0
    finally:
        consumer.kill()
    log = consumer.log.read_text()
    stopped = re.search(r"stopped consuming .*'answered': (\d+)", log)
    assert stopped is not None, log
    assert int(stopped.group(1)) == _WARM_UP + _COUNT  # the consumer answered each once, no more
    growth = after - before
    print(f"{broker.kind}: RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB (+{growth / 2**20:.1f})")
    assert growth < _GROWTH_BOUND, f"the consumer grew {growth / 2**20:.1f} MiB over {_COUNT} messages"
