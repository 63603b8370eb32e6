"""What a run ran on: CPUs and how they are split, library versions in each virtualenv, MLServer's state."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from peer_model import latest_version
from servers import PEERS, ROOT

__all__ = ["MLSERVER_BATCH", "cpu_split", "describe", "latest_version", "mlserver_missing"]

MLSERVER_BATCH = (32, 2.0)  # MLServer's adaptive batching instance: max items, max delay in ms

_VERSIONS = "import importlib.metadata as m, sys\nfor n in sys.argv[1:]:\n    print(n, m.version(n))"


def cpu_split(pin: bool) -> tuple[str | None, str | None]:
    """(server CPUs, driver CPUs): one core each on a machine of two or more, else no pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return str(cpus[0]), ",".join(str(c) for c in cpus[1:])


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_quiet(seconds: float, threshold: float = 1.0) -> None:
    """Wait (bounded) until the 1-minute load average is below ``threshold``: others share this machine."""
    deadline = time.monotonic() + seconds
    if seconds and os.getloadavg()[0] >= threshold:
        print(f"==> load average {loadavg()}: waiting up to {seconds:g}s for it to fall below {threshold:g}")
    while time.monotonic() < deadline and os.getloadavg()[0] >= threshold:
        time.sleep(5)


def mlserver_missing() -> str | None:
    """None when the MLServer peer can run; otherwise why not (the installer's last words)."""
    if (PEERS / "mlserver-venv/bin/mlserver").exists():
        return None
    log = PEERS / "mlserver-install.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
    return "MLServer is not installed in bench/.peers/mlserver-venv" + (
        ": " + " / ".join(tail) if tail else ""
    )


def _versions(python: Path, *names: str) -> dict[str, str]:
    if not python.exists():
        return {}
    try:
        out = subprocess.run(
            [str(python), "-c", _VERSIONS, *names], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return {}
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def _modelwire_batching() -> dict[str, object]:
    """modelwire's batching defaults, as the installed code defines them (the benchmark does not set them)."""
    code = "from modelwire.settings import BatchingSettings as B; print(B().model_dump_json())"
    try:
        done = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return dict(json.loads(done.stdout))
    except (subprocess.SubprocessError, OSError, ValueError):
        return {}


def _tool(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "missing"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def _git() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def describe(args: argparse.Namespace, stamp: str, version_dir: Path, mlserver_missing: str | None) -> dict:
    server_cpus, driver_cpus = cpu_split(args.pin)
    return {
        "stamp": stamp,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": args.command,
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "memory_gib": _memory_gib(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg_start": loadavg(),
            "server_cpus": server_cpus,
            "driver_cpus": driver_cpus,
        },
        "settings": {
            "duration_s": args.duration,
            "repeats": args.repeats,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "modelwire_batching": _modelwire_batching(),
            "mlserver_batching": {"max_batch_size": MLSERVER_BATCH[0], "max_delay_ms": MLSERVER_BATCH[1]},
        },
        "model": {"path": str(version_dir.relative_to(ROOT)), "version": version_dir.name},
        "versions": {
            "modelwire": _git(),
            "modelwire-venv": _versions(
                ROOT / ".venv/bin/python", "granian", "grpcio", "scikit-learn", "numpy"
            ),
            "fastapi-venv": _versions(
                PEERS / "fastapi-venv/bin/python", "fastapi", "uvicorn", "uvloop", "httptools"
            ),
            "mlserver-venv": _versions(
                PEERS / "mlserver-venv/bin/python", "mlserver", "uvicorn", "uvloop", "grpcio"
            ),
            "wrk": _tool("wrk", "--version"),
            "h2load": _tool("h2load", "--version"),
        },
        "mlserver_missing": mlserver_missing,
    }
