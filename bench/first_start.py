"""A new user's first start, measured: fresh clone → ``scripts/serve`` → the first answered ``POST /predict``.

Clones the repository at a commit into a new folder (so ``.venv`` and the data dir start empty), runs
``scripts/serve`` there on free 127.0.0.1 ports with ``XDG_DATA_HOME`` and ``XDG_CACHE_HOME`` inside the
clone (no model trained earlier is found; pip and uv start with empty caches), posts
``{"text": "I love this product"}`` to ``/predict`` every 0.2 s until one is answered 200, then stops the
server (its process group) and reports: seconds from the command to the end of the install (the stamp file
``scripts/_venv.sh`` writes), to the start and end of training, to the ``modelwire ready`` line and to the
first answer; the ``.venv`` size, its package count and its largest packages (the files each distribution's
``RECORD`` lists). The machine's own pip configuration (indexes, find-links) still applies.

    python bench/first_start.py [--repo .] [--commit HEAD] [--keep DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

LIMIT_S = 900.0
SIZES = r"""
import importlib.metadata as md, json, os, sys
site = sys.argv[1]
out = {}
for dist in md.distributions():
    total = 0
    for f in dist.files or []:
        p = dist.locate_file(f)
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    out[dist.metadata["Name"]] = total
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0]) / 1024


def first_answer(port: int, deadline: float, proc: subprocess.Popen[bytes]) -> tuple[float, str]:
    body = json.dumps({"text": "I love this product"}).encode()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"scripts/serve exited with {proc.returncode} before answering")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict", body, {"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return time.monotonic(), response.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"no answer within {LIMIT_S} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--keep", help="clone into this (new) folder and keep it")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()

    where = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mw-first-start-")) / "clone"
    subprocess.run(["git", "clone", "--quiet", args.repo, str(where)], check=True)
    subprocess.run(["git", "-C", str(where), "checkout", "--quiet", args.commit], check=True)
    commit = subprocess.run(
        ["git", "-C", str(where), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()

    http, grpc = free_port(), free_port()
    # a new user: no model trained, no installer or download cache (pip's, uv's) from earlier runs
    env = {**os.environ, "XDG_DATA_HOME": str(where / ".data"), "XDG_CACHE_HOME": str(where / ".cache")}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if ".venv" not in p)
    marks: dict[str, float] = {}
    log: list[str] = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = before.ru_utime + before.ru_stime
    load_before = os.getloadavg()[0]  # other work on the machine: these are wall-clock numbers
    wall_started = time.time()
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(where / "scripts" / "serve"), "--http-port", str(http), "--grpc-port", str(grpc)],
        cwd=where,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            now = time.monotonic() - started
            log.append(f"{now:7.2f} {line}")
            if "installing modelwire" in line:
                marks.setdefault("install_start", now)
            elif "training one now" in line:
                marks.setdefault("training_start", now)
            elif "trained sentiment version" in line:
                marks.setdefault("training_end", now)
            elif "modelwire ready" in line:
                marks.setdefault("ready", now)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        answered, answer = first_answer(http, started + LIMIT_S, proc)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        reader.join(timeout=5)

    # CPU time of scripts/serve and everything it waited for (venv, uv or pip, training, serving): steadier
    # than wall-clock time on a shared machine
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = children.ru_utime + children.ru_stime - cpu_before
    venv = where / ".venv"
    stamp = next(venv.glob(".modelwire-installed-*"), None)  # written when the install finished
    if stamp is not None:
        marks["install_end"] = stamp.stat().st_mtime - wall_started
    site = next((venv / "lib").glob("python*/site-packages"))
    sizes = json.loads(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", SIZES, str(site)], check=True, capture_output=True, text=True
        ).stdout
    )
    result = {
        "commit": commit,
        "python": sys.version.split()[0],
        "first_answer_s": round(answered - started, 1),
        **{f"{mark}_s": round(at, 1) for mark, at in sorted(marks.items(), key=lambda kv: kv[1])},
        "answer": answer,
        "cpu_s": round(cpu, 1),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "venv_mb": round(du_mb(venv), 1),
        "packages": len(sizes),
        "largest_mb": {
            name: round(size / 2**20, 1) for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:15]
        },
        "clone": str(where),
    }
    print("\n".join(log))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "log": log}, indent=2) + "\n")


if __name__ == "__main__":
    main()
