"""The RabbitMQ listener docs/queues.md shows under "Events out" runs, as its own process, against a server
publishing to the default exchange ``modelwire.events``, and prints the job that finished."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from modelwire.app.builder import build_services
from modelwire.app.lifecycle import Server
from modelwire.jobs.manager import JobRequest
from modelwire.settings import Settings
from tests.models import EchoModel
from tests.protocols.queues.conftest import AMQP_URL, _require

DOC = Path(__file__).resolve().parents[2] / "docs" / "queues.md"
HEAD = "# RabbitMQ, aio-pika: wait for the next job to finish"


def listener_code() -> str:
    found = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL) if b.startswith(HEAD)]
    assert len(found) == 1, f"docs/queues.md has no block starting {HEAD!r}"
    return found[0]


async def test_the_docs_listener_prints_the_finished_job(tmp_path: Path) -> None:
    _require(AMQP_URL)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        listener_code(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    settings = Settings(
        host="127.0.0.1",
        data_dir=tmp_path,
        models=[{"name": "echo", "source": "tests.models:EchoModel"}],
        event_sinks=[{"url": AMQP_URL}],  # the default names: exchange modelwire.events
    )
    server = Server(
        settings, services=build_services(settings, models=[EchoModel("echo")]), rest=False, grpc=False
    )
    try:
        async with asyncio.timeout(60):
            assert (await process.stdout.readline()).decode().strip() == "listening"
            await server.start()
            assert server.services is not None

            async def rows() -> AsyncIterator[list[str]]:
                yield ["a", "bb"]

            job, _ = await server.services.jobs.submit(JobRequest("echo"), rows())
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await server.stop()
    assert process.returncode == 0, out.decode()
    assert out.decode().strip() == f"jobs/{job['id']} job.succeeded {{'done': 2, 'total': 2, 'errors': 0}}"
