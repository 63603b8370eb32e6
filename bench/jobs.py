"""Batch jobs: N rows (100,000 by default) end to end, embedded (SQLite) and on Redis with 1 and 2 workers,
against the same rows sent as synchronous REST batch requests.

Each scenario starts fresh processes: ``modelwire serve`` (the gateway), and for Redis ``modelwire worker``s
with ``--jobs-backend redis://...?prefix=<own prefix>`` (the gateway then runs no job itself). A job is
uploaded as streamed NDJSON (``POST /v1/jobs?model=sentiment``), followed by polling its status every
0.1 s, and its results are read back as streamed NDJSON; *end to end* is upload start to the last result
line read. The synchronous baseline POSTs ``{"texts": [...]}`` batches of ``--batch`` rows to
``/v1/models/sentiment/predict`` with ``--concurrency`` requests in flight. The rows are movie reviews cut
to ``--text-chars`` characters, cycled. RSS is sampled every 0.1 s from ``/proc/<pid>/status`` for the
gateway and each worker, from the upload start to the last result; the baseline is its RSS before.

No CPU pinning: the workers of the 2-worker scenarios need both cores of a 2-core machine.

    scripts/bench jobs                 100,000 rows, every scenario (a few minutes)
    scripts/bench jobs --quick         5,000 rows: a smoke run
    .venv/bin/python bench/jobs.py --rows 20000 --scenarios sync embedded redis-1

``run.py`` calls ``measure()`` after the other sections and appends ``render()`` to its report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx

import servers
from servers import BENCH, PEERS, ROOT

__all__ = ["SCENARIOS", "measure", "render"]

SCENARIOS = ("sync", "embedded", "embedded-follow", "redis-1", "redis-2", "redis-2x2")
"""sync REST batches; 1 job embedded; the same with its results read while it runs (``?offset&limit`` up to
its ``progress.done``, as a client that wants them early would); 1 job on Redis with 1 worker; 1 job with 2
workers; 2 jobs of half the rows with 2 workers (a job runs on one worker: more workers speed up more jobs,
not one)."""

_LABELS = {
    "sync": ("sync REST batches", 0, 0),
    "embedded": ("job, embedded SQLite", 1, 0),
    "embedded-follow": ("job, embedded SQLite, results read while it runs", 1, 0),
    "redis-1": ("job, Redis, 1 worker", 1, 1),
    "redis-2": ("job, Redis, 2 workers", 1, 2),
    "redis-2x2": ("2 jobs, Redis, 2 workers", 2, 2),
}


def _cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _Peaks:
    """Samples every pid's RSS every 0.1 s in a thread; ``peak[pid]`` is the largest seen."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.before = {pid: _rss_mb(pid) for pid in pids}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], _rss_mb(pid))

    def __enter__(self) -> _Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Worker:
    """``modelwire worker`` on the scenario's Redis prefix; ready when its log says so."""

    def __init__(self, log: Path, backend: str, data_dir: Path) -> None:
        self.log = log
        argv = [str(ROOT / ".venv/bin/modelwire"), "worker", "--jobs-backend", backend]
        argv += ["--data-dir", str(data_dir), "--concurrency", "1", "--log-level", "warning"]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready:" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready:\n{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def texts(rows: int, chars: int) -> list[str]:
    from modelwire.model.sentiment import load_reviews

    reviews = [t[:chars] for t in load_reviews()[0][:5000]]
    return [reviews[i % len(reviews)] for i in range(rows)]


async def _ndjson(rows: list[str], chunk: int = 2000) -> AsyncIterator[bytes]:
    for start in range(0, len(rows), chunk):
        yield b"".join(json.dumps(t).encode() + b"\n" for t in rows[start : start + chunk])


async def _one_job(client: httpx.AsyncClient, rows: list[str], *, follow: bool) -> dict[str, float]:
    started = time.monotonic()
    answer = await client.post(
        "/v1/jobs",
        params={"model": "sentiment"},
        content=_ndjson(rows),
        headers={"Content-Type": "application/x-ndjson"},
    )
    if answer.status_code != 202:
        raise RuntimeError(f"submit failed: {answer.status_code} {answer.text[:500]}")
    job_id = answer.json()["id"]
    uploaded = time.monotonic()
    lines = 0

    async def read(limit: int | None) -> int:
        params = {"offset": lines} if limit is None else {"offset": lines, "limit": limit}
        count = 0
        async with client.stream("GET", f"/v1/jobs/{job_id}/results", params=params) as response:
            async for line in response.aiter_lines():
                count += bool(line)
        return count

    while True:
        state = (await client.get(f"/v1/jobs/{job_id}")).json()
        final = state["status"] in ("succeeded", "failed", "cancelled")
        if final:
            break
        done = state["progress"]["done"]
        if follow and done > lines:  # read the results written so far while the job runs on
            lines += await read(done - lines)
        else:
            await asyncio.sleep(0.1)
    if state["status"] != "succeeded" or state["progress"]["done"] != len(rows):
        raise RuntimeError(f"job {job_id} ended {state['status']}: {state['progress']} {state['error']}")
    processed = time.monotonic()
    lines += await read(None)
    if lines != len(rows):
        raise RuntimeError(f"job {job_id}: {lines} result lines for {len(rows)} rows")
    return {
        "upload_s": uploaded - started,
        "process_s": processed - uploaded,
        "results_s": time.monotonic() - processed,
    }


