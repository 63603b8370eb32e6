"""A real modelwire ``Server`` on ephemeral ports, run on its own event loop in a background thread.

A thread (not the test's loop) so that blocking callers — the sync ``Client``, typer's ``CliRunner`` —
can talk to it from the test itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from modelwire.app.builder import build_services
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
            server = Server(self.settings, services=services)
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
                self._call(self.server.stop)
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
