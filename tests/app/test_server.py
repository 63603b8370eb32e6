"""The composition root as a user runs it: a real process, signals, graceful drain, exit code."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVE = (
    "import sys; from modelwire.app.main import run; from modelwire.settings import Settings; run(Settings())"
)


@pytest.fixture
def server_process(data_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    config = tmp_path / "modelwire.toml"
    config.write_text(
        f"""
data_dir = "{data_dir}"
http_port = 0
grpc_port = 0
log_level = "info"

[limits]
shutdown_grace_s = 10

[[models]]
name = "sentiment"
source = "builtin:sentiment"

[[models]]
name = "slow"
source = "tests.models:SlowModel"
options = {{ delay_s = 1.5 }}
"""
    )
    env = {**os.environ, "MODELWIRE_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    port = 0
    deadline = time.monotonic() + 60
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(r"REST http://127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
            break
    try:
        assert port, "the server did not report its port"
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stderr.close()


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_and_exits_zero(
    server_process: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = server_process
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
        assert client.post("/predict", json={"text": "I love this product"}).json()["sentiment"] == "positive"
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(client.post, "/v1/models/slow/predict", json={"text": "almost done"})
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            response = slow.result(timeout=20)
    assert response.status_code == 200
    assert response.json() == {"echo": "almost done"}
    assert process.wait(timeout=20) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2)


@pytest.mark.slow
def test_workers_share_the_ports_and_stop_together(data_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MODELWIRE_CONFIG", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelwire",
            "serve",
            "--workers",
            "2",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        ports: tuple[int, int] | None = None
        pids: set[str] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(pids) < 2:
            line = process.stderr.readline()
            if not line:
                break
            if match := re.search(r"started 2 workers on REST :(\d+) and gRPC :(\d+)", line):
                ports = (int(match[1]), int(match[2]))
            if match := re.search(r"modelwire ready: .*\(pid (\d+)\)", line):
                pids.add(match[1])
        assert ports is not None, "the parent did not report its ports"
        assert len(pids) == 2, "both workers should report ready"
        http_port, grpc_port = ports
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as client:
            for _ in range(20):  # new connections spread over both workers by the kernel
                with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as fresh:
                    assert fresh.post("/predict", json={"text": "I love this product"}).status_code == 200
            metrics = client.get("/metrics").text
        total = re.search(
            r'modelwire_requests_total\{code="OK",model="sentiment",protocol="rest"\} (\S+)', metrics
        )
        assert total is not None
        assert float(total[1]) == 20.0  # summed over both workers
        import grpc

        from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2, predictor_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            answer = predictor_pb2_grpc.PredictorStub(channel).Predict(
                predictor_pb2.Input(text="awful"), timeout=10
            )
        assert answer.sentiment == "negative"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stderr.close()
