"""SIGTERM while the start has not finished (here: a NATS that refuses every connection, which the consumer
retries for a while) stops the process at once and cleanly, instead of being ignored until the start ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


def test_sigterm_during_the_start_stops_the_process(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "modelwire", "consume", "--queue", url, "--data-dir", str(tmp_path)]
    env["MODELWIRE_MODELS"] = '[{"name": "echo", "source": "tests.models:EchoModel"}]'
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).parents[2]
    )
    lines: list[str] = []
    retrying = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "NATS: " in line and "111" in line:  # the first refused attempt: the start is under way
                retrying.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert retrying.wait(60), "no refused NATS connection logged:\n" + "".join(lines)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(10)
    assert process.stderr is not None
    process.stderr.close()
    output = "".join(lines)
    assert "stopping before the start finished" in output, output
    assert "cannot consume" not in output, "the start ran to its own failure: the signal was not heard"
    assert output.rstrip().endswith("stopped"), output


async def test_the_same_port_for_rest_and_grpc_is_refused_before_anything_binds(tmp_path: Path) -> None:
    from modelwire.app.lifecycle import Server
    from modelwire.errors import ConfigurationError
    from modelwire.settings import Settings

    port = free_port()
    server = Server(Settings(host="127.0.0.1", http_port=port, grpc_port=port, data_dir=tmp_path))
    with pytest.raises(ConfigurationError, match="must differ"):
        await server.start()
