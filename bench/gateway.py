"""The gateway's cost: REST ``POST /predict`` through ``modelwire gateway`` -> 1 and -> 2 ``modelwire
model-service``s (gRPC), against the all-in-one ``modelwire serve``, on this machine, as ratios.

Same request, driver and concurrencies as the REST cells of the main run (``wrk`` + ``wrk_post.lua``,
``{"text": "I love this product"}``, concurrency 1, 32, 128), medians of the repeats. Five processes start
at once on 127.0.0.1, each with its own copy of the trained model: ``serve``, model services A and B, a
gateway in front of A, a gateway in front of A and B (``--upstream A,B``, gRPC round_robin). Each repeat
walks every (scenario, concurrency) cell in the same order. Two layouts, each on a fresh fleet:

- ``pinned``: every server process on CPU 0, wrk on CPU 1 (as the main run). All scenarios get the same
  one core, so req/s measures CPU per request end to end: the ratio is the hop's price.
- ``spread``: nothing pinned; the servers and wrk share both cores. The scaling curve this machine can show.

Each cell also records every process's CPU (``/proc``, its process group) and wrk's (``RUSAGE_CHILDREN``),
turned into CPU microseconds per request per role; and each process's RSS once ready, before any load.

    scripts/bench gateway                          10 s x 3 repeats per cell, both layouts (~10 min)
    scripts/bench gateway --duration 5 --repeats 3
    scripts/bench gateway --quick                  2 s x 1, c=32 only: a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import drivers
import environment
from servers import BENCH, PEERS, PREDICT_BODY, ROOT, Server, free_port

__all__ = ["measure", "render"]

SCENARIOS = ("serve", "serve-w2", "gateway-1", "gateway-1-off", "gateway-2")
"""serve-w2 (``serve --workers 2``, the one-machine way to use two cores) runs in the spread layout only;
gateway-1-off is gateway-1 with coalescing off (``MODELWIRE_GATEWAY__COALESCE=false``: one upstream call per
request, as before issue 12), in front of the same model service."""
LAYOUTS = ("pinned", "spread")
MODELWIRE = str(ROOT / ".venv/bin/modelwire")


class ModelService(Server):
    """``modelwire model-service``: gRPC only, so ready when grpc.health.v1 answers SERVING."""

    def _rest_ok(self) -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _env(home: Path, models: Path | None) -> dict[str, str]:
    """Each process on its own data dir (a copy of the trained model, or none for a gateway), defaults on."""
    data = home / "data"
    if models is None:
        data.mkdir(parents=True)
    else:
        shutil.copytree(models, data / "models")
    return {"MODELWIRE_DATA_DIR": str(data), "MODELWIRE_BATCHING__ENABLED": "true"}


def _fleet(run_dir: Path, models: Path, layout: str, scenarios: list[str]) -> dict[str, Server]:
    common = ["--host", "127.0.0.1", "--log-level", "warning"]
    fleet: dict[str, Server] = {}
    for key, workers in (("serve", 1), ("serve-w2", 2)):
        if (workers > 1 and layout == "pinned") or key not in scenarios:
            continue  # two processes on one pinned core measure nothing new
        http, grpc_port = free_port(), free_port()
        ports = ["--http-port", str(http), "--grpc-port", str(grpc_port)]
        fleet[key] = Server(
            key=key,
            label=f"modelwire serve --workers {workers} (all in one)",
            argv=[MODELWIRE, "serve", *common, "--workers", str(workers), *ports],
            http_port=http,
            grpc_port=grpc_port,
            ready_path="/predict",
            ready_body=PREDICT_BODY,
            log=run_dir / f"{key}.log",
            env=_env(run_dir / key, models),
        )
    for key in ("model-a", "model-b"):
        if not any(key in ROLES[s] for s in scenarios):
            continue
        port = free_port()
        fleet[key] = ModelService(
            key=key,
            label=f"modelwire model-service ({key})",
            argv=[MODELWIRE, "model-service", *common, "--grpc-port", str(port)],
            http_port=0,
            grpc_port=port,
            ready_path="",
            ready_body="",
            log=run_dir / f"{key}.log",
            env=_env(run_dir / key, models),
        )
    gateways = (
        ("gateway-1", ["model-a"]),
        ("gateway-1-off", ["model-a"]),
        ("gateway-2", ["model-a", "model-b"]),
    )
    for key, upstreams in gateways:
        if key not in scenarios:
            continue
        env = _env(run_dir / key, None)
        if key.endswith("-off"):
            env["MODELWIRE_GATEWAY__COALESCE"] = "false"
        http, grpc_port = free_port(), free_port()  # a gateway has a public gRPC port of its own too
        targets = ",".join(f"127.0.0.1:{fleet[u].grpc_port}" for u in upstreams)
        ports = ["--http-port", str(http), "--grpc-port", str(grpc_port)]
        fleet[key] = Server(
            key=key,
            label=f"modelwire gateway -> {len(upstreams)} model service(s)",
            argv=[MODELWIRE, "gateway", *common, *ports, "--upstream", targets],
            http_port=http,
            grpc_port=grpc_port,
            ready_path="/predict",
            ready_body=PREDICT_BODY,
            log=run_dir / f"{key}.log",
            env=env,
        )
    return fleet


ROLES = {
    "serve": ["serve"],
    "serve-w2": ["serve-w2"],
    "gateway-1": ["gateway-1", "model-a"],
    "gateway-1-off": ["gateway-1-off", "model-a"],
    "gateway-2": ["gateway-2", "model-a", "model-b"],
}
"""The processes that serve each scenario; the first is the one wrk talks to."""


def _rss_mb(server: Server) -> float:
    """Resident memory of the server's whole process group (``serve --workers 2``: all three processes)."""
    assert server.proc is not None
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[2]) != server.proc.pid:
                continue
            status = (stat.parent / "status").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return round(total / 1024, 1)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Plan:
    duration: float
    repeats: int
    warmup: float
    concurrency: list[int]


