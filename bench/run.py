"""Run the whole benchmark in one go: every server up at once, every driver against it, medians to a report.

``scripts/bench`` prepares the peers' virtualenvs and calls this. All servers start together on 127.0.0.1
(pinned to CPU 0 when the machine has two or more; the load drivers get CPU 1), then each repeat walks every
(protocol, server, concurrency) cell in the same order, so slow drift of a noisy machine falls on every server
alike. Servers are stopped by PID in a ``finally`` that SIGTERM/SIGHUP/Ctrl-C also reach.

    .venv/bin/python bench/run.py --duration 10 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import drivers
import environment
import fanout
import jobs
import profiling
import report
import servers
from servers import BENCH, PEERS, ROOT, Server


@dataclass(frozen=True)
class Cell:
    """One row of the report: a protocol driven against one server."""

    protocol: str
    server: str
    drive: Callable[[drivers.Load, Server], dict[str, object]]


def _bodies(run_dir: Path) -> tuple[Path, Path]:
    predict, v2 = run_dir / "predict.json", run_dir / "v2.json"
    predict.write_text(servers.PREDICT_BODY)
    v2.write_text(servers.V2_BODY)
    return predict, v2


def plan(run_dir: Path, include_mlserver: bool) -> list[Cell]:
    predict, v2 = _bodies(run_dir)
    infer = "/v2/models/sentiment/infer"

    def h1(path: str, body: Path) -> Callable[[drivers.Load, Server], dict[str, object]]:
        return lambda load, s: drivers.wrk(load, s.base_url + path, body)

    def h2(load: drivers.Load, s: Server) -> dict[str, object]:
        return drivers.h2load(load, s.base_url + "/predict", predict)

    def grpc(kind: str) -> Callable[[drivers.Load, Server], dict[str, object]]:
        return lambda load, s: drivers.grpc(load, f"127.0.0.1:{s.grpc_port}", kind)

    def ws(load: drivers.Load, s: Server) -> dict[str, object]:
        return drivers.ws(load, s.base_url.replace("http://", "ws://") + "/v1/ws")

    modelwires = ("modelwire", "modelwire-nobatch", "modelwire-sklearn", "modelwire-sklearn-nobatch")
    cells = [
        *(Cell("rest-h1", key, h1("/predict", predict)) for key in (*modelwires, "fastapi")),
        *(Cell("rest-h2", key, h2) for key in ("modelwire", "modelwire-nobatch")),
        *(Cell("grpc", key, grpc("predictor")) for key in modelwires),
        *(Cell("ws", key, ws) for key in ("modelwire", "modelwire-nobatch")),
        Cell("v2-rest-h1", "modelwire", h1(infer, v2)),
        Cell("v2-grpc", "modelwire", grpc("v2")),
    ]
    if include_mlserver:
        for key in ("mlserver", "mlserver-batch"):
            cells += [Cell("v2-rest-h1", key, h1(infer, v2)), Cell("v2-grpc", key, grpc("v2"))]
    return cells


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def ensure_model(data_dir: Path) -> Path:
    models = data_dir / "models"
    try:
        return environment.latest_version(models)
    except FileNotFoundError:
        print(f"==> training the default model into {models}", flush=True)
        # scikit-learn's pipeline: the peers load the same skops artifact (the sklearn extra, scripts/bench)
        cmd = [
            str(ROOT / ".venv/bin/modelwire"),
            "train",
            "--trainer",
            "sklearn",
            "--data-dir",
            str(data_dir),
        ]
        subprocess.run(cmd, check=True, timeout=600)
        return environment.latest_version(models)


def measure(
    cells: list[Cell], up: dict[str, Server], args: argparse.Namespace, run_dir: Path
) -> list[dict[str, object]]:
    _, driver_cpus = environment.cpu_split(args.pin)
    runs: list[dict[str, object]] = []
    total = len(cells) * len(args.concurrency) * args.repeats
    print(f"==> warming up {len(cells)} server/protocol pairs", flush=True)
    for cell in cells:
        load = drivers.Load(
            args.warmup, 32, driver_cpus, run_dir / "raw" / f"warmup-{cell.protocol}-{cell.server}.txt"
        )
        cell.drive(load, up[cell.server])
    with (run_dir / "runs.jsonl").open("w") as sink:
        for repeat in range(args.repeats):
            for cell in cells:
                for concurrency in args.concurrency:
                    name = f"{cell.protocol}-{cell.server}-c{concurrency}-r{repeat}"
                    load = drivers.Load(
                        args.duration, concurrency, driver_cpus, run_dir / "raw" / f"{name}.txt"
                    )
                    server = up[cell.server]
                    before, cpu, wall = server.batch_totals(), server.cpu_seconds(), time.monotonic()
                    result = cell.drive(load, server)
                    result["server_cpu"] = round((server.cpu_seconds() - cpu) / (time.monotonic() - wall), 2)
                    after = server.batch_totals()
                    if before and after and after[0] > before[0]:
                        result["mean_batch"] = round((after[1] - before[1]) / (after[0] - before[0]), 1)
                    row = {"protocol": cell.protocol, "server": cell.server, "concurrency": concurrency}
                    row |= {"repeat": repeat, **result}
                    runs.append(row)
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    print(
                        f"[{len(runs):3d}/{total}] {name:34s} {result['req_per_s']:9.1f} req/s  "
                        f"p50 {result['p50_ms']:8.2f} ms  p99 {result['p99_ms']:8.2f} ms  "
                        f"cpu {result['server_cpu']:.2f}  errors {result['errors']}",
                        flush=True,
                    )
    return runs


def _batches(group: list[dict[str, object]]) -> list[float]:
    return [float(str(r["mean_batch"])) for r in group if r.get("mean_batch") is not None]


def summarize(runs: list[dict[str, object]]) -> list[dict[str, object]]:
    groups: dict[tuple[str, str, int], list[dict[str, object]]] = {}
    for run in runs:
        key = (str(run["protocol"]), str(run["server"]), int(str(run["concurrency"])))
        groups.setdefault(key, []).append(run)
    rows = []
    for (protocol, server, concurrency), group in groups.items():
        rates = [float(str(r["req_per_s"])) for r in group]
        rows.append(
            {
                "protocol": protocol,
                "server": server,
                "concurrency": concurrency,
                "req_per_s": statistics.median(rates),
                "p50_ms": statistics.median(float(str(r["p50_ms"])) for r in group),
                "p99_ms": statistics.median(float(str(r["p99_ms"])) for r in group),
                "errors": sum(int(str(r["errors"])) for r in group),
                "server_cpu": statistics.median(float(str(r["server_cpu"])) for r in group),
                "mean_batch": statistics.median(batches) if (batches := _batches(group)) else None,
                "spread": (max(rates) - min(rates)) / statistics.median(rates)
                if statistics.median(rates)
                else 0,
                "repeats": len(group),
            }
        )
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s, 1 repeat, no docs written")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per cell; the report shows medians")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per cell, discarded")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin servers and drivers")
    parser.add_argument("--no-mlserver", dest="mlserver", action="store_false", help="skip the MLServer peer")
    parser.add_argument(
        "--profile", type=float, default=8.0, metavar="SECONDS", help="py-spy seconds; 0: none"
    )
    parser.add_argument(
        "--no-docs", dest="docs", action="store_false", help="do not rewrite docs/benchmarks.md"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for the 1-minute load average to fall below 1 (a shared machine)",
    )
    parser.add_argument(
        "--fanout-subscribers", type=int, default=1000, help="event fan-out subscribers (0: skip fan-out)"
    )
    parser.add_argument("--fanout-rates", type=float, nargs="+", default=[10.0, 100.0], help="events/s")
    parser.add_argument("--jobs-rows", type=int, default=100_000, help="batch-job rows (0: skip jobs)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for the jobs section")
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeats, args.warmup, args.docs, args.profile = 2.0, 1, 1.0, False, 0.0
        args.fanout_subscribers, args.fanout_rates = min(args.fanout_subscribers, 100), args.fanout_rates[:1]
        args.jobs_rows = min(args.jobs_rows, 5000)
    args.command = args.command or "bench/run.py " + shlex.join(argv or sys.argv[1:])
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    fanout.raise_fd_limit()  # before any server starts: they inherit it
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_exit)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = BENCH / "results" / stamp
    run_dir.mkdir(parents=True)
    data_dir = PEERS / "data"
    version_dir = ensure_model(data_dir)
    mlserver_missing = environment.mlserver_missing() if args.mlserver else "skipped with --no-mlserver"
    cells = plan(run_dir, include_mlserver=mlserver_missing is None)
    fleet = [
        servers.modelwire(run_dir, data_dir, batching=True),
        servers.modelwire(run_dir, data_dir, batching=False),
        servers.modelwire(run_dir, data_dir, batching=True, runtime="sklearn"),
        servers.modelwire(run_dir, data_dir, batching=False, runtime="sklearn"),
        servers.fastapi(run_dir, data_dir / "models"),
    ]
    if mlserver_missing is None:
        for batching in (False, True):
            size, delay = environment.MLSERVER_BATCH
            fleet.append(
                servers.mlserver(run_dir, version_dir, batching=batching, batch_size=size, delay_ms=delay)
            )
    up = {s.key: s for s in fleet}
    environment.wait_quiet(args.wait_quiet)
    server_cpus, _ = environment.cpu_split(args.pin)
    meta = environment.describe(args, stamp, version_dir, mlserver_missing)
    started = time.monotonic()
    profiles: dict[str, object] = {}
    try:
        print(
            f"==> starting {len(fleet)} servers (CPU {server_cpus or 'any'}); results in {run_dir}",
            flush=True,
        )
        for server in fleet:
            server.start(server_cpus)
        for server in fleet:
            server.wait_ready(timeout=180)
            print(f"    {server.label}: {server.base_url}, gRPC {server.grpc_port}", flush=True)
        runs = measure(cells, up, args, run_dir)
        if args.profile:
            profiles = profiling.profile_all(cells, up, args, run_dir)
    finally:
        for server in fleet:
            server.stop()
    fanout_rows: list[dict[str, object]] = []
    if args.fanout_subscribers:
        print(f"==> event fan-out: {args.fanout_subscribers} subscribers, SSE and WebSocket", flush=True)
        fanout_rows = fanout.measure(
            run_dir,
            data_dir,
            subscribers=args.fanout_subscribers,
            rates=args.fanout_rates,
            transports=["sse", "ws"],
            duration=args.duration,
            pin=args.pin,
        )
    jobs_rows: list[dict[str, object]] = []
    if args.jobs_rows:
        print(f"==> batch jobs: {args.jobs_rows} rows, embedded and Redis vs sync REST", flush=True)
        jobs_rows = jobs.measure(
            run_dir, data_dir, rows=args.jobs_rows, scenarios=list(jobs.SCENARIOS), redis_url=args.redis
        )
    meta["wall_seconds"] = round(time.monotonic() - started)
    meta["machine"]["loadavg_end"] = environment.loadavg()
    results = {
        "meta": meta,
        "summary": summarize(runs),
        "profiles": profiles,
        "fanout": fanout_rows,
        "jobs": jobs_rows,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = report.render(results) + ("\n" + fanout.render(fanout_rows) if fanout_rows else "")
    markdown += "\n" + jobs.render(jobs_rows) if jobs_rows else ""
    (run_dir / "report.md").write_text(markdown)
    print(markdown)
    if args.docs:
        report.write_docs(markdown, ROOT / "docs" / "benchmarks.md")
        print("==> docs/benchmarks.md updated", flush=True)
    print(f"==> raw results: {run_dir.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
