"""``serve --workers N``: N ``serve`` processes sharing the ports with SO_REUSEPORT, supervised here.

The parent probes and holds both ports, trains the default model once if needed (under the repository's
lock, so concurrent starts train once), then spawns N workers (spawn start method), each with its own model
copy, batcher and listeners; the kernel spreads connections. The parent forwards SIGTERM/SIGINT and SIGHUP
(each worker reloads its own TLS listeners) and waits. Prometheus metrics use the client's multiprocess
mode so ``/metrics`` on any worker shows the sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

from modelwire.app.listeners import check_port, reserve
from modelwire.app.roles import serve
from modelwire.app.tracing import traced
from modelwire.observability.logs import configure_logging
from modelwire.settings import Settings

__all__ = ["run_workers"]

logger = logging.getLogger("modelwire.server")


def _worker_main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    with traced(settings, "modelwire"), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, shared_ports=True))


def run_workers(settings: Settings) -> None:
    """Serve with ``settings.workers`` processes until SIGTERM/SIGINT."""
    from modelwire.console import training_progress
    from modelwire.model.registry import build_models

    http_port = check_port(settings.host, settings.http_port, "http")
    grpc_port = check_port(settings.host, settings.grpc_port, "grpc")
    held = [reserve(settings.host, http_port), reserve(settings.host, grpc_port)]
    with training_progress() as progress:
        build_models(settings, progress=progress)  # train once here, not in every worker
    settings = settings.model_copy(update={"http_port": http_port, "grpc_port": grpc_port})
    metrics_dir = tempfile.mkdtemp(prefix="modelwire-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_main, args=(settings,), name=f"modelwire-worker-{i}")
        for i in range(settings.workers)
    ]
    for process in workers:
        process.start()
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = stopping or signum in (signal.SIGTERM, signal.SIGINT)
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    logger.info("started %d workers on REST :%d and gRPC :%d", len(workers), http_port, grpc_port)
    try:
        for process in workers:
            process.join()
    finally:
        for sock in held:
            sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = [p for p in workers if p.exitcode not in (0, None)]
    if failed and not stopping:
        sys.exit(1)
