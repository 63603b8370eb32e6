"""Real ``modelwire`` processes on loopback for the gateway tests: model services, gateways, workers.

Each process is ``python -m modelwire ...`` in its own session, with its log in a file the tests read (the
ready line names the ports it picked), stopped by its PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_READY = r"modelwire ready: gRPC 127\.0\.0\.1:(\d+) \(REST off\)"
GATEWAY_READY = r"modelwire ready: REST http://127\.0\.0\.1:(\d+)  gRPC 127\.0\.0\.1:(\d+)"


class Process:
    """``python -m modelwire ARGS`` with its output in ``log``."""

    def __init__(self, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELWIRE_")}
        clean.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **(env or {})})
        self.log = log
        self.args = args
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelwire", *args],
                cwd=ROOT,
                env=clean,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.text()):
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the log (exit {self.proc.poll()}):\n{self.text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"pid {self.pid} ignored SIGTERM:\n{self.text()[-3000:]}") from None


@dataclass
class Processes:
    """Every process a test started; all still running are killed at the end (by PID)."""

    root: Path
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        process = Process(self.root / f"{name}.log", *args, env=env)
        self.started.append(process)
        return process

    def model_service(self, name: str, models: list[dict[str, Any]], port: int = 0) -> Process:
        return self.start(
            name,
            "model-service",
            "--host",
            "127.0.0.1",
            "--grpc-port",
            str(port),
            "--data-dir",
            str(self.root / name),
            env={"MODELWIRE_MODELS": json.dumps(models)},
        )

    def gateway(
        self, name: str, upstreams: list[int], *extra: str, env: dict[str, str] | None = None
    ) -> Process:
        return self.start(
            name,
            "gateway",
            "--upstream",
            ",".join(f"127.0.0.1:{port}" for port in upstreams),
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--data-dir",
            str(self.root / name),
            "--discovery-interval",
            "0.5",
            *extra,
            env=env,
        )

    def close(self) -> None:
        for process in self.started:
            if process.proc.poll() is None:
                process.kill()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    running.close()


def service_port(process: Process) -> int:
    return int(process.wait_for(SERVICE_READY).group(1))


def gateway_port(process: Process) -> int:
    return int(process.wait_for(GATEWAY_READY).group(1))


def wait_ready(base_url: str, timeout: float = 30) -> None:
    """Until ``/v2/health/ready`` answers 200 (every model has a SERVING model service)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{base_url}/v2/health/ready", timeout=2)
            if last.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base_url} not ready: {last.text if last is not None else 'no answer'}")
