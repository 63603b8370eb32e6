"""Feast's own online read path on the same Redis, for the comparison in docs/benchmarks.md ("Online
features"): ``FeatureStore.get_online_features`` (what Feast's feature server calls) for 1 and 100
entities x 10 features, one caller in a closed loop, as ``bench/features.py`` measures modelwire.

Feast is not a modelwire dependency: run this with a venv of its own.

    python -m venv /tmp/feast-venv && /tmp/feast-venv/bin/pip install 'feast[redis]'
    /tmp/feast-venv/bin/python bench/feast_online.py --seconds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float32

FEATURES = [f"f{i}" for i in range(10)]


def timed(call, seconds: float) -> tuple[float, float, float, float]:  # type: ignore[no-untyped-def]
    for _ in range(50):
        call()
    latencies = []
    cpu = time.process_time()
    end = time.perf_counter() + seconds
    while (now := time.perf_counter()) < end:
        call()
        latencies.append(time.perf_counter() - now)
    cpu = time.process_time() - cpu
    latencies.sort()
    return (
        len(latencies) / seconds,
        statistics.median(latencies) * 1e6,
        latencies[int(len(latencies) * 0.99)] * 1e6,
        cpu / len(latencies) * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--entities", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder)
        (repo / "feature_store.yaml").write_text(
            textwrap.dedent(
                """\
                project: modelwire_bench
                registry: registry.db
                provider: local
                online_store:
                  type: redis
                  connection_string: "127.0.0.1:6379,db=0"
                entity_key_serialization_version: 3
                """
            )
        )
        now = datetime.now(UTC)
        frame = pd.DataFrame(
            {"user_id": [f"u{i}" for i in range(args.entities)], "event_timestamp": [now] * args.entities}
            | {f: [float(i) for i in range(args.entities)] for f in FEATURES}
        )
        frame.to_parquet(repo / "stats.parquet")
        user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
        view = FeatureView(
            name="stats",
            entities=[user],
            ttl=timedelta(days=1),
            schema=[Field(name=f, dtype=Float32) for f in FEATURES],
            source=FileSource(path=str(repo / "stats.parquet"), timestamp_field="event_timestamp"),
        )
        store = FeatureStore(repo_path=str(repo))
        store.apply([user, view])
        store.write_to_online_store("stats", frame)
        refs = [f"stats:{f}" for f in FEATURES]
        print(f"{'path':48} {'entities':>8} {'calls/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'CPU µs':>8}")
        for n in (1, 100):
            rows = [{"user_id": f"u{i}"} for i in range(n)]
            got = store.get_online_features(features=refs, entity_rows=rows).to_dict()
            assert got["f3"][n - 1] == float(n - 1), got
            rate, p50, p99, cpu = timed(
                lambda rows=rows: store.get_online_features(features=refs, entity_rows=rows).to_dict(),
                args.seconds,
            )
            name = "Feast get_online_features (Redis)"
            print(f"{name:48} {n:>8} {rate:>9.0f} {p50:>8.0f} {p99:>8.0f} {cpu:>8.0f}")
        store.teardown()


if __name__ == "__main__":
    main()
