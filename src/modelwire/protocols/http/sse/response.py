"""``EventStreamResponse``: an ASGI ``text/event-stream`` response that notices a client leaving at once.

The body comes from an async iterator of already-encoded chunks. Two tasks run side by side: the writer
sends each chunk (awaiting the server's backpressure), and a watcher reads the ASGI receive channel until
``http.disconnect``. Whichever ends first ends the other, and the iterator is closed in either case, so a
subscription or a batch of predictions is released the moment the client goes (not at the next write:
granian, like most ASGI servers, accepts writes to a closed connection silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from modelwire.observability.metrics import Metrics

__all__ = ["SEND_TIMEOUT_S", "EventStreamResponse"]

logger = logging.getLogger("modelwire.sse")

SEND_TIMEOUT_S = 60.0
"""A client that has read nothing for this long while data waits is cut off (EventSource reconnects)."""

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStreamResponse(StreamingResponse):
    """Streams ``chunks`` as ``text/event-stream``, counted as one open ``sse`` connection while it lasts."""

    media_type = "text/event-stream"

    def __init__(
        self, chunks: AsyncIterator[bytes], metrics: Metrics, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(chunks, headers={**_HEADERS, **(headers or {})}, media_type=self.media_type)
        self._chunks = chunks
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = list(self.raw_headers)
        if scope.get("http_version") in ("1.0", "1.1"):  # a connection-specific header is illegal in HTTP/2
            headers.append((b"connection", b"keep-alive"))
        self._metrics.connection_opened("sse")
        tasks: list[asyncio.Task[None]] = []
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
            tasks.append(asyncio.create_task(self._write(send), name="sse-writer"))
            tasks.append(asyncio.create_task(_until_disconnect(receive), name="sse-disconnect"))
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception):
                    logger.error("an SSE stream failed", exc_info=outcome)
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            self._metrics.connection_closed("sse")

    async def _write(self, send: Send) -> None:
        try:
            async for chunk in self._chunks:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            logger.info("an SSE client read nothing for %.0f s; closing its stream", SEND_TIMEOUT_S)
        except OSError:
            pass  # the connection is gone; the watcher sees the disconnect too


async def _until_disconnect(receive: Receive) -> None:
    with contextlib.suppress(OSError):
        while (await receive())["type"] != "http.disconnect":
            pass
