"""Event fan-out: 1 publisher, N subscribers (1,000 by default) over SSE and WebSocket, from another process.

The publisher is the server's own: the per-second ``metrics`` snapshot, run at ``rate`` snapshots a second
(``MODELWIRE_EVENTS__METRICS_INTERVAL_S=1/rate``), so what is measured is ``modelwire serve`` unmodified.
For each rate a fresh server starts (pinned like the main run), then for each transport ``fanout_load.py``
connects every subscriber, warms up, and counts deliveries and their latency from the event's ``time``.
The server's peak RSS with all subscribers connected and its CPU are recorded alongside.

    scripts/bench fanout                 1,000 subscribers, 10 and 100 events/s, SSE and WebSocket, 10 s each
    scripts/bench fanout --quick         100 subscribers, 10 events/s, 2 s: a smoke run
    .venv/bin/python bench/fanout.py --subscribers 1000 --rates 10 100 --transports sse ws

``run.py`` calls ``measure()`` after the request/response cells, and appends ``render()`` to its report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import threading
import time
from pathlib import Path

import drivers
import environment
import servers
from servers import BENCH, PEERS, ROOT

__all__ = ["measure", "raise_fd_limit", "render"]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _PeakRss:
    """Samples a process's RSS every 0.2 s in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _rss_mb(self.pid))

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _drive(
    load: drivers.Load, url: str, transport: str, subscribers: int, warmup: float
) -> dict[str, object]:
    argv = load.argv(str(ROOT / ".venv/bin/python"), str(BENCH / "fanout_load.py"), "--url", url)
    argv += ["--transport", transport, "--subscribers", str(subscribers)]
    argv += ["--duration", f"{load.duration:g}", "--warmup", f"{warmup:g}"]
    result: dict[str, object] = json.loads(drivers._run(load, argv).strip().splitlines()[-1])
    return result


def measure(
    run_dir: Path,
    data_dir: Path,
    *,
    subscribers: int,
    rates: list[float],
    transports: list[str],
    duration: float,
    pin: bool,
) -> list[dict[str, object]]:
    """One row per (rate, transport); each rate on a fresh server."""
    server_cpus, driver_cpus = environment.cpu_split(pin)
    rows: list[dict[str, object]] = []
    for rate in rates:
        server = servers.modelwire(run_dir, data_dir, batching=True)
        server.key = f"modelwire-fanout-{rate:g}"
        server.log = run_dir / f"{server.key}.log"
        server.env["MODELWIRE_EVENTS__METRICS_INTERVAL_S"] = f"{1 / rate:.6f}"
        server.start(server_cpus)
        try:
            server.wait_ready(timeout=180)
            assert server.proc is not None
            for transport in transports:
                name = f"fanout-{transport}-{subscribers}-r{rate:g}"
                load = drivers.Load(duration, subscribers, driver_cpus, run_dir / "raw" / f"{name}.txt")
                cpu, wall = server.cpu_seconds(), time.monotonic()
                with _PeakRss(server.proc.pid) as rss:
                    row = _drive(load, server.base_url, transport, subscribers, warmup=min(3.0, duration))
                row["server_cpu"] = round((server.cpu_seconds() - cpu) / (time.monotonic() - wall), 2)
                row["server_rss_mb"] = round(rss.peak, 1)
                row["rate"] = rate
                rows.append(row)
                print(
                    f"    {name:28s} published {row['published_per_s']:>7} ev/s  delivered "
                    f"{row['delivered_per_s']:>9} ev/s  ratio {row['delivery_ratio']}  "
                    f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
                    f"dropped {row['dropped']}  failed {row['failed']}  "
                    f"rss {row['server_rss_mb']} MB  client cpu {row['client_cpu']}",
                    flush=True,
                )
        finally:
            server.stop()
    return rows


def render(rows: list[dict[str, object]]) -> str:
    """The fan-out section of the report (Markdown)."""
    if not rows:
        return ""
    lines = [
        "## Event fan-out: 1 publisher, many subscribers",
        "",
        "The server's metrics publisher at a fixed rate; every subscriber on its own connection, driven from "
        "one separate process. Latency is receive time minus the event's publish `time`. *ratio* is "
        "deliveries / (events published x subscribers connected); *client cpu* near 1.0 means the driver, "
        "not the server, was the limit.",
        "",
        "| transport | subscribers | published ev/s | delivered ev/s | ratio | p50 ms | p99 ms | max ms "
        "| dropped | server cpu | server RSS MB | client cpu |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['transport']} | {r['connected']}/{r['subscribers']} | {r['published_per_s']} | "
            f"{r['delivered_per_s']} | {r['delivery_ratio']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['max_ms']} | {r['dropped']} | {r['server_cpu']} | {r['server_rss_mb']} | {r['client_cpu']} |"
        )
    return "\n".join(lines) + "\n"


def raise_fd_limit() -> None:
    """Allow a few thousand sockets: 1,000 subscribers need more than the usual soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 subscribers, 10 ev/s, 2 s")
    parser.add_argument("--subscribers", type=int, help="default 1000 (--quick: 100)")
    parser.add_argument("--rates", type=float, nargs="+", help="events/s; default 10 100 (--quick: 10)")
    parser.add_argument("--transports", nargs="+", choices=("sse", "ws"), default=["sse", "ws"])
    parser.add_argument("--duration", type=float, help="seconds measured per row; default 10 (--quick: 2)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin server and driver")
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.subscribers = args.subscribers or (100 if quick else 1000)
    args.rates = args.rates or ([10.0] if quick else [10.0, 100.0])
    args.duration = args.duration or (2.0 if quick else 10.0)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_fd_limit()  # the server inherits it
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = BENCH / "results" / f"{stamp}-fanout"
    run_dir.mkdir(parents=True)
    data_dir = PEERS / "data"
    from run import ensure_model

    ensure_model(data_dir)
    print(
        f"==> event fan-out: {args.subscribers} subscribers, rates {args.rates}, {args.transports}",
        flush=True,
    )
    rows = measure(
        run_dir,
        data_dir,
        subscribers=args.subscribers,
        rates=args.rates,
        transports=args.transports,
        duration=args.duration,
        pin=args.pin,
    )
    (run_dir / "fanout.json").write_text(json.dumps({"command": args.command, "rows": rows}, indent=2) + "\n")
    markdown = render(rows)
    (run_dir / "fanout.md").write_text(markdown)
    print(markdown)
    print(f"==> raw results: {run_dir.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
