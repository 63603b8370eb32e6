"""``kill -HUP`` a real ``modelwire serve``: new connections get the renewed certificate, open ones go on.

What each long-lived connection does across the reload (docs/tls.md): an SSE stream and a gRPC channel
carry on; a WebSocket is closed cleanly (1012 "service restart") just before granian's old worker stops.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import websockets

from modelwire.client._ws import SUBPROTOCOL, _encode
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2, predictor_pb2_grpc
from modelwire.security.certs import CertificateFiles, create_local_ca
from tests.security.tls_files import file_serial, served_serial, stranger_files  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
READY = r"modelwire ready: REST https://127\.0\.0\.1:(\d+)  gRPC \(TLS\) 127\.0\.0\.1:(\d+)"


class ServeProcess:
    """``python -m modelwire serve ARGS`` in its own session, output in ``log``, stopped by its PID."""

    def __init__(self, log: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWIRE_")}
        env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
        env["MODELWIRE_EVENTS__SSE_HEARTBEAT_S"] = "0.2"  # the SSE stream shows it is alive 5 times a second
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelwire", "serve", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
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
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def certs(tmp_path: Path) -> CertificateFiles:
    return create_local_ca(tmp_path / "tls")


@pytest.fixture
def serve(certs: CertificateFiles, data_dir: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(
        tmp_path / "serve.log",
        *("--http-port", "0", "--grpc-port", "0", "--data-dir", str(data_dir)),
        *("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), "--http3"),
    )
    yield process
    process.kill()


async def _wait_until_served(port: int, serial: int, timeout: float = 30) -> None:
    """Until 5 new connections in a row see ``serial`` (granian's old worker has stopped by then)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 5:
        assert time.monotonic() < deadline, f"port {port} still shows another certificate"
        streak = streak + 1 if await asyncio.to_thread(served_serial, port) == serial else 0
        await asyncio.sleep(0.1)


async def test_sighup_renews_the_certificate_and_keeps_streams(
    serve: ServeProcess,
    certs: CertificateFiles,
    stranger_files: CertificateFiles,  # noqa: F811
) -> None:
    ready = serve.wait_for(READY)
    rest, grpc_port = int(ready[1]), int(ready[2])
    first = file_serial(certs.server_cert)
    assert await asyncio.to_thread(served_serial, rest) == first
    assert await asyncio.to_thread(served_serial, grpc_port) == first
    context = ssl.create_default_context(cafile=str(certs.ca_cert))

    # Three long-lived connections opened before the reload: SSE, a gRPC channel, a WebSocket.
    lines: list[str] = []
    sse_ended = asyncio.Event()

    async def follow_sse() -> None:
        async with (
            httpx.AsyncClient(verify=context, timeout=60) as http,
            http.stream("GET", f"https://127.0.0.1:{rest}/v1/events", params={"topics": "server"}) as r,
        ):
            async for line in r.aiter_lines():
                lines.append(line)
        sse_ended.set()

    sse = asyncio.create_task(follow_sse())
    credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca_cert.read_bytes())
    channel = grpc.aio.secure_channel(f"127.0.0.1:{grpc_port}", credentials)
    stub = predictor_pb2_grpc.PredictorStub(channel)
    assert (await stub.Predict(predictor_pb2.Input(text="I love it"), timeout=10)).sentiment == "positive"
    ws = await websockets.connect(
        f"wss://127.0.0.1:{rest}/v1/ws",
        ssl=context,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
    )
    await ws.send(_encode({"id": 0, "op": "predict", "text": "great"}))
    assert b"positive" in await asyncio.wait_for(ws.recv(), 10)

    try:
        renewed = create_local_ca(certs.directory)  # same CA, new server certificate, same paths
        second = file_serial(renewed.server_cert)
        assert second != first
        os.kill(serve.proc.pid, signal.SIGHUP)
        serve.wait_for("TLS certificate reloaded")
        await _wait_until_served(rest, second)
        assert await asyncio.to_thread(served_serial, grpc_port) == second

        # The SSE stream opened before the reload is still open and still delivering.
        seen = len(lines)
        for _ in range(100):
            if len(lines) > seen + 4:
                break
            await asyncio.sleep(0.05)
        assert len(lines) > seen + 4, "the SSE stream stopped delivering after the reload"
        assert not sse_ended.is_set()
        # The gRPC channel opened before the reload still answers, on its first connection.
        again = await stub.Predict(predictor_pb2.Input(text="still here?"), timeout=10)
        assert again.sentiment in ("positive", "negative")
        # The WebSocket was closed with a close frame, not cut: the client knows to reconnect.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code in (1012, 1005)

        # A bad pair on the next SIGHUP is refused; the server keeps the current certificate.
        certs.server_key.write_bytes(stranger_files.server_key.read_bytes())
        os.kill(serve.proc.pid, signal.SIGHUP)
        serve.wait_for("TLS reload refused, keeping the current certificate")
        assert await asyncio.to_thread(served_serial, rest) == second
        async with httpx.AsyncClient(verify=context) as http:
            response = await http.get(f"https://127.0.0.1:{rest}/v2/health/ready")
        assert response.status_code == 200
    finally:
        sse.cancel()
        await asyncio.gather(sse, return_exceptions=True)
        await channel.close()
        await ws.close()
    os.kill(serve.proc.pid, signal.SIGTERM)
    assert await asyncio.to_thread(serve.proc.wait, 60) == 0