def _cell(fleet: dict[str, Server], scenario: str, load: drivers.Load, body: Path) -> dict[str, object]:
    procs = ROLES[scenario]
    before = {key: fleet[key].cpu_seconds() for key in procs}
    wrk_before, started = _children_cpu(), time.monotonic()
    result = drivers.wrk(load, fleet[procs[0]].base_url + "/predict", body)
    wall = time.monotonic() - started
    used = {key: fleet[key].cpu_seconds() - before[key] for key in procs}
    requests = max(1, int(str(result["requests"])))
    result.pop("detail")
    return result | {
        "cores": {key: round(seconds / wall, 2) for key, seconds in used.items()}
        | {"wrk": round((_children_cpu() - wrk_before) / wall, 2)},
        "cpu_us_per_request": {key: round(seconds / requests * 1e6, 1) for key, seconds in used.items()},
    }


def _start(fleet: dict[str, Server], cpus: str | None) -> None:
    """Model services (and serve) first: a gateway looks for its upstreams' models when it starts."""
    backends = [key for key in fleet if not key.startswith("gateway")]
    for group in (backends, [key for key in fleet if key.startswith("gateway")]):
        for key in group:
            fleet[key].start(cpus)
        for key in group:
            fleet[key].wait_ready(timeout=180)


def _layout(run_dir: Path, fleet: dict[str, Server], layout: str, plan: Plan) -> list[dict[str, object]]:
    _, driver_cpus = environment.cpu_split(layout == "pinned")
    body = run_dir / "predict.json"
    scenarios = [s for s in SCENARIOS if s in fleet]
    for scenario in scenarios:
        raw = run_dir / layout / "raw" / f"warmup-{scenario}.txt"
        _cell(fleet, scenario, drivers.Load(plan.warmup, 32, driver_cpus, raw), body)
    rows: list[dict[str, object]] = []
    for repeat in range(plan.repeats):
        for scenario in scenarios:
            for concurrency in plan.concurrency:
                name = f"{scenario}-c{concurrency}-r{repeat}"
                raw = run_dir / layout / "raw" / f"{name}.txt"
                load = drivers.Load(plan.duration, concurrency, driver_cpus, raw)
                row = {"layout": layout, "scenario": scenario, "concurrency": concurrency}
                row |= {"repeat": repeat, **_cell(fleet, scenario, load, body)}
                rows.append(row)
                print(
                    f"    {layout:6s} {name:22s} {row['req_per_s']:9.1f} req/s  p50 {row['p50_ms']:7.2f} ms  "
                    f"p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}  cores {row['cores']}",
                    flush=True,
                )
    return rows


def measure(
    run_dir: Path, data_dir: Path, plan: Plan, layouts: list[str], scenarios: list[str] | None = None
) -> dict[str, object]:
    """Raw rows of every cell, and each process's idle RSS, per layout (each on a fresh fleet)."""
    (run_dir / "predict.json").write_text(PREDICT_BODY)
    rows: list[dict[str, object]] = []
    idle: dict[str, dict[str, float]] = {}
    for layout in layouts:
        server_cpus, _ = environment.cpu_split(layout == "pinned")
        fleet = _fleet(run_dir / layout, data_dir / "models", layout, scenarios or list(SCENARIOS))
        try:
            _start(fleet, server_cpus)
            idle[layout] = {key: _rss_mb(server) for key, server in fleet.items()}
            print(f"==> {layout}: servers on CPU {server_cpus or 'any'}; idle RSS MB {idle[layout]}")
            rows += _layout(run_dir, fleet, layout, plan)
        finally:
            for server in fleet.values():
                server.stop()
    return {"rows": rows, "idle_rss_mb": idle}


