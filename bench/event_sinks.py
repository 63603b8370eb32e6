"""Events out (``[[event_sinks]]``): what a sink adds to ``EventBus.publish``, what sending costs per broker.

For each broker (RabbitMQ, NATS, Redis on 127.0.0.1, default ports) and once with no sink: publish
``--events`` job events on an in-process bus with one sink attached, then wait until the sink has sent them
all. Reported: CPU µs per ``publish`` call (the server's cost, ``time.process_time`` around the publish
loop), and CPU µs per event for the whole run (publish + the sink's sending), events/s sent. Medians of
``--runs`` runs.

    python bench/event_sinks.py --events 5000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from modelwire.backends.resolve import open_event_transport
from modelwire.events.bus import LocalEventBus
from modelwire.observability.metrics import Metrics
from modelwire.outbound.events import EventSink
from modelwire.settings import EventSinkSettings

URLS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
    "nats": "nats://127.0.0.1:4222",
    "redis": "redis://127.0.0.1:6379/0",
}


async def run_once(kind: str | None, events: int) -> tuple[float, float, float]:
    bus = LocalEventBus(replay_size=0)
    sink = None
    if kind is not None:
        settings = EventSinkSettings(url=URLS[kind], destination=f"bench.events.{kind}", buffer=events)
        if kind == "redis":
            settings = settings.model_copy(update={"destination": "bench:events", "max_len": 1000})
        sink = EventSink(open_event_transport(settings), ["jobs/*"], buffer=events, metrics=Metrics())
        sink.attach(bus)
        sink.start()
        async with asyncio.timeout(10):
            while not sink.connected:
                await asyncio.sleep(0.01)
    job = "3f6c0d9a52e84b7c9e1d0a6b2c4f8e17"
    data = {"id": job, "status": "running", "progress": {"done": 1, "total": 2}}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(events):
        await bus.publish("jobs/3f6c0d9a52e84b7c9e1d0a6b2c4f8e17", "job.progress", data)
    publish_cpu = time.process_time() - cpu0
    if sink is not None:
        async with asyncio.timeout(120):
            while sink.sent < events:
                await asyncio.sleep(0.005)
    total_cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if sink is not None:
        await sink.stop()
    return publish_cpu / events * 1e6, total_cpu / events * 1e6, events / wall


async def cleanup() -> None:
    """Remove what the runs declared: the exchange and the stream."""
    import aio_pika
    from redis.asyncio import Redis

    async with await aio_pika.connect(URLS["rabbitmq"]) as connection:
        channel = await connection.channel()
        await channel.exchange_delete("bench.events.rabbitmq")
    redis = Redis.from_url(URLS["redis"])
    await redis.delete("bench:events")
    await redis.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("| sink | publish CPU µs/event | total CPU µs/event | events/s sent |")
    print("| --- | --- | --- | --- |")
    for kind in (None, "rabbitmq", "nats", "redis"):
        results = [await run_once(kind, args.events) for _ in range(args.runs)]
        medians = [statistics.median(r[i] for r in results) for i in range(3)]
        print(f"| {kind or 'none'} | {medians[0]:.1f} | {medians[1]:.1f} | {medians[2]:.0f} |")
    await cleanup()


if __name__ == "__main__":
    asyncio.run(main())
