"""The servers a benchmark run starts: modelwire (batching on and off), FastAPI + uvicorn, MLServer.

Each binds 127.0.0.1 on ports picked free at start, runs in its own session (process group) so it and any
children (MLServer's inference worker) are stopped by its PID with SIGTERM, then SIGKILL after a grace period.
Start-up waits are bounded; a server that does not answer in time stops the run with its log's tail.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / ".peers"
TEXT = "I love this product"
PREDICT_BODY = json.dumps({"text": TEXT})
V2_BODY = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [TEXT]}]})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One server process: how to start it, where it listens, how to tell it is ready."""

    key: str
    label: str
    argv: list[str]
    http_port: int
    grpc_port: int | None
    ready_path: str
    ready_body: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, cpus: str | None) -> None:
        argv = ["taskset", "-c", cpus, *self.argv] if cpus else self.argv
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        """Poll with a real prediction (and a TCP connect to the gRPC port) until both answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._rest_ok() and self._grpc_ok():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def _rest_ok(self) -> bool:
        request = urllib.request.Request(
            self.base_url + self.ready_path,
            data=self.ready_body.encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200 and b"positive" in response.read()
        except OSError:
            return False

    def _grpc_ok(self) -> bool:
        if self.grpc_port is None:
            return True
        try:
            socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self, grace: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        # MLServer's worker may outlive its parent briefly; the group id is the parent's PID.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of every live process in the server's group (its workers too)."""
        if self.proc is None:
            return 0.0
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # field 5, pgrp, counted after the ")" of the command
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return total / os.sysconf("SC_CLK_TCK")

    def batch_totals(self) -> tuple[float, float] | None:
        """(batches, items) so far from modelwire's ``modelwire_batch_size`` histogram; None elsewhere."""
        if not self.key.startswith("modelwire"):
            return None
        try:
            with urllib.request.urlopen(self.base_url + "/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        totals = {"count": 0.0, "sum": 0.0}
        for line in text.splitlines():
            for kind in totals:
                if line.startswith(f"modelwire_batch_size_{kind}{{"):
                    totals[kind] += float(line.rsplit(" ", 1)[1])
        return totals["count"], totals["sum"]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def modelwire(run_dir: Path, data_dir: Path, *, batching: bool, runtime: str | None = None) -> Server:
    """``modelwire serve`` on its defaults but for batching on/off and, if given, the sentiment runtime.

    ``runtime="sklearn"`` makes the default model call scikit-learn's ``predict_proba``, exactly what the
    peers run, so those rows compare servers with identical inference code.
    """
    key = "modelwire" + (f"-{runtime}" if runtime else "") + ("" if batching else "-nobatch")
    env = {"MODELWIRE_BATCHING__ENABLED": "true" if batching else "false"}
    if runtime:
        model = {"name": "sentiment", "source": "builtin:sentiment", "options": {"runtime": runtime}}
        env["MODELWIRE_MODELS"] = json.dumps([model])
    http_port, grpc_port = free_port(), free_port()
    argv = [str(ROOT / ".venv/bin/modelwire"), "serve", "--host", "127.0.0.1"]
    argv += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    argv += ["--data-dir", str(data_dir), "--log-level", "warning"]
    return Server(
        key=key,
        label=f"modelwire, {runtime or 'default'} runtime, batching {'on' if batching else 'off'}",
        argv=argv,
        http_port=http_port,
        grpc_port=grpc_port,
        ready_path="/predict",
        ready_body=PREDICT_BODY,
        log=run_dir / f"{key}.log",
        env=env,
    )


def fastapi(run_dir: Path, models_dir: Path) -> Server:
    port = free_port()
    argv = [str(PEERS / "fastapi-venv/bin/python"), str(BENCH / "peer_fastapi.py")]
    argv += ["--port", str(port), "--models-dir", str(models_dir)]
    return Server(
        key="fastapi",
        label="FastAPI + uvicorn",
        argv=argv,
        http_port=port,
        grpc_port=None,
        ready_path="/predict",
        ready_body=PREDICT_BODY,
        log=run_dir / "fastapi.log",
    )


def mlserver(run_dir: Path, version_dir: Path, *, batching: bool, batch_size: int, delay_ms: float) -> Server:
    """MLServer with the custom runtime; settings written fresh for this run (adaptive batching per flag)."""
    key = "mlserver-batch" if batching else "mlserver"
    home = run_dir / key
    (home / "models/sentiment").mkdir(parents=True, exist_ok=True)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "metrics_dir": str(home / "metrics"),
        "environments_dir": str(home / "envs"),
        "load_models_at_startup": True,
    }
    model_settings = {
        "name": "sentiment",
        "implementation": "mlserver_runtime.SentimentRuntime",
        "max_batch_size": batch_size if batching else 0,
        "max_batch_time": delay_ms / 1000 if batching else 0.0,
        "parameters": {"uri": str(version_dir), "version": version_dir.name},
    }
    (home / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (home / "models/sentiment/model-settings.json").write_text(json.dumps(model_settings, indent=2) + "\n")
    return Server(
        key=key,
        label=f"MLServer, adaptive batching {'on' if batching else 'off'}",
        argv=[str(PEERS / "mlserver-venv/bin/mlserver"), "start", str(home)],
        http_port=http_port,
        grpc_port=grpc_port,
        ready_path="/v2/models/sentiment/infer",
        ready_body=V2_BODY,
        log=run_dir / f"{key}.log",
        env={"PYTHONPATH": str(BENCH)},
        cwd=home,
    )
