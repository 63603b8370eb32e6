"""What OpenTelemetry costs on REST ``/predict``: server CPU µs per request and requests per second, for
an earlier commit (before tracing existed), tracing off, and tracing on at 100 % sampling exporting over
OTLP/gRPC to a sink started here (a real ``TraceService`` that counts spans and drops them).

    .venv/bin/python bench/otel_cost.py REF [PAIRS] [SECONDS]     e.g.  bench/otel_cost.py 8bc2d9c 5 8

Same venv, same data dir (the default model, trained once), the server pinned to CPU 0 and wrk (1 thread,
32 connections) to CPU 1; the variants alternate so drift on a shared machine hits each alike. CPU is the
server process's utime + stime from /proc (its exporter thread included) from the start of the run until
the sink stopped receiving its spans, divided by the requests wrk completed. Prints each run and the
medians. Needs wrk and taskset.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
PORT = 18400
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


class Sink(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """Counts the spans it is sent."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self._lock:
            self.spans += count
        return trace_service_pb2.ExportTraceServiceResponse()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime


def wrk(seconds: float, body: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            "-c32",
            f"-d{round(seconds)}s",
            "-s",
            "bench/wrk_post.lua",
            f"http://127.0.0.1:{PORT}/predict",
        ],
        cwd=ROOT,
        env={**os.environ, "BENCH_BODY": body},
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON"))
    return json.loads(line.removeprefix("WRK_JSON "))


def one(
    label: str, src: Path, data: str, body: str, seconds: float, otlp: dict[str, str] | None, sink: Sink
) -> dict[str, Any]:
    argv = [
        "taskset",
        "-c",
        "0",
        sys.executable,
        "-m",
        "modelwire",
        "serve",
        "--http-port",
        str(PORT),
        "--grpc-port",
        str(PORT + 1),
        "--data-dir",
        data,
        "--log-level",
        "warning",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWIRE_", "OTEL_"))}
    env["PYTHONPATH"] = str(src)
    if otlp:
        argv += ["--otlp-endpoint", otlp["endpoint"]]
        env.update({k: v for k, v in otlp.items() if k != "endpoint"})
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{PORT}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{label}: the server did not become ready")
        wrk(3, body)  # warm up
        spans_before, cpu_before = sink.spans, cpu_s(server.pid)
        result = wrk(seconds, body)
        if otlp:  # count the export of what the run made: wait until the sink stops receiving
            deadline, seen = time.monotonic() + 60, -1
            while sink.spans != seen and time.monotonic() < deadline:
                seen = sink.spans
                time.sleep(1.5)
        cpu = cpu_s(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(60)
    requests = result["requests"]
    return {
        "label": label,
        "requests": requests,
        "rps": requests / (result["duration_us"] / 1e6),
        "cpu_us_per_request": cpu / requests * 1e6,
        "spans_per_request": (sink.spans - spans_before) / requests,  # exported by the end of the run
        "errors": sum(result["errors"].values()),
    }


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the finally blocks clean up
    ref = sys.argv[1]
    pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 8
    sink = Sink()
    receiver = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, receiver)
    sink_port = receiver.add_insecure_port("127.0.0.1:0")
    receiver.start()
    with (
        tempfile.TemporaryDirectory() as old,
        tempfile.TemporaryDirectory() as data,
        tempfile.NamedTemporaryFile("w", suffix=".json") as body,
    ):
        body.write('{"text": "I love this product, it works great"}')
        body.flush()
        subprocess.run(["git", "worktree", "add", "-q", "--detach", old, ref], cwd=ROOT, check=True)
        new = Path(old).parent / (Path(old).name + "-new")
        shutil.copytree(ROOT / "src", new)  # the working tree as it is now, whatever is edited meanwhile
        try:
            runs: list[dict[str, Any]] = []
            variants = [
                (f"before ({ref})", Path(old) / "src", None),
                ("tracing off", new, None),
                ("tracing on", new, {"endpoint": f"http://127.0.0.1:{sink_port}"}),
                (
                    "tracing on, 10 % sampled",
                    new,
                    {
                        "endpoint": f"http://127.0.0.1:{sink_port}",
                        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                        "OTEL_TRACES_SAMPLER_ARG": "0.1",
                    },
                ),
            ]
            for _ in range(pairs):
                for label, src, otlp in variants:
                    run = one(label, src, data, body.name, seconds, otlp, sink)
                    print(json.dumps(run), flush=True)
                    runs.append(run)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", old], cwd=ROOT, check=False)
            shutil.rmtree(new, ignore_errors=True)
    receiver.stop(None)
    print("\nvariant                     req/s (median)   server CPU µs/request (median)   spans/request")
    for label, _, _ in variants:
        mine = [r for r in runs if r["label"] == label]
        print(
            f"{label:<28}{statistics.median(r['rps'] for r in mine):>10.0f}"
            f"{statistics.median(r['cpu_us_per_request'] for r in mine):>28.1f}"
            f"{statistics.median(r['spans_per_request'] for r in mine):>20.2f}"
        )


if __name__ == "__main__":
    main()
