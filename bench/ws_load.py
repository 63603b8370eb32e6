"""A closed-loop WebSocket load driver: C predictions kept in flight, pipelined over N connections.

Each connection keeps C/N ``{"id", "op": "predict", "text"}`` messages outstanding on ``/v1/ws`` and sends
the next one the moment any reply arrives (replies come in any order; they are matched by id), for a fixed
time. What it measures is the point of a WebSocket: many predictions in flight without paying for an HTTP
request each, through the server's same batching. The first reply is checked to carry a sentiment label;
error replies are counted by code.

    python bench/ws_load.py --url ws://127.0.0.1:8000/v1/ws --concurrency 128 --connections 4 --duration 10

Pointed at the diagnostic echo route (``/v1/ws/echo``, with ``MODELWIRE_WS__ECHO=true``) it measures the
WebSocket transport alone: each message comes back as sent, id included.

Prints one JSON object: requests, req_per_s, p50_ms, p99_ms, mean_ms, errors (by code), client_cpu.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass, field

import msgspec
from websockets.asyncio.client import ClientConnection, connect

TEXT = "I love this product"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    recording: bool = False
    stopping: bool = False


async def _drive(ws: ClientConnection, window: int, text: str, tally: Tally) -> None:
    """Keep ``window`` requests in flight on one socket until told to stop, then collect the stragglers."""
    clock = time.perf_counter
    encode, decode = msgspec.json.Encoder().encode, msgspec.json.Decoder().decode
    sent: dict[int, float] = {}
    next_id = 0

    async def send_one() -> None:
        nonlocal next_id
        sent[next_id] = clock()
        await ws.send(encode({"id": next_id, "op": "predict", "text": text}).decode())
        next_id += 1

    for _ in range(window):
        await send_one()
    while sent:
        reply = decode(await ws.recv())
        started = sent.pop(reply["id"])
        if reply.get("op") == "error":
            if tally.recording:
                code = reply["error"]["code"]
                tally.errors[code] = tally.errors.get(code, 0) + 1
        elif tally.recording and not tally.stopping:
            tally.latencies.append(clock() - started)
        if not tally.stopping:
            await send_one()


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(
    url: str, text: str, concurrency: int, connections: int, duration: float, warmup: float
) -> dict[str, object]:
    opened = [await connect(url, max_size=None, ping_interval=None) for _ in range(connections)]
    try:
        await opened[0].send(json.dumps({"id": "check", "op": "predict", "text": text}))
        first = json.loads(await opened[0].recv())
        if "sentiment" not in first and not url.endswith("/echo"):  # the echo route sends it back
            raise SystemExit(f"unexpected reply from {url}: {first!r}")
        tally = Tally()
        windows = [concurrency // connections + (i < concurrency % connections) for i in range(connections)]
        tasks = [
            asyncio.create_task(_drive(ws, window, text, tally))
            for ws, window in zip(opened, windows, strict=True)
            if window
        ]
        await asyncio.sleep(warmup)
        tally.recording = True
        cpu_start = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await asyncio.sleep(duration)
        tally.stopping = True
        elapsed = time.perf_counter() - started
        cpu_end = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    finally:
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    lat = sorted(tally.latencies)
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    return {
        "requests": len(lat),
        "duration_s": round(elapsed, 3),
        "req_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(_percentile(lat, 50) * 1000, 3),
        "p99_ms": round(_percentile(lat, 99) * 1000, 3),
        "mean_ms": round(sum(lat) / len(lat) * 1000, 3) if lat else float("nan"),
        "errors": tally.errors,
        "client_cpu": round(cpu / elapsed, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="ws://host:port/v1/ws")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--concurrency", type=int, default=32, help="predictions in flight in total")
    parser.add_argument("--connections", type=int, default=0, help="default: 1 at concurrency 1, else 4")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    connections = args.connections or (1 if args.concurrency == 1 else min(4, args.concurrency))
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(run(args.url, args.text, args.concurrency, connections, args.duration, args.warmup))
    result.update(concurrency=args.concurrency, connections=connections)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
