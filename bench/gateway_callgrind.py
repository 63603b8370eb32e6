"""Instructions per request through a gateway and one model service, coalescing on against off, under
``valgrind --tool=callgrind`` (all threads of both processes; kernel time not counted): a figure the other
work on a shared machine cannot move, unlike req/s or even CPU seconds.

For each side a fresh model service and gateway start under callgrind with instrumentation off; for each
concurrency a discarded ``wrk`` warm-up, then both processes' counters zeroed and switched on, ``--duration``
seconds of ``wrk`` (``POST /predict``, the bench body), a dump of both, off again. The sides alternate
``--repeats`` times.

    .venv/bin/python bench/gateway_callgrind.py --duration 10 --concurrency 1 32
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
from pathlib import Path

import drivers
from gateway import MODELWIRE, ModelService, _env
from servers import BENCH, PEERS, PREDICT_BODY, Server, free_port

VALGRIND = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, timeout=120, check=True)


def _total(out: Path, name: str) -> int:
    dump = max(out.glob(f"{name}.*"), key=os.path.getmtime)
    line = next(x for x in dump.read_text(errors="replace").splitlines() if x.startswith("summary:"))
    return int(line.split()[1])


def side(run_dir: Path, coalesce: bool, args: argparse.Namespace) -> dict[int, dict[str, float]]:
    label = "on" if coalesce else "off"
    out = run_dir / label
    out.mkdir(parents=True)
    common = ["--host", "127.0.0.1", "--log-level", "warning"]
    port = free_port()
    service = ModelService(
        key="model",
        label="model service",
        argv=[
            *VALGRIND,
            f"--callgrind-out-file={out}/model.%p",
            MODELWIRE,
            "model-service",
            *common,
            "--grpc-port",
            str(port),
        ],
        http_port=0,
        grpc_port=port,
        ready_path="",
        ready_body="",
        log=out / "model.log",
        env=_env(out / "model-home", PEERS / "data" / "models"),
    )
    http, grpc_port = free_port(), free_port()
    env = _env(out / "gateway-home", None) | {"MODELWIRE_GATEWAY__COALESCE": "true" if coalesce else "false"}
    gateway = Server(
        key="gateway",
        label="gateway",
        argv=[
            *VALGRIND,
            f"--callgrind-out-file={out}/gateway.%p",
            MODELWIRE,
            "gateway",
            *common,
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc_port),
            "--upstream",
            f"127.0.0.1:{port}",
        ],
        http_port=http,
        grpc_port=grpc_port,
        ready_path="/predict",
        ready_body=PREDICT_BODY,
        log=out / "gateway.log",
        env=env,
    )
    body = run_dir / "predict.json"
    body.write_text(PREDICT_BODY)
    results: dict[int, dict[str, float]] = {}
    try:
        service.start(None)
        service.wait_ready(timeout=900)
        gateway.start(None)
        gateway.wait_ready(timeout=900)
        pids = {"model": service.proc.pid, "gateway": gateway.proc.pid}  # type: ignore[union-attr]
        url = gateway.base_url + "/predict"
        for concurrency in args.concurrency:
            drivers.wrk(
                drivers.Load(args.warmup, concurrency, None, out / f"warmup-c{concurrency}.txt"), url, body
            )
            for pid in pids.values():
                _control(pid, "-i", "on")
                _control(pid, "-z")
            done = drivers.wrk(
                drivers.Load(args.duration, concurrency, None, out / f"c{concurrency}.txt"), url, body
            )
            for pid in pids.values():
                _control(pid, "-d", f"c{concurrency}")
                _control(pid, "-i", "off")
            requests = max(1, int(str(done["requests"])))
            if done["errors"]:
                raise RuntimeError(f"{label} c={concurrency}: {done['errors']} errors")
            row = {name: _total(out, name) / requests for name in pids}
            results[concurrency] = row | {"requests": requests}
            print(
                f"  coalesce {label} c={concurrency}: {requests} requests, "
                f"gateway {row['gateway']:,.0f} + model service {row['model']:,.0f} instructions/request",
                flush=True,
            )
    finally:
        for server in (gateway, service):
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = BENCH / "results" / f"{stamp}-gateway-callgrind"
    run_dir.mkdir(parents=True)
    (run_dir / "predict.json").write_text(PREDICT_BODY)
    rows: list[dict[str, object]] = []
    for repeat in range(args.repeats):
        for coalesce in (False, True):
            for concurrency, row in side(run_dir / f"r{repeat}", coalesce, args).items():
                rows.append({"coalesce": coalesce, "concurrency": concurrency, "repeat": repeat, **row})
    (run_dir / "callgrind.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| coalescing | concurrency | gateway instr/request | model service instr/request | total |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for concurrency in args.concurrency:
        for coalesce in (False, True):
            group = [r for r in rows if r["coalesce"] is coalesce and r["concurrency"] == concurrency]
            gw = statistics.median(float(str(r["gateway"])) for r in group)
            ms = statistics.median(float(str(r["model"])) for r in group)
            print(
                f"| {'on' if coalesce else 'off'} | {concurrency} | {gw / 1e3:,.0f} k | {ms / 1e3:,.0f} k | "
                f"{(gw + ms) / 1e3:,.0f} k |"
            )
    print(f"==> raw results: {run_dir}")


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent.parent)
    main()
