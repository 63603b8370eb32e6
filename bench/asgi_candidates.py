"""Which ASGI server carries modelwire's REST app best? Runs the real app (default model, batching on)
under granian (embedded, as modelwire runs it), hypercorn and uvicorn, one at a time, on 127.0.0.1, and
drives each with wrk (HTTP/1.1) and h2load (h2c, where the server speaks it).

    .venv/bin/pip install hypercorn uvicorn   # candidates, not dependencies
    .venv/bin/python bench/asgi_candidates.py --data-dir DIR [--duration 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modelwire.app.lifecycle import start_services

BODY = json.dumps({"text": "I love this product"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(kind: str, port: int, data_dir: str) -> None:
    from modelwire.app.builder import build_services
    from modelwire.protocols.http.app import create_app
    from modelwire.settings import Settings

    services = build_services(Settings(data_dir=Path(data_dir)))

    async def main() -> None:
        await start_services(services)
        app = create_app(services)
        if kind == "granian":
            from granian.constants import HTTPModes, Interfaces
            from granian.server.embed import Server

            await Server(
                app,
                address="127.0.0.1",
                port=port,
                interface=Interfaces.ASGINL,
                http=HTTPModes.auto,
                log_enabled=False,
            ).serve()
        elif kind == "hypercorn":
            from hypercorn.asyncio import serve as hserve
            from hypercorn.config import Config

            config = Config()
            config.bind = [f"127.0.0.1:{port}"]
            config.accesslog = None
            await hserve(app, config)  # type: ignore[arg-type]
        else:
            import uvicorn

            await uvicorn.Server(
                uvicorn.Config(
                    app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
                )
            ).serve()

    asyncio.run(main())


def wrk(port: int, conns: int, duration: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(2, conns)}",
            f"-c{conns}",
            f"-d{duration}s",
            "-s",
            lua.name,
            f"http://127.0.0.1:{port}/predict",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(lua.name)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def h2load(port: int, conns: int, duration: int) -> float | None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as data:
        data.write(BODY)
    out = subprocess.run(
        [
            "h2load",
            "-c",
            str(min(conns, 8)),
            "-m",
            str(max(1, conns // 8)),
            "-D",
            str(duration),
            "-d",
            data.name,
            "-H",
            "content-type: application/json",
            f"http://127.0.0.1:{port}/predict",
        ],
        capture_output=True,
        text=True,
    ).stdout
    os.unlink(data.name)
    match = re.search(r"finished in .*?, ([\d.]+) req/s", out)
    ok = re.search(r"(\d+) succeeded", out)
    return float(match.group(1)) if match and ok and int(ok.group(1)) > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.data_dir)
        return
    rows = []
    for kind in os.environ.get("CANDIDATES", "granian,hypercorn,uvicorn").split(","):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--port", str(port), "--data-dir", args.data_dir]
        )
        try:
            for _ in range(100):
                time.sleep(0.2)
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
            time.sleep(1)
            for conns in (1, 32, 128):
                h1 = statistics.median(wrk(port, conns, args.duration) for _ in range(args.repeats))
                h2s = (
                    [h2load(port, conns, args.duration) for _ in range(args.repeats)]
                    if kind != "uvicorn"
                    else []
                )
                h2 = (
                    statistics.median([v for v in h2s if v is not None])
                    if any(v is not None for v in h2s)
                    else None
                )
                rows.append((kind, conns, h1, h2))
                print(
                    f"{kind:10s} c={conns:<4d} h1={h1:8.0f} req/s  "
                    f"h2={'-' if h2 is None else f'{h2:8.0f}'} req/s",
                    flush=True,
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
