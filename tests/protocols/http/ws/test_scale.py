"""1,000 concurrent WebSocket connections to a real ``modelwire`` process, each answered; its RSS measured.

The server runs in its own process so that its memory is measured alone (the clients live in the test
process). The numbers are printed (``pytest -s``) and recorded as test properties; the bound asserted on
the growth is deliberately generous: a leak or a per-connection buffer of megabytes trips it, noise does not.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[4]
CONNECTIONS = 1000
SERVE = "from modelwire.app.main import run; from modelwire.settings import Settings; run(Settings())"


@pytest.fixture
def server_process(data_dir: Path, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``(pid, http_port)`` of a server started as a user would; killed by its PID at the end."""
    config = tmp_path / "modelwire.toml"
    config.write_text(f'data_dir = "{data_dir}"\nhttp_port = 0\ngrpc_port = 0\nlog_level = "info"\n')
    env = {**os.environ, "MODELWIRE_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    port = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not port:
        line = process.stderr.readline()
        if not line:
            break
        if match := re.search(r"REST http://127\.0\.0\.1:(\d+)", line):
            port = int(match.group(1))
    try:
        assert port, "the server did not report its port"
        yield process.pid, port
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stderr.close()


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match
    return int(match.group(1)) / 1024


async def predict(ws: ClientConnection, request_id: int) -> str:
    await ws.send(
        json.dumps({"id": request_id, "op": "predict", "text": f"I love this product {request_id}"})
    )
    reply = json.loads(await ws.recv())
    assert reply["id"] == request_id
    return str(reply["sentiment"])


@pytest.mark.slow
async def test_a_thousand_connections_are_each_answered(
    server_process: tuple[int, int], record_property: Callable[[str, object], None]
) -> None:
    pid, port = server_process
    url = f"ws://127.0.0.1:{port}/v1/ws"
    async with connect(url) as warm:
        assert await predict(warm, -1) == "positive"
    idle = rss_mib(pid)
    sockets: list[ClientConnection] = []
    try:
        async with asyncio.timeout(180):
            for start in range(0, CONNECTIONS, 100):  # connect in waves: the backlog is finite
                sockets += await asyncio.gather(*(connect(url) for _ in range(start, start + 100)))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                metrics = (await http.get("/metrics")).text
            assert f'modelwire_open_connections{{protocol="ws"}} {CONNECTIONS}.0' in metrics
            opened = rss_mib(pid)
            # Every connection asks at once, and every one is answered with its own id.
            answers = await asyncio.gather(*(predict(ws, i) for i, ws in enumerate(sockets)))
            assert answers == ["positive"] * CONNECTIONS
            loaded = rss_mib(pid)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    per_connection_kib = (loaded - idle) * 1024 / CONNECTIONS
    print(
        f"\nserver RSS: {idle:.1f} MiB idle, {opened:.1f} MiB with {CONNECTIONS} open WebSockets, "
        f"{loaded:.1f} MiB after each answered one prediction ({per_connection_kib:.0f} KiB per connection)"
    )
    record_property("server_rss_idle_mib", round(idle, 1))
    record_property("server_rss_open_mib", round(opened, 1))
    record_property("server_rss_loaded_mib", round(loaded, 1))
    assert loaded - idle < 1024  # generous: 1 MiB per connection would already be a problem