def summarize(rows: list[dict[str, object]]) -> dict[tuple[str, str, int], dict[str, object]]:
    groups: dict[tuple[str, str, int], list[dict[str, object]]] = {}
    for row in rows:
        key = (str(row["layout"]), str(row["scenario"]), int(str(row["concurrency"])))
        groups.setdefault(key, []).append(row)

    def median(group: list[dict[str, object]], pick: str, sub: str | None = None) -> float:
        values = [float(str(r[pick] if sub is None else r[pick][sub])) for r in group]  # type: ignore[index]
        return round(statistics.median(values), 2)

    out: dict[tuple[str, str, int], dict[str, object]] = {}
    for key, group in groups.items():
        procs = ROLES[key[1]]
        out[key] = {
            "req_per_s": median(group, "req_per_s"),
            "p50_ms": median(group, "p50_ms"),
            "p99_ms": median(group, "p99_ms"),
            "errors": sum(int(str(r["errors"])) for r in group),
            "cores": {p: median(group, "cores", p) for p in [*procs, "wrk"]},
            "us": {p: median(group, "cpu_us_per_request", p) for p in procs},
            "repeats": len(group),
        }
    return out


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def render(results: dict[str, object], command: str) -> str:
    """The gateway section (Markdown): the hop's price, CPU per request, the scaling curve, idle RSS."""
    rows = results["rows"]
    assert isinstance(rows, list)
    summary = summarize(rows)
    plan = results["plan"]
    assert isinstance(plan, dict)
    load = results["loadavg"]
    assert isinstance(load, dict)
    lines = [
        f"Command: `{command}`; {plan['duration']:g} s per cell, median of {plan['repeats']}, "
        f"run {results['stamp']}, load average (1, 5, 15 min) {load['start']} at the start, "
        f"{load['end']} at the end. Ratios are against `modelwire serve` in the same layout.",
        "",
    ]
    for layout in LAYOUTS:
        cells = {(s, c): v for (lay, s, c), v in summary.items() if lay == layout}
        if not cells:
            continue
        where = "all servers on CPU 0, wrk on CPU 1" if layout == "pinned" else "nothing pinned, wrk included"
        lines += [
            f"**{layout}** ({where})",
            "",
            "| scenario | concurrency | req/s | vs serve | p50 ms | p99 ms | errors | CPU us/request "
            "(gateway + model services = total) | cores used (gateway, services, wrk) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        for concurrency in plan["concurrency"]:
            base = cells.get(("serve", concurrency))
            for scenario in SCENARIOS:
                cell = cells.get((scenario, concurrency))
                if cell is None or base is None:
                    continue
                us, cores = cell["us"], cell["cores"]
                assert isinstance(us, dict)
                assert isinstance(cores, dict)
                procs = ROLES[scenario]
                total = sum(us.values())
                split = " + ".join(f"{us[p]:.0f}" for p in procs)
                used = ", ".join(f"{cores[p]:.2f}" for p in [*procs, "wrk"])
                lines.append(
                    f"| {scenario} | {concurrency} | {cell['req_per_s']:,.0f} | "
                    f"{_ratio(float(str(cell['req_per_s'])), float(str(base['req_per_s'])))} | "
                    f"{cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} | {cell['errors']} | "
                    f"{split}{f' = {total:.0f}' if len(procs) > 1 else ''} | {used} |"
                )
        lines.append("")
    idle = results["idle_rss_mb"]
    assert isinstance(idle, dict)
    if idle:
        first = next(iter(idle.values()))
        lines += [
            "Idle RSS once ready, before any load (MB): " + ", ".join(f"{k} {v}" for k, v in first.items())
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s x 1, concurrency 32")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per cell (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per cell; medians are reported")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of warm-up per scenario, discarded"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        help="which to run (serve is the ratios' base: keep it)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for the 1-minute load average to fall below 1 (a shared machine)",
    )
    parser.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeats, args.warmup, args.concurrency = 2.0, 1, 1.0, [32]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("scripts/bench gateway needs wrk and taskset: apt-get install wrk util-linux")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = BENCH / "results" / f"{stamp}-gateway"
    run_dir.mkdir(parents=True)
    data_dir = PEERS / "data"
    from run import ensure_model

    ensure_model(data_dir)
    plan = Plan(args.duration, args.repeats, args.warmup, args.concurrency)
    environment.wait_quiet(args.wait_quiet)
    loadavg = {"start": environment.loadavg()}
    results = measure(run_dir, data_dir, plan, args.layouts, args.scenarios)
    loadavg["end"] = environment.loadavg()
    results |= {"stamp": stamp, "plan": plan.__dict__, "loadavg": loadavg}
    command = args.command or "bench/gateway.py"
    (run_dir / "gateway.json").write_text(json.dumps(results | {"command": command}, indent=2) + "\n")
    markdown = render(results, command)
    (run_dir / "gateway.md").write_text(markdown)
    print(markdown)
    print(f"==> raw results: {run_dir.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    import os

    os.chdir(ROOT)
    main()
