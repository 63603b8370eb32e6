"""``BodyTimeoutMiddleware``: a request body must arrive in time, however slowly its bytes trickle.

granian bounds the time to read a request's head (``limits.header_read_timeout_s``) but not its body: a
client that sends ``Content-Length: 1000000`` and then one byte a minute holds a connection, a task and its
buffers forever. This middleware wraps the ASGI ``receive`` of every HTTP request (HTTP/1.1 and each
HTTP/2 stream) while the body is still coming: the body must be complete within ``timeout_s`` of the
request's start, plus another ``timeout_s`` for each full ``bytes_per_timeout`` received (so a large job
upload arriving at a steady pace is not cut, while a trickle is: the pace it must keep is at least
``bytes_per_timeout / timeout_s``). Time the application spends between reads does not matter: the clock
only runs while it waits for the client.

Cost. One timer per read would be ~10 µs a request (``asyncio.timeout``): instead each read registers its
task and deadline in a dict, and one timer, pending only while reads are waiting, fires every ``tick_s`` (a
quarter of the timeout, at most 1 s) and cancels the reads past their deadline. A deadline is
so kept to within ``tick_s``.

When time runs out, the application's ``receive`` returns ``http.disconnect`` (it unwinds exactly as for a
client that went away: an upload is aborted, nothing is stored), whatever it still sends is dropped, and,
unless a response had started, the client gets ``408 Request Timeout`` with ``Connection: close`` and the
JSON error (code ``DEADLINE_EXCEEDED``). Once the body is complete, ``receive`` is not timed any more (a
streaming response waits on it for the disconnect).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelwire.errors import ErrorCode

__all__ = ["BodyTimeoutMiddleware"]


class BodyTimeoutMiddleware:
    """Answers 408 to an HTTP request whose body does not arrive in time (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, timeout_s: float, bytes_per_timeout: int) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.bytes_per_timeout = max(1, bytes_per_timeout)
        self.reads = _Reads(min(1.0, timeout_s / 4))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _BodyClock(self, receive, send)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.timed_out:
                raise
        if body.timed_out and not body.started:
            await send(
                {
                    "type": "http.response.start",
                    "status": 408,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body.error)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body.error})


class _BodyClock:
    __slots__ = ("_guard", "_receive", "_send", "_start", "complete", "received", "started", "timed_out")

    def __init__(self, guard: BodyTimeoutMiddleware, receive: Receive, send: Send) -> None:
        self._guard = guard
        self._receive = receive
        self._send = send
        self._start = asyncio.get_running_loop().time()
        self.received = 0
        self.complete = False
        self.timed_out = False
        self.started = False

    async def receive(self) -> Message:
        if self.timed_out:
            return {"type": "http.disconnect"}
        if self.complete:
            return await self._receive()
        guard = self._guard
        deadline = self._start + guard.timeout_s * (1 + self.received // guard.bytes_per_timeout)
        task = asyncio.current_task()
        assert task is not None
        guard.reads.watch(task, deadline)
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if not guard.reads.expired(task):
                raise
            self.timed_out = True
            return {"type": "http.disconnect"}
        finally:
            guard.reads.unwatch(task)
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        else:
            self.complete = True
        return message

    async def send(self, message: Message) -> None:
        if self.timed_out:
            return  # the application answers a client it was told is gone: nobody would read it
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    @property
    def error(self) -> bytes:
        guard = self._guard
        message = (
            f"the request body did not arrive in time: {self.received} bytes in {guard.timeout_s:g} s "
            f"(limits.body_read_timeout_s; each further {guard.bytes_per_timeout} bytes earn as long again)"
        )
        body: dict[str, Any] = {"error": {"code": ErrorCode.DEADLINE_EXCEEDED.value, "message": message}}
        return msgspec.json.encode(body)


class _Reads:
    """The body reads waiting now, by task, and the one timer that cancels those past their deadline."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._waiting: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any], deadline: float) -> None:
        self._waiting[task] = deadline
        if self._timer is None:
            self._timer = task.get_loop().call_later(self.tick_s, self._check, task.get_loop())

    def unwatch(self, task: asyncio.Task[Any]) -> None:
        self._waiting.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled here (and then takes the cancellation back)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for task, deadline in list(self._waiting.items()):
            if deadline <= now:
                del self._waiting[task]
                self._expired.add(task)
                task.cancel()
        if self._waiting:
            self._timer = loop.call_later(self.tick_s, self._check, loop)
