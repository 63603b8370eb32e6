"""``until_disconnected``: cancel a request's work the moment its client goes away, at almost no cost.

The only way an ASGI app learns that an HTTP client left is to call ``receive()`` once the body is read:
it returns ``http.disconnect`` when the connection closes. Doing that for every request (a watcher task
per request, cancelled when the answer is ready) was the single largest cost of a prediction on the REST
path (issue 12: ~20 % of the server's CPU at concurrency 1, ~9 % at 32): granian's pending ``receive`` and
its cancellation each cross into its Rust runtime.

So watching starts late, and only for work still running then. ``until_disconnected`` registers the
request with one per-loop ``_Watchers`` (a dict insert and removal); a single timer, pending only while
requests are registered, ticks every ``WATCH_AFTER_S`` and starts a watcher task for each request that
was already registered at the previous tick (so has run between one and two ticks). A prediction that
answers within that (nearly all of them) never pays for a watcher; one that waits in a queue or on a slow
model is cancelled within ``2 * WATCH_AFTER_S`` plus the time granian takes to notice the closed socket.
What a disconnect does is unchanged: the work is cancelled (its batch slot freed, ``CANCELLED`` in the
metrics) and ``ClientDisconnectedError`` is raised, which the app answers with 499 (nobody reads it).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

__all__ = ["WATCH_AFTER_S", "ClientDisconnectedError", "until_disconnected"]

T = TypeVar("T")
WATCH_AFTER_S = 0.025

Receive = Callable[[], Awaitable[Any]]


class ClientDisconnectedError(Exception):
    """The client went away before the answer was ready; nothing is sent."""


class _Watch:
    """One request's work: its task, its ``receive``, and the watcher task once one was started."""

    __slots__ = ("gone", "handler", "receive", "tick", "watcher")

    def __init__(self, handler: asyncio.Task[Any], receive: Receive, tick: int) -> None:
        self.handler = handler
        self.receive = receive
        self.tick = tick
        self.gone = False
        self.watcher: asyncio.Task[None] | None = None

    async def watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        self.handler.cancel()


class _Watchers:
    """The requests of one event loop whose work is running, and the one timer that watches the slow ones."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._running: dict[_Watch, None] = {}
        self._tick = 0
        self._timer: asyncio.TimerHandle | None = None
        self._context = contextvars.Context()  # watchers carry no request's trace, deadline or principal

    def add(self, handler: asyncio.Task[Any], receive: Receive) -> _Watch:
        entry = _Watch(handler, receive, self._tick)
        self._running[entry] = None
        if self._timer is None:
            self._timer = self._loop.call_later(WATCH_AFTER_S, self._check, context=self._context)
        return entry

    def remove(self, entry: _Watch) -> None:
        del self._running[entry]
        if entry.watcher is not None:
            entry.watcher.cancel()

    def _check(self) -> None:
        self._timer = None
        tick = self._tick
        self._tick = tick + 1
        for entry in self._running:
            # registered before the previous tick: running for at least WATCH_AFTER_S
            if entry.watcher is None and entry.tick < tick:
                entry.watcher = self._loop.create_task(entry.watch(), context=self._context)
        if self._running:
            self._timer = self._loop.call_later(WATCH_AFTER_S, self._check, context=self._context)


_LOOPS: WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchers] = WeakKeyDictionary()


async def until_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work`` (in the request's own task), cancelling it if the client disconnects meanwhile.

    ``receive`` is the request's ASGI ``receive``, its body already read. Raises
    ``ClientDisconnectedError`` when the client left; any other cancellation passes through unchanged.
    """
    handler = asyncio.current_task()
    assert handler is not None
    loop = handler.get_loop()
    watchers = _LOOPS.get(loop)
    if watchers is None:
        watchers = _LOOPS[loop] = _Watchers(loop)
    entry = watchers.add(handler, receive)
    try:
        return await work
    except asyncio.CancelledError:
        if entry.gone:
            handler.uncancel()
            raise ClientDisconnectedError from None
        raise
    finally:
        watchers.remove(entry)
