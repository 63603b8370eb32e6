"""The load drivers, each run as a subprocess and reduced to one shape of result.

- HTTP/1.1: ``wrk`` with ``wrk_post.lua`` (POSTs a JSON body; ``concurrency`` connections, one thread).
- HTTP/2: ``h2load`` over h2c with prior knowledge; ``concurrency`` streams in flight, spread over 4
  connections (1 at concurrency 1). Percentiles come from its per-request log.
- gRPC: ``grpc_load.py`` (grpc.aio), ``concurrency`` unary calls in flight over 4 channels (1 at
  concurrency 1).
- WebSocket: ``ws_load.py`` (websockets), ``concurrency`` predictions in flight, pipelined over 4 connections
  to ``/v1/ws`` (1 at concurrency 1), so it compares with REST at the same number in flight.

Every result is a dict: req_per_s, p50_ms, p99_ms, requests, errors (count), detail (driver-specific).
Each subprocess is bounded by the run's duration plus a margin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass(frozen=True)
class Load:
    duration: float
    concurrency: int
    cpus: str | None
    out: Path  # where the driver's raw output is kept

    def argv(self, *argv: str) -> list[str]:
        return ["taskset", "-c", self.cpus, *argv] if self.cpus else list(argv)

    def spread(self) -> tuple[int, int]:
        """(connections or channels, in-flight per connection) for multiplexing drivers."""
        conns = 1 if self.concurrency == 1 else min(4, self.concurrency)
        return conns, max(1, self.concurrency // conns)


def _run(load: Load, argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=load.duration + 60,
        env=env,
        check=False,
    )
    load.out.parent.mkdir(parents=True, exist_ok=True)
    load.out.write_text(f"$ {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def wrk(load: Load, url: str, body: Path) -> dict[str, object]:
    argv = load.argv("wrk", "-t1", f"-c{load.concurrency}", f"-d{load.duration:g}s", "--timeout", "10s")
    argv += ["-s", str(BENCH / "wrk_post.lua"), url]
    out = _run(load, argv, env={**os.environ, "BENCH_BODY": str(body)})
    match = re.search(r"^WRK_JSON (.*)$", out, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no summary: {out[-500:]}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    return {
        "req_per_s": round((raw["requests"] - raw["errors"]["status"]) / seconds, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "requests": raw["requests"],
        "errors": errors,
        "detail": raw,
    }


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]


def h2load(load: Load, url: str, body: Path) -> dict[str, object]:
    conns, streams = load.spread()
    log = load.out.with_suffix(".requests.tsv")
    argv = load.argv(
        "h2load", f"-c{conns}", f"-m{streams}", "-D", f"{load.duration:g}", "--warm-up-time", "1"
    )
    argv += ["-d", str(body), "-H", "content-type: application/json", f"--log-file={log}", url]
    out = _run(load, argv)
    finished = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    counts = re.search(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed", out)
    statuses = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not finished or not counts or not statuses:
        raise RuntimeError(f"h2load printed no summary: {out[-500:]}")
    latencies = []
    for line in log.read_text().splitlines():
        _, status, micros = line.split("\t")
        if status.startswith("2"):
            latencies.append(int(micros) / 1000)
    latencies.sort()
    log.unlink()  # tens of thousands of lines; the percentiles below are what the report needs
    return {
        "req_per_s": round(len(latencies) / load.duration, 1),
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "requests": int(counts.group(1)),
        "errors": int(counts.group(2)) + int(statuses.group(1)) + int(statuses.group(2)),
        "detail": {
            "connections": conns,
            "streams_per_connection": streams,
            "h2load_req_per_s": finished.group(2),
        },
    }


def grpc(load: Load, target: str, kind: str) -> dict[str, object]:
    conns, _ = load.spread()
    argv = load.argv(str(ROOT / ".venv/bin/python"), str(BENCH / "grpc_load.py"), "--target", target)
    argv += ["--kind", kind, "--concurrency", str(load.concurrency), "--channels", str(conns)]
    argv += ["--duration", f"{load.duration:g}", "--warmup", "1"]
    raw = json.loads(_run(load, argv).strip().splitlines()[-1])
    return {
        "req_per_s": raw["req_per_s"],
        "p50_ms": raw["p50_ms"],
        "p99_ms": raw["p99_ms"],
        "requests": raw["requests"],
        "errors": sum(raw["errors"].values()),
        "detail": raw,
    }


def ws(load: Load, url: str) -> dict[str, object]:
    conns, _ = load.spread()
    argv = load.argv(str(ROOT / ".venv/bin/python"), str(BENCH / "ws_load.py"), "--url", url)
    argv += ["--concurrency", str(load.concurrency), "--connections", str(conns)]
    argv += ["--duration", f"{load.duration:g}", "--warmup", "1"]
    raw = json.loads(_run(load, argv).strip().splitlines()[-1])
    return {
        "req_per_s": raw["req_per_s"],
        "p50_ms": raw["p50_ms"],
        "p99_ms": raw["p99_ms"],
        "requests": raw["requests"],
        "errors": sum(raw["errors"].values()),
        "detail": raw,
    }