async def _jobs(base_url: str, rows: list[str], jobs: int, *, follow: bool) -> dict[str, float]:
    size = -(-len(rows) // jobs)
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        started = time.monotonic()
        parts = await asyncio.gather(
            *(_one_job(client, rows[i : i + size], follow=follow) for i in range(0, len(rows), size))
        )
        total = time.monotonic() - started
    return {key: max(p[key] for p in parts) for key in parts[0]} | {"total_s": total}


async def _sync(base_url: str, rows: list[str], batch: int, concurrency: int) -> dict[str, float]:
    batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    done = 0

    async def drive(client: httpx.AsyncClient) -> None:
        nonlocal done
        while not queue.empty():
            texts_ = queue.get_nowait()
            answer = await client.post("/v1/models/sentiment/predict", json={"texts": texts_})
            if answer.status_code != 200:
                raise RuntimeError(f"predict failed: {answer.status_code} {answer.text[:300]}")
            done += len(answer.json()["predictions"])

    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        started = time.monotonic()
        await asyncio.gather(*(drive(client) for _ in range(concurrency)))
        total = time.monotonic() - started
    if done != len(rows):
        raise RuntimeError(f"{done} predictions for {len(rows)} rows")
    return {"total_s": total}


@contextlib.contextmanager
def _fleet(
    scenario: str, run_dir: Path, models: Path, redis_url: str
) -> Iterator[tuple[servers.Server, list[_Worker], str]]:
    """The gateway (and workers) of one scenario, on a fresh data dir; stopped (and Redis keys removed)."""
    home = run_dir / scenario
    data_dir = home / "data"
    shutil.copytree(models, data_dir / "models")
    gateway = servers.modelwire(home, data_dir, batching=True)
    gateway.key, gateway.log = f"jobs-{scenario}", home / "serve.log"
    _, _, workers_n = _LABELS[scenario]
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    backend = f"{redis_url}?prefix={prefix}"
    if workers_n:
        gateway.argv += ["--jobs-backend", backend]
        gateway.env["MODELWIRE_JOBS__WORKERS"] = "0"
    workers: list[_Worker] = []
    try:
        gateway.start(None)
        workers = [_Worker(home / f"worker-{i}.log", backend, data_dir) for i in range(workers_n)]
        gateway.wait_ready(timeout=180)
        for worker in workers:
            worker.wait_ready(timeout=180)
        yield gateway, workers, backend
    finally:
        for worker in workers:
            worker.stop()
        gateway.stop()
        if workers_n:
            _delete_prefix(redis_url, prefix + ":")


def _delete_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def _redis_problem(url: str) -> str | None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc)
    finally:
        client.close()
    return None


def measure(
    run_dir: Path,
    data_dir: Path,
    *,
    rows: int,
    scenarios: list[str],
    redis_url: str,
    batch: int = 256,
    concurrency: int = 2,
    text_chars: int = 200,
) -> list[dict[str, object]]:
    """One row per scenario."""
    inputs = texts(rows, text_chars)
    problem = _redis_problem(redis_url) if any(s.startswith("redis") for s in scenarios) else None
    out: list[dict[str, object]] = []
    for scenario in scenarios:
        label, jobs, workers_n = _LABELS[scenario]
        if workers_n and problem:
            print(f"    {scenario:10s} skipped: Redis at {redis_url} is unreachable ({problem})", flush=True)
            continue
        with _fleet(scenario, run_dir, data_dir / "models", redis_url) as (gateway, workers, _):
            assert gateway.proc is not None
            pids = [gateway.proc.pid, *(w.proc.pid for w in workers)]
            cpu_before = _cpu_s(gateway.proc.pid)
            with _Peaks(pids) as peaks:
                if scenario == "sync":
                    timing = asyncio.run(_sync(gateway.base_url, inputs, batch, concurrency))
                    cpu = _cpu_s(gateway.proc.pid) - cpu_before
                else:
                    follow = scenario.endswith("-follow")
                    timing = asyncio.run(_jobs(gateway.base_url, inputs, jobs, follow=follow))
                cpu = _cpu_s(gateway.proc.pid) - cpu_before
        row: dict[str, object] = {
            "scenario": scenario,
            "label": label,
            "rows": rows,
            "jobs": jobs,
            "workers": workers_n,
            "rows_per_s": round(rows / timing["total_s"]),
            **{key: round(value, 2) for key, value in timing.items()},
            "gateway_cpu_us_per_row": round(cpu * 1e6 / rows, 1),
            "gateway_rss_before_mb": round(peaks.before[pids[0]], 1),
            "gateway_rss_peak_mb": round(peaks.peak[pids[0]], 1),
            "worker_rss_peak_mb": round(max((peaks.peak[p] for p in pids[1:]), default=0.0), 1) or None,
        }
        out.append(row)
        print(
            f"    {scenario:10s} {row['rows_per_s']:>8} rows/s  total {row['total_s']} s  "
            f"gateway CPU {row['gateway_cpu_us_per_row']} us/row  "
            f"gateway RSS {row['gateway_rss_before_mb']} -> {row['gateway_rss_peak_mb']} MB  "
            f"worker RSS {row['worker_rss_peak_mb']} MB",
            flush=True,
        )
    return out


