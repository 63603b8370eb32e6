"""Inference over brokers against REST and against each broker's floor (issue 14 §5).

Targets, each its own process, all started once and measured in turn (idle ones cost next to nothing):

- ``rest``: ``modelwire serve`` (the default sentiment model, batching on), ``POST /predict`` over HTTP/1.1
  (aiohttp, keep-alive, one connection per request in flight);
- ``<broker>``: ``modelwire serve`` with a ``[[queues]]`` entry (the consumer ``consume`` runs, plus
  ``/metrics`` for batch formation; its REST face idles) on the same model and data dir, for RabbitMQ
  (a quorum queue, as modelwire declares it), NATS core request-reply, NATS JetStream and Redis Streams;
- ``<broker>-floor``: this file's ``floor`` command, the same broker's own client answering each request
  without a model (``{"ok": true}``) with the same delivery work modelwire does: RabbitMQ reply published
  with a publisher confirm, then ack, on a quorum queue with prefetch 64; NATS ``msg.respond`` /
  JetStream publish to ``Reply-To`` then ack; Redis ``XADD`` to ``reply_to`` then ``XACK`` + ``XDEL``.

The producer (this process) keeps 1, 32 or 128 requests in flight for ``--duration`` seconds (closed
loop) with ``modelwire.client.queues.QueueSender``, the same code for modelwire and for the floors, and
records each request→reply latency. Per cell: messages/s, p50/p99 latency, and the target process's CPU
time (``/proc/<pid>/stat`` utime + stime, the whole process group) per message, and items per model
batch (``modelwire_batch_size`` from ``/metrics``, before and after). Medians of ``--runs``
runs; the targets alternate inside each run.

    scripts/bench queues                       3 runs x 4 s per cell (~10 min)
    scripts/bench queues --quick               1 run x 1 s: a smoke run
    .venv/bin/python bench/queues.py --brokers rabbitmq redis --concurrency 1 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from modelwire.client.queues import QueueSender  # noqa: E402
from modelwire.settings import QueueSettings  # noqa: E402
from servers import free_port  # noqa: E402

URLS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
    "nats": "nats://127.0.0.1:4222",
    "nats-jetstream": "nats://127.0.0.1:4222",
    "redis": "redis://127.0.0.1:6379/0",
}
TEXT = "I love this product, it works great and I would buy it again"
PREFETCH = 64


# -- the floor: each broker's own client, no model ------------------------------------------------------


async def floor(kind: str, queue: dict[str, Any]) -> None:
    """Answer every request with ``{"ok": true}`` until SIGTERM; print ``ready`` once consuming."""
    settings = QueueSettings(**queue)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    answer = b'{"ok": true}'
    if kind == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect_robust(URLS["rabbitmq"])
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        requests = await channel.declare_queue(
            settings.queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            reply = aio_pika.Message(
                answer, content_type="application/json", correlation_id=message.correlation_id
            )
            await channel.default_exchange.publish(reply, message.reply_to or "")
            await message.ack()

        await requests.consume(on_message)
        print("ready", flush=True)
        await stop.wait()
        await connection.close()
    elif kind.startswith("nats"):
        import nats

        nc = await nats.connect(URLS["nats"])
        if kind == "nats":

            async def on_core(msg: Any) -> None:
                await msg.respond(answer)

            await nc.subscribe(settings.queue_name, queue="floor", cb=on_core)
        else:
            from nats.js import api

            js = nc.jetstream()
            await js.add_stream(name=settings.jetstream or "", subjects=[settings.jetstream_subjects])
            config = api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=PREFETCH)
            pull = await js.pull_subscribe(
                settings.jetstream_subjects, durable="floor", stream=settings.jetstream, config=config
            )

            async def one(msg: Any) -> None:
                headers = {"Content-Type": "application/json"}
                if cid := (msg.headers or {}).get("Correlation-Id"):
                    headers["Correlation-Id"] = cid
                await nc.publish(msg.headers["Reply-To"], answer, headers=headers)
                await msg.ack()

            async def fetch() -> None:
                while not stop.is_set():
                    try:
                        batch = await pull.fetch(PREFETCH, timeout=1.0)
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue
                    await asyncio.gather(*(one(msg) for msg in batch))

            asyncio.get_running_loop().create_task(fetch())
        await nc.flush()
        print("ready", flush=True)
        await stop.wait()
        await nc.close()
    else:
        from redis.asyncio import Redis

        redis = Redis.from_url(URLS["redis"])
        stream, group = settings.queue_name, "floor"
        with contextlib.suppress(Exception):
            await redis.xgroup_create(stream, group, id="0", mkstream=True)

        async def reply(entry_id: bytes, fields: dict[bytes, bytes]) -> None:
            await redis.xadd(
                fields[b"reply_to"],
                {
                    "body": answer,
                    "correlation_id": fields.get(b"correlation_id", b""),
                    "content_type": "application/json",
                },
            )
            async with redis.pipeline(transaction=True) as pipe:
                pipe.xack(stream, group, entry_id)
                pipe.xdel(stream, entry_id)
                await pipe.execute()

        print("ready", flush=True)
        while not stop.is_set():
            batches: Any = await redis.xreadgroup(group, "floor-1", {stream: ">"}, count=PREFETCH, block=500)
            for _stream, entries in batches or ():
                await asyncio.gather(*(reply(entry_id, fields) for entry_id, fields in entries))
        await redis.aclose()


# -- targets --------------------------------------------------------------------------------------------


@dataclass
class Target:
    key: str
    kind: str  # rest, or a broker kind
    argv: list[str]
    log: Path
    queue: dict[str, Any] = field(default_factory=dict)
    http_port: int | None = None
    ready: str = ""
    metrics_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def durable(self) -> bool:
        return self.kind == "nats-jetstream"

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.key} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            if self.http_port is not None:
                with contextlib.suppress(httpx.HTTPError):
                    response = httpx.post(
                        f"http://127.0.0.1:{self.http_port}/predict", json={"text": TEXT}, timeout=2
                    )
                    if response.status_code == 200:
                        return
            elif self.ready in self.log.read_text(errors="replace") and self.batches() is not None:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.key} not ready after {timeout:g} s:\n{self.log.read_text()[-3000:]}")

    def batches(self) -> tuple[float, float] | None:
        """(batches, items) so far from ``modelwire_batch_size`` in ``/metrics``; (0, 0) for a floor."""
        if self.metrics_port is None:
            return (0.0, 0.0)
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        totals = {"count": 0.0, "sum": 0.0}
        for line in text.splitlines():
            for kind in totals:
                if line.startswith(f"modelwire_batch_size_{kind}{{"):
                    totals[kind] += float(line.rsplit(" ", 1)[1])
        return totals["count"], totals["sum"]

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def names(kind: str, tag: str) -> dict[str, Any]:
    if kind == "redis":
        return {"name": f"bench-{tag}:requests", "dead_letter": f"bench-{tag}:dlq"}
    base = {"name": f"bench.{tag}.requests", "dead_letter": f"bench.{tag}.dlq"}
    if kind.startswith("nats"):
        base |= {
            "group": f"g{tag}",
            "jetstream": f"BENCH_{tag.upper()}",
            "jetstream_subjects": f"bench.{tag}.durable.>",
        }
        if kind == "nats":
            base["jetstream"] = ""  # core request-reply only
    return base


def targets(run_dir: Path, data_dir: Path, brokers: list[str]) -> list[Target]:
    modelwire = str(ROOT / ".venv/bin/modelwire")
    http_port = free_port()
    rest = Target(
        "rest",
        "rest",
        [
            modelwire,
            "serve",
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(free_port()),
            "--data-dir",
            str(data_dir),
        ],
        run_dir / "rest.log",
        http_port=http_port,
        metrics_port=http_port,
    )
    found = [rest]
    for kind in brokers:
        tag = uuid.uuid4().hex[:8]
        queue = {"url": URLS[kind], **names(kind, tag), "prefetch": PREFETCH}
        # serve, not consume: the same consumer, and /metrics to read batch formation from
        port = free_port()
        argv = [modelwire, "serve", "--http-port", str(port), "--grpc-port", str(free_port())]
        argv += ["--data-dir", str(data_dir), "--config", str(run_dir / f"{kind}.toml")]
        (run_dir / f"{kind}.toml").write_text(_toml(queue))
        found.append(
            Target(kind, kind, argv, run_dir / f"{kind}.log", queue, ready="consuming", metrics_port=port)
        )
        floor_queue = {"url": URLS[kind], **names(kind, tag + "f")}
        argv = [sys.executable, str(ROOT / "bench/queues.py"), "floor", kind, json.dumps(floor_queue)]
        found.append(
            Target(f"{kind}-floor", kind, argv, run_dir / f"{kind}-floor.log", floor_queue, ready="ready")
        )
    return found


def _toml(queue: dict[str, Any]) -> str:
    lines = ["[[queues]]"]
    for key, value in queue.items():
        if value is not None:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


# -- load -----------------------------------------------------------------------------------------------


async def cell(target: Target, concurrency: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    body = json.dumps({"text": TEXT}).encode()
    stop_at = 0.0

    async def loop(call: Any) -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    if target.kind == "rest":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        url = f"http://127.0.0.1:{target.http_port}/predict"
        async with aiohttp.ClientSession(connector=connector) as client:

            async def post() -> None:
                headers = {"content-type": "application/json"}
                async with client.post(url, data=body, headers=headers) as response:
                    await response.read()
                    response.raise_for_status()

            batches0 = target.batches() or (0.0, 0.0)
            cpu0, t0 = target.cpu_seconds(), time.perf_counter()
            stop_at = t0 + duration
            await asyncio.gather(*(loop(post) for _ in range(concurrency)))
            wall, cpu = time.perf_counter() - t0, target.cpu_seconds() - cpu0
    else:
        settings = QueueSettings(**target.queue)
        async with QueueSender(
            # core NATS: a request is one call, so publishing bounds what is in flight; elsewhere it
            # bounds the publishes only (and Redis's connection pool holds 100)
            settings,
            durable=target.durable,
            timeout=60,
            publishing=concurrency if target.kind == "nats" else 64,
        ) as sender:

            async def ask() -> None:
                await sender.request(body)

            batches0 = target.batches() or (0.0, 0.0)
            cpu0, t0 = target.cpu_seconds(), time.perf_counter()
            stop_at = t0 + duration
            await asyncio.gather(*(loop(ask) for _ in range(concurrency)))
            wall, cpu = time.perf_counter() - t0, target.cpu_seconds() - cpu0
            if sender.duplicates:
                print(f"  {target.key}: {sender.duplicates} duplicate answers", flush=True)
    batches1 = target.batches() or (0.0, 0.0)
    formed, items = batches1[0] - batches0[0], batches1[1] - batches0[1]
    n = len(latencies)
    latencies.sort()
    return {
        "items_per_batch": items / formed if formed else 0.0,
        "msgs_per_s": n / wall,
        "p50_ms": latencies[n // 2] * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "cpu_us_per_msg": cpu / n * 1e6,
        "n": n,
    }


async def cleanup(found: list[Target]) -> None:
    import aio_pika
    import nats
    from redis.asyncio import Redis

    for target in found:
        q = target.queue
        if target.kind == "rabbitmq":
            async with await aio_pika.connect(URLS["rabbitmq"]) as connection:
                channel = await connection.channel()
                for name in (q["name"], q["dead_letter"]):
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(name)
        elif target.kind.startswith("nats") and q.get("jetstream"):
            nc = await nats.connect(URLS["nats"])
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(q["jetstream"])
            await nc.close()
        elif target.kind == "redis":
            redis = Redis.from_url(URLS["redis"])
            prefix = q["name"].split(":")[0]
            keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()


def render(results: dict[str, Any]) -> str:
    rows = results["cells"]
    lines = [
        f"Run {results['stamp']} at commit `{results['commit']}`: `{results['command']}`. "
        f"{results['runs']} runs x {results['duration']:g} s per cell, medians; 2 cores shared with other "
        "work (a noisy machine: compare the ratios inside one run, not the absolute numbers).",
        "",
        "| target | in flight | messages/s | p50 ms | p99 ms | CPU us/msg | items/batch | vs REST msg/s "
        "| CPU vs floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for concurrency in results["concurrency"]:
        rest = rows.get(f"rest@{concurrency}")
        for key in results["targets"]:
            row = rows.get(f"{key}@{concurrency}")
            if row is None:
                continue
            vs_rest = f"{row['msgs_per_s'] / rest['msgs_per_s']:.2f}x" if rest else ""
            floor_row = rows.get(f"{key}-floor@{concurrency}")
            vs_floor = f"{row['cpu_us_per_msg'] / floor_row['cpu_us_per_msg']:.2f}x" if floor_row else ""
            if key == "rest":
                vs_rest = "1.00x"
            batch = f"{row['items_per_batch']:.1f}" if row.get("items_per_batch") else ""
            lines.append(
                f"| {key} | {concurrency} | {row['msgs_per_s']:.0f} | {row['p50_ms']:.2f} "
                f"| {row['p99_ms']:.2f} | {row['cpu_us_per_msg']:.0f} | {batch} | {vs_rest} | {vs_floor} |"
            )
    return "\n".join(lines) + "\n"


async def measure(args: argparse.Namespace, found: list[Target]) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {}
    for target in found:  # warm-up: connections, the model's first calls
        await cell(target, 8, 0.5)
    for run in range(args.runs):
        for concurrency in args.concurrency:
            for target in found:
                row = await cell(target, concurrency, args.duration)
                samples.setdefault(f"{target.key}@{concurrency}", []).append(row)
                print(
                    f"run {run + 1} c={concurrency:>3} {target.key:<22} {row['msgs_per_s']:>7.0f}/s "
                    f"p50 {row['p50_ms']:6.2f} p99 {row['p99_ms']:7.2f} ms  "
                    f"{row['cpu_us_per_msg']:6.0f} us CPU/msg",
                    flush=True,
                )
    return {
        key: {name: statistics.median(r[name] for r in rows) for name in rows[0]}
        for key, rows in samples.items()
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "floor":
        asyncio.run(floor(sys.argv[2], json.loads(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--brokers", nargs="+", default=list(URLS), choices=list(URLS))
    parser.add_argument("--quick", action="store_true", help="1 run x 1 s per cell")
    parser.add_argument("--command", default="bench/queues.py")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration = 1, 1.0
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = ROOT / "bench/results" / f"queues-{stamp}"
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True)
    found = targets(run_dir, data_dir, args.brokers)
    try:
        found[0].start()
        found[0].wait_ready()  # trains the default model on first start; the consumers then load it
        for target in found[1:]:
            target.start()
        for target in found[1:]:
            target.wait_ready()
        cells = asyncio.run(measure(args, found))
    finally:
        for target in found:
            target.stop()
        asyncio.run(cleanup(found))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    results = {
        "stamp": stamp,
        "commit": commit.strip(),
        "command": args.command,
        "runs": args.runs,
        "duration": args.duration,
        "concurrency": args.concurrency,
        "targets": [t.key for t in found if not t.key.endswith("-floor")]
        + [t.key for t in found if t.key.endswith("-floor")],
        "cells": cells,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    markdown = render(results)
    (run_dir / "queues.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
