"""The event fan-out driver: N subscribers to one topic over SSE or WebSocket, in one separate process.

Every subscriber opens its own connection (SSE: ``GET /v1/events?topics=...`` read as raw HTTP/1.1 chunks;
WebSocket: ``/v1/ws`` with ``modelwire.v1.json`` and ``{"op": "subscribe"}``). Once all are connected and a
warm-up has passed, it counts for ``--duration`` seconds every event each subscriber receives and its delivery
latency: receive time minus the event's ``time`` (stamped by the server's bus at publish; same machine, same
clock). A subscriber the server drops for falling behind (``event: error`` / ``{"op": "error"}``) is counted.

    python bench/fanout_load.py --url http://127.0.0.1:8000 --transport sse --subscribers 1000 --duration 10

Prints one JSON object: connected, published_per_s (distinct event ids seen), delivered_per_s (all
subscribers), delivery_ratio (delivered / (published x connected)), p50_ms, p99_ms, max_ms, dropped,
failed (connections that never subscribed), connect_s, client_cpu (driver CPU seconds per second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from array import array
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import msgspec


class Envelope(msgspec.Struct):
    """The only fields of an event (SSE data or WebSocket message) the driver reads."""

    id: int = 0
    time: float = 0.0
    op: str = "event"


_decode = msgspec.json.Decoder(Envelope).decode


@dataclass
class Tally:
    latencies: array[float] = field(default_factory=lambda: array("d"))
    ids: set[int] = field(default_factory=set)
    connected: int = 0
    failed: int = 0
    dropped: int = 0
    recording: bool = False

    def record(self, payload: bytes, now: float) -> None:
        envelope = _decode(payload)
        if self.recording:
            self.latencies.append(now - envelope.time)
            self.ids.add(envelope.id)


async def _sse(url: str, topic: str, tally: Tally, started: asyncio.Event) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        request = f"GET /v1/events?topics={topic} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        writer.write(f"{request}Accept: text/event-stream\r\n\r\n".encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"GET /v1/events answered {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # headers; granian sends the stream chunked
        tally.connected += 1
        started.set()
        buffer = b""
        while True:
            size = int((await reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                return  # the server ended the stream
            buffer += (await reader.readexactly(size + 2))[:-2]
            *blocks, buffer = buffer.split(b"\n\n")
            now = time.time()
            for block in blocks:
                if block.startswith(b"event: error") or b"\nevent: error" in block:
                    tally.dropped += 1
                    return
                start = block.find(b"data: ")
                if start >= 0:
                    tally.record(block[start + 6 :].split(b"\n", 1)[0], now)
    finally:
        writer.close()


async def _ws(url: str, topic: str, tally: Tally, started: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    parts = urlsplit(url)
    ws_url = f"ws://{parts.netloc}/v1/ws"
    async with connect(ws_url, subprotocols=["modelwire.v1.json"], max_queue=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topic": topic}))
        async for raw in ws:
            now = time.time()
            envelope = _decode(raw)
            if envelope.op == "event":
                if tally.recording:
                    tally.latencies.append(now - envelope.time)
                    tally.ids.add(envelope.id)
            elif envelope.op == "subscribed":
                tally.connected += 1
                started.set()
            elif envelope.op == "error":
                tally.dropped += 1
                return


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000, 3)


async def main(args: argparse.Namespace) -> dict[str, object]:
    tally = Tally()
    subscribe = _sse if args.transport == "sse" else _ws
    gate = asyncio.Semaphore(64)  # connect in waves: the listen backlog is finite

    async def one() -> None:
        started = asyncio.Event()
        async with gate:
            task = asyncio.ensure_future(subscribe(args.url, args.topic, tally, started))
            waiter = asyncio.ensure_future(started.wait())
            await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        try:
            await task
        except Exception:  # a subscriber that failed is counted, not fatal
            if not started.is_set():
                tally.failed += 1

    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(one()) for _ in range(args.subscribers)]
    deadline = t0 + args.connect_timeout
    while tally.connected + tally.failed < args.subscribers and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(args.warmup)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    tally.recording = True
    start = time.monotonic()
    await asyncio.sleep(args.duration)
    tally.recording = False
    elapsed = time.monotonic() - start
    used = resource.getrusage(resource.RUSAGE_SELF)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ordered = sorted(tally.latencies)
    published = len(tally.ids) / elapsed
    delivered = len(ordered) / elapsed
    expected = published * tally.connected
    return {
        "transport": args.transport,
        "subscribers": args.subscribers,
        "connected": tally.connected,
        "failed": tally.failed,
        "dropped": tally.dropped,
        "published_per_s": round(published, 1),
        "delivered_per_s": round(delivered, 1),
        "delivery_ratio": round(delivered / expected, 4) if expected else None,
        "p50_ms": _percentile(ordered, 0.50),
        "p99_ms": _percentile(ordered, 0.99),
        "max_ms": _percentile(ordered, 1.0),
        "connect_s": round(connect_s, 2),
        "client_cpu": round((used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime) / elapsed, 2),
    }


def raise_fd_limit() -> None:
    """Allow a few thousand sockets: 1,000 subscribers need more than the usual soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server's REST base URL, http://host:port")
    parser.add_argument("--transport", choices=("sse", "ws"), default="sse")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--topic", default="metrics")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise_fd_limit()
    print(json.dumps(asyncio.run(main(parse_args()))), flush=True)
    sys.exit(0)
