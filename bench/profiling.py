"""Where the servers spend their CPU under load: py-spy samples while a driver holds concurrency 128.

``py-spy record --gil --format raw`` samples only the thread holding the GIL, so the collapsed stacks say what
keeps the one interpreter busy; they are reduced here to shares of self time by kind of code (the model's
code and anything it calls, the HTTP or gRPC stack, the event loop, thread-pool hand-offs) and the busiest
functions by self time.
Time in native threads with no Python on the stack (granian's Rust I/O threads, grpc's C core) does not
appear; the report's server-CPU column counts it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import threading
from collections import Counter
from pathlib import Path

import drivers
import environment
from servers import PEERS, Server

PYSPY = PEERS / "tools-venv/bin/py-spy"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^)]*?)(?::\d+)?\)$")
# Samples anywhere inside the model's call count as the model's; the rest go by the leaf frame's file
# (py-spy prints paths relative to their sys.path entry).
MODEL = re.compile(
    r"\((sklearn|scipy|numpy|narwhals)/|\((modelwire/model/)?(sentiment|linear_text|runtimes|peer_model)\.py"
)
CATEGORIES = (
    ("gRPC runtime", re.compile(r"^(grpc|google/protobuf)/")),
    (
        "HTTP/ASGI stack",
        re.compile(r"^(starlette|fastapi|pydantic|pydantic_core|uvicorn|h11|httptools|granian|anyio)/"),
    ),
    ("asyncio loop", re.compile(r"^(asyncio/|selectors\.py|uvloop/)")),
    ("thread hand-off", re.compile(r"^(concurrent/|threading\.py|queue\.py)")),
)


def _parse(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    return (match.group("func"), match.group("file")) if match else (frame.strip(), "")


def summarize(collapsed: str, top: int = 8) -> dict[str, object]:
    total = 0
    self_time: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        total += samples
        if not frames:
            self_time["(no Python frame)"] += samples
            categories["no Python frame (native)"] += samples
            continue
        func, file = _parse(frames[-1])
        self_time[f"{func} ({file})"] += samples
        if any(MODEL.search(frame) for frame in frames):
            category = "model: predict and all it calls"
        elif func == "Handle._run":
            # A loop callback with no Python frame below it: compiled code (grpc.aio core, granian futures).
            category = "native callbacks on the loop (grpc.aio Cython, granian Rust)"
        else:
            category = next(
                (name for name, pattern in CATEGORIES if pattern.search(file)), "other (modelwire, stdlib)"
            )
        categories[category] += samples
    if not total:
        return {"samples": 0, "categories": [], "top_self": []}
    return {
        "samples": total,
        "categories": [(name, round(n / total, 3)) for name, n in categories.most_common()],
        "top_self": [(name, round(n / total, 3)) for name, n in self_time.most_common(top)],
    }


def _record(server: Server, seconds: float, out: Path) -> str:
    assert server.proc is not None
    argv = [str(PYSPY), "record", "--pid", str(server.proc.pid), "--subprocesses", "--nonblocking", "--gil"]
    argv += ["--rate", "200", "--duration", f"{seconds:g}", "--format", "raw", "--output", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0 or not out.exists():
        return f"py-spy failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return ""


def profile(server: Server, drive: drivers.Load, run: object, out: Path) -> dict[str, object]:
    """Drive ``server`` with ``run(load, server)`` in a thread while py-spy samples it."""
    worker = threading.Thread(target=run, args=(drive, server))  # type: ignore[arg-type]
    worker.start()
    error = _record(server, drive.duration - 2, out)
    worker.join(timeout=drive.duration + 90)
    if error:
        return {"error": error}
    return summarize(out.read_text())


def profile_all(
    cells: list, up: dict[str, Server], args: argparse.Namespace, run_dir: Path
) -> dict[str, dict[str, object]]:
    """Profile the cells worth explaining: modelwire REST and gRPC with batching on and off, and FastAPI."""
    if not PYSPY.exists():
        return {"error": {"error": f"py-spy is not installed at {PYSPY}"}}
    _, driver_cpus = environment.cpu_split(args.pin)
    wanted = {
        ("rest-h1", "modelwire"),
        ("rest-h1", "modelwire-nobatch"),
        ("rest-h1", "modelwire-sklearn-nobatch"),
        ("grpc", "modelwire"),
        ("grpc", "modelwire-nobatch"),
        ("rest-h1", "fastapi"),
        ("v2-grpc", "mlserver"),
    }
    results: dict[str, dict[str, object]] = {}
    for cell in cells:
        if (cell.protocol, cell.server) not in wanted:
            continue
        name = f"{cell.protocol}-{cell.server}"
        print(f"==> profiling {name} at concurrency 128 for {args.profile:g}s", flush=True)
        load = drivers.Load(args.profile + 2, 128, driver_cpus, run_dir / "raw" / f"profile-{name}.txt")
        results[name] = profile(up[cell.server], load, cell.drive, run_dir / f"profile-{name}.collapsed.txt")
    return results
