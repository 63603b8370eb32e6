"""A real modelwire ``Server`` on ephemeral ports, run on its own event loop in a background thread.

A thread (not the test's loop) so that blocking callers — the sync ``Client``, typer's ``CliRunner`` —
can talk to it from the test itself. ``ServeModule`` (the ``serve_module`` fixture of ``tests/conftest.py``)
starts such servers once for a test module and stops them when the module ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import shutil
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from modelwire.app.builder import build_services
from modelwire.app.components import FeatureIngestion, QueueConsumers
from modelwire.app.lifecycle import Server
from modelwire.model.base import Model
from modelwire.model.registry import build_models
from modelwire.settings import Settings

T = TypeVar("T")


class ThreadedServer:
    """``start()`` returns once both listeners are bound; ``http_url``/``grpc_url`` point at them."""

    def __init__(self, settings: Settings, *extra: Model) -> None:
        self.settings = settings
        self._extra = extra
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-server", daemon=True)
        self.server: Server | None = None

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 120) -> T:
        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)

    def start(self) -> ThreadedServer:
        self._thread.start()

        async def start() -> Server:
            services = build_services(self.settings, models=build_models(self.settings) + list(self._extra))
            queues: list[Any] = [QueueConsumers(self.settings)] if self.settings.queues else []  # as `serve`
            if FeatureIngestion.wanted(self.settings):
                queues.append(FeatureIngestion(self.settings))
            server = Server(self.settings, services=services, components=queues)
            await server.start()
            return server

        self.server = self._call(start)
        return self

    def stop(self) -> None:
        """Stop the server and its thread; again is a no-op (a test may stop it to watch the shutdown)."""
        if self._loop.is_closed():
            return
        try:
            if self.server is not None:
                try:
                    self._call(self.server.stop)
                except TimeoutError:
                    dump_stuck(self._loop)
                    raise
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    @property
    def http_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.http_port}"

    @property
    def grpc_url(self) -> str:
        assert self.server is not None
        return f"grpc://127.0.0.1:{self.server.grpc_port}"


def dump_stuck(loop: asyncio.AbstractEventLoop) -> None:
    """What a stop that ran out of time waits on: every task of ``loop`` and every thread, on stderr."""
    print("\n--- the server did not stop in time; its tasks and the process's threads ---", file=sys.stderr)
    for task in asyncio.all_tasks(loop):
        task.print_stack(limit=12, file=sys.stderr)
    with contextlib.suppress(OSError, ValueError):  # a stderr without a file descriptor
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


class ServeModule:
    """Real servers for one test module (``serve_module``), each on its own data dir; all stopped at its end.

    ``serve_module(*models, **settings)`` starts one on 127.0.0.1 (ephemeral HTTP and gRPC ports) with the
    default models plus ``models``, on a copy of the trained data dir (``trained=False``: an empty one), and
    returns it once both listeners are bound. ``data_dir=`` serves a dir the module prepared first, from
    ``serve_module.data_dir()`` (keys, a JWKS file).
    """

    def __init__(
        self, name: str, trained: Callable[[], Path], tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        self._name = name
        self._trained = trained  # the session's trained data dir, trained when first asked for
        self._tmp = tmp_path_factory
        self.started: list[ThreadedServer] = []

    def data_dir(self, *, trained: bool = True) -> Path:
        """A new data dir of this module's own: a copy of the trained one (sentiment/1), or empty."""
        target = self._tmp.mktemp(self._name) / "data"
        if trained:
            shutil.copytree(self._trained(), target)
        else:
            target.mkdir()
        return target

    def __call__(
        self, *models: Model, data_dir: Path | None = None, trained: bool = True, **settings: Any
    ) -> ThreadedServer:
        values: dict[str, Any] = {"host": "127.0.0.1", "http_port": 0, "grpc_port": 0}
        values["data_dir"] = data_dir if data_dir is not None else self.data_dir(trained=trained)
        values.update(settings)
        server = ThreadedServer(Settings(**values), *models)
        self.started.append(server)  # before start(): a half-started server is still stopped
        return server.start()

    def stop(self) -> None:
        """Stop every server started, the last one first."""
        while self.started:
            self.started.pop().stop()
