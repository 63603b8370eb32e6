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

ROOT = Path(__file__).resolve().parents[1]
SERVE = (
    "import sys; from modelwire.server import run; from modelwire.settings import Settings; run(Settings())"
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