def render(rows: list[dict[str, object]]) -> str:
    """The jobs section of the report (Markdown)."""
    if not rows:
        return ""
    lines = [
        f"## Batch jobs: {rows[0]['rows']:,} rows end to end",
        "",
        "Upload (streamed NDJSON) + processing + results (streamed NDJSON), against the same rows as "
        "synchronous `POST /v1/models/sentiment/predict` batches. RSS: peak while uploading and processing "
        "(gateway: before -> peak; workers: the largest).",
        "",
        "| round | scenario | rows/s | total s | upload s | process s | results s | gateway CPU µs/row "
        "| gateway RSS MB | worker RSS MB |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.get('round', 1)} | {r['label']} | {r['rows_per_s']:,} | {r['total_s']} | "
            f"{r.get('upload_s', '-')} | {r.get('process_s', '-')} | {r.get('results_s', '-')} | "
            f"{r.get('gateway_cpu_us_per_row', '-')} | "
            f"{r['gateway_rss_before_mb']} -> {r['gateway_rss_peak_mb']} | {r['worker_rss_peak_mb'] or '-'} |"
        )
    ratios = against_sync(rows)
    if ratios:
        lines += [
            "",
            "Each job scenario against the sync REST batches of the same round (rows/s), median of rounds:",
            "",
        ]
        lines += [
            f"- {label}: **{median:.2f}x** (rounds {', '.join(f'{x:.2f}' for x in each)})"
            for label, median, each in ratios
        ]
    return "\n".join(lines) + "\n"


def against_sync(rows: list[dict[str, object]]) -> list[tuple[str, float, list[float]]]:
    """Per job scenario: the median over rounds of (its rows/s / sync's rows/s in the same round)."""
    sync = {r.get("round", 1): r["rows_per_s"] for r in rows if r["scenario"] == "sync"}
    out: dict[str, list[float]] = {}
    for r in rows:
        base = sync.get(r.get("round", 1))
        if r["scenario"] != "sync" and base:
            out.setdefault(str(r["label"]), []).append(float(r["rows_per_s"]) / float(base))  # type: ignore[arg-type]
    return [(label, statistics.median(each), each) for label, each in out.items()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000 rows")
    parser.add_argument("--rows", type=int, help="rows per scenario; default 100000 (--quick: 5000)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for the redis-* scenarios")
    parser.add_argument("--batch", type=int, default=256, help="rows per sync REST request (jobs: 256 too)")
    parser.add_argument("--concurrency", type=int, default=2, help="sync REST requests in flight")
    parser.add_argument("--text-chars", type=int, default=200, help="reviews are cut to this many chars")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; the order alternates each round")
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = args.rows or (5000 if args.quick else 100_000)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = BENCH / "results" / f"{stamp}-jobs"
    run_dir.mkdir(parents=True)
    data_dir = PEERS / "data"
    from run import ensure_model

    ensure_model(data_dir)
    print(f"==> batch jobs: {args.rows} rows, scenarios {args.scenarios}", flush=True)
    rows: list[dict[str, object]] = []
    for round_no in range(1, args.repeats + 1):
        order = args.scenarios if round_no % 2 else args.scenarios[::-1]
        for row in measure(
            run_dir / f"round-{round_no}",
            data_dir,
            rows=args.rows,
            scenarios=order,
            redis_url=args.redis,
            batch=args.batch,
            concurrency=args.concurrency,
            text_chars=args.text_chars,
        ):
            rows.append({"round": round_no, **row})
    command = args.command or "bench/jobs.py"
    (run_dir / "jobs.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    markdown = render(rows)
    (run_dir / "jobs.md").write_text(markdown)
    print(markdown)
    print(f"==> raw results: {run_dir.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
