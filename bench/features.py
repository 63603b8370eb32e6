"""``GetOnlineFeatures`` calls/s and p99 for 1 and 100 entities x 10 features, on each store, against a
plain redis-py ``HGETALL`` pipeline (the floor: the same Redis round trip with nothing around it).

A real server (services + gRPC listener on 127.0.0.1, auth off) with one view of 10 float features and
``--entities`` users written first; then one client calls in a closed loop for ``--seconds`` per case
(concurrency 1: latency, not throughput under load). Also the ``FeatureService`` called in-process (the
store path without gRPC), to show what the wire adds; predict with the feature join against the same model
given its features inline; and ingestion: ``--events`` events consumed from a backlog on each broker
(RabbitMQ, NATS JetStream, Redis Streams on their default ports) into SQLite. Redis on 127.0.0.1:6379.

    python bench/features.py --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from redis.asyncio import Redis

from modelwire.app.builder import build_services
from modelwire.app.lifecycle import start_services, stop_services
from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import features_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.server import start_grpc_server
from modelwire.settings import Settings

REDIS = "redis://127.0.0.1:6379/0"
FEATURES = [f"f{i}" for i in range(10)]


async def timed(call: Callable[[], Awaitable[Any]], seconds: float) -> tuple[float, float, float, float]:
    """(calls/s, p50 µs, p99 µs, CPU µs per call of this process: client and server) in a closed loop."""
    for _ in range(50):
        await call()
    latencies = []
    cpu = time.process_time()
    end = time.perf_counter() + seconds
    while (now := time.perf_counter()) < end:
        await call()
        latencies.append(time.perf_counter() - now)
    cpu = time.process_time() - cpu
    latencies.sort()
    return (
        len(latencies) / seconds,
        statistics.median(latencies) * 1e6,
        latencies[int(len(latencies) * 0.99)] * 1e6,
        cpu / len(latencies) * 1e6,
    )


async def bench_store(
    store: str, users: int, seconds: float
) -> list[tuple[str, int, tuple[float, float, float]]]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    url = f"{REDIS}?prefix={prefix}" if store == "redis" else "sqlite"
    view = {
        "name": "stats",
        "entities": ["user_id"],
        "ttl_s": 86400,
        "features": dict.fromkeys(FEATURES, "float"),
    }
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), feature_views=[view], features={"store": url})
        services = build_services(settings, models=[])
        await start_services(services)
        listener = await start_grpc_server(services, "127.0.0.1", 0)
        out = []
        try:
            rows = [{"user_id": f"u{i}", **{f: float(i) for f in FEATURES}} for i in range(users)]
            await services.features.push("stats", rows)
            refs = [f"stats:{f}" for f in FEATURES]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
                stub = pb_grpc.FeaturesStub(channel)
                for n in (1, 100):
                    ids = [f"u{i}" for i in range(n)]
                    request = pb.GetOnlineFeaturesRequest(
                        features=refs,
                        entities=[
                            pb.EntityColumn(
                                name="user_id", values=[pb.FeatureValue(string_value=u) for u in ids]
                            )
                        ],
                    )
                    out.append(
                        (
                            f"{store} gRPC GetOnlineFeatures",
                            n,
                            await timed(lambda r=request: stub.GetOnlineFeatures(r), seconds),
                        )
                    )
                    entities = {"user_id": ids}
                    out.append(
                        (
                            f"{store} FeatureService.get_online (no wire)",
                            n,
                            await timed(lambda e=entities: services.features.get_online(refs, e), seconds),
                        )
                    )
                    if store == "redis":
                        client = Redis.from_url(REDIS)
                        keys = [f'{prefix}features:stats:["{u}"]' for u in ids]

                        async def floor(keys: list[str] = keys, client: Redis = client) -> Any:
                            async with client.pipeline(transaction=False) as pipe:
                                for key in keys:
                                    pipe.hgetall(key)
                                return await pipe.execute()

                        out.append(("redis-py HGETALL pipeline (floor)", n, await timed(floor, seconds)))
                        await client.aclose()
        finally:
            await listener.stop(0)
            await stop_services(services)
            if store == "redis":
                client = Redis.from_url(REDIS)
                keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
                if keys:
                    await client.delete(*keys)
                await client.aclose()
        return out


async def bench_join(seconds: float) -> list[tuple[str, int, tuple[float, ...]]]:
    """The example churn model through the DataPlane with the join (features read from SQLite, one store
    read per batch) against the same model given the same features inline (no store)."""
    import sys

    from modelwire.core.dataplane import CallContext

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "examples"))
    from churn_model import ChurnModel  # type: ignore[import-not-found]

    class Inline(ChurnModel):  # type: ignore[misc]
        features = ()

    view = {"name": "user_stats", "entities": ["user_id"], "ttl_s": 86400}
    view["features"] = {"avg_rating": "float", "n_reviews": "int"}
    out = []
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), feature_views=[view], batching={"enabled": False})
        services = build_services(settings, models=[ChurnModel("joined"), Inline("inline")])
        await start_services(services)
        try:
            await services.features.push(
                "user_stats", [{"user_id": f"u{i}", "avg_rating": 3.0, "n_reviews": i} for i in range(100)]
            )
            ctx = CallContext("bench")
            for n in (1, 32):
                joined = [{"entity": {"user_id": f"u{i}"}} for i in range(n)]
                inline = [
                    {"features": {"user_stats:avg_rating": 3.0, "user_stats:n_reviews": i}} for i in range(n)
                ]
                calls = (("joined", joined), ("inline", inline))
                for name, instances in calls:
                    label = f"predict, {'join (SQLite)' if name == 'joined' else 'features inline'}"

                    async def call(name: str = name, instances: list[Any] = instances) -> Any:
                        return await services.dataplane.infer(name, instances, ctx=ctx)

                    out.append((label, n, await timed(call, seconds)))
        finally:
            await stop_services(services)
    return out


async def bench_ingest(kind: str, events: int) -> tuple[float, float]:
    """(events/s, CPU µs per event) consuming a backlog of ``events`` from ``kind`` into SQLite: the
    destination is declared by a first start, filled while nothing consumes, then consumed by a second."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.features.brokers import publish, source
    from tests.protocols.queues.conftest import open_broker

    from modelwire.app.components import FeatureIngestion
    from modelwire.app.lifecycle import Server

    view = {"name": "stats", "entities": ["user_id"], "ttl_s": 86400, "features": {"n": "int"}}
    async with open_broker(kind) as under:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(
                data_dir=Path(data_dir), feature_views=[{**view, "source": source(under, prefetch=256)}]
            )

            async def run() -> tuple[Server, FeatureIngestion]:
                ingestion = FeatureIngestion(settings)
                server = Server(
                    settings,
                    services=build_services(settings, models=[]),
                    rest=False,
                    grpc=False,
                    components=[ingestion],
                )
                await server.start()
                return server, ingestion

            server, _ = await run()
            await server.stop()
            bodies = [
                f'{{"user_id": "u{i % 1000}", "n": {i}, "event_timestamp": {i}}}'.encode()
                for i in range(events)
            ]
            await publish(under, bodies)
            cpu = time.process_time()
            started = time.perf_counter()
            server, ingestion = await run()
            counts = ingestion.ingestors[0].counts
            while counts["written"] < events:
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            await server.stop()
    return events / elapsed, cpu / events * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--entities", type=int, default=1000, help="users written before reading")
    parser.add_argument("--events", type=int, default=20_000, help="events per broker for ingestion")
    args = parser.parse_args()
    print(f"{'path':48} {'entities':>8} {'calls/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'CPU µs':>8}")
    for store in ("sqlite", "redis"):
        for name, n, (rate, p50, p99, cpu) in await bench_store(store, args.entities, args.seconds):
            print(f"{name:48} {n:>8} {rate:>9.0f} {p50:>8.0f} {p99:>8.0f} {cpu:>8.0f}")
    for name, n, (rate, p50, p99, cpu) in await bench_join(args.seconds):
        print(f"{name:48} {n:>8} {rate:>9.0f} {p50:>8.0f} {p99:>8.0f} {cpu:>8.0f}")
    print(f"\n{'ingestion into SQLite (prefetch 256)':48} {'events':>8} {'events/s':>9} {'CPU µs/event':>13}")
    for kind in ("rabbitmq", "nats-jetstream", "redis"):
        rate, cpu = await bench_ingest(kind, args.events)
        print(f"{kind:48} {args.events:>8} {rate:>9.0f} {cpu:>13.0f}")


if __name__ == "__main__":
    asyncio.run(main())
