"""The ASGI WebSocket channel as modelwire uses it, with the serving stack's quirks kept in one place.

granian (the ASGI server, see docs/decisions.md) answers protocol pings, validates frames and UTF-8, and
reassembles fragmented messages itself; this wrapper adds what the adapter needs on top: refusing a
handshake with an HTTP status and the REST error body, sends that report a vanished peer instead of raising
(granian raises ``RuntimeError`` on a closed transport), close with a bounded wait (a peer that stopped
reading must not hold the handler forever), and activity stamps for the keep-alive and idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelwire.errors import ModelwireError
from modelwire.protocols.http.errors import error_response

__all__ = ["Channel", "oversize"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_CLOSE_TIMEOUT_S = 5.0


class Channel:
    """One WebSocket connection's ASGI ``receive``/``send``."""

    def __init__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.open = False
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self.received_at = self.sent_at = self.wrote_at = self._clock()
        self.sending = 0
        self._stopped = False
        self._waiting: Awaitable[Message] | None = None

    @property
    def active_at(self) -> float:
        """When a message last went either way; keep-alive pings count only for ``wrote_at``."""
        return max(self.received_at, self.sent_at)

    @property
    def subprotocols(self) -> list[str]:
        return list(self.scope.get("subprotocols") or ())

    async def connect(self) -> bool:
        """Wait for the handshake request (``websocket.connect``); False if the client left first."""
        try:
            message = await self._receive()
        except (RuntimeError, OSError):
            return False
        return message.get("type") == "websocket.connect"

    async def accept(self, subprotocol: str | None) -> bool:
        try:
            await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        except (RuntimeError, OSError):
            return False
        self.open = True
        self.received_at = self.sent_at = self.wrote_at = self._clock()
        return True

    async def refuse(self, exc: ModelwireError) -> None:
        """Refuse the handshake with the HTTP status and JSON error body REST would answer ``exc`` with.

        Without the ASGI ``websocket.http.response`` extension the only refusal is a plain 403.
        """
        try:
            if "websocket.http.response" not in (self.scope.get("extensions") or {}):
                await self._send({"type": "websocket.close", "code": 1008})
                return
            response = error_response(exc)
            await self._send(
                {
                    "type": "websocket.http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                }
            )
            await self._send({"type": "websocket.http.response.body", "body": bytes(response.body)})
        except (RuntimeError, OSError):
            pass  # the client left before hearing why

    async def receive(self) -> str | bytes | None:
        """The next message's payload; ``None`` once the peer closed, the connection was lost, or
        ``stop_receiving()`` interrupted the wait."""
        if not self.open or self._stopped:
            return None
        try:
            self._waiting = waiting = self._receive()
            message = await waiting
        except (RuntimeError, OSError):
            message = {"type": "websocket.disconnect"}
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopped and task is not None and not task.cancelling():
                return None  # our own interruption, not the task being cancelled
            raise
        finally:
            self._waiting = None
        if message["type"] != "websocket.receive":
            self.open = False
            return None
        self.received_at = self._clock()
        text = message.get("text")
        return text if text is not None else bytes(message.get("bytes") or b"")

    def stop_receiving(self) -> None:
        """Stop reading (shutdown): a pending ``receive()`` returns ``None``, and so do later ones."""
        self._stopped = True
        if self._waiting is not None and hasattr(self._waiting, "cancel"):
            self._waiting.cancel()

    async def send(self, data: str | bytes, *, activity: bool = True) -> bool:
        """Send one message (text for ``str``, binary for ``bytes``); False if the peer is gone."""
        if not self.open:
            return False
        key = "text" if isinstance(data, str) else "bytes"
        self.sending += 1
        try:
            await self._send({"type": "websocket.send", key: data})
        except (RuntimeError, OSError):
            self.open = False
            return False
        finally:
            self.sending -= 1
        self.wrote_at = self._clock()
        if activity:
            self.sent_at = self.wrote_at
        return True

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame (bounded wait: a peer that stopped reading cannot hold the handler)."""
        if not self.open:
            return
        self.open = False
        with contextlib.suppress(RuntimeError, OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})


def oversize(data: str | bytes, limit: int) -> int | None:
    """The payload's size in bytes when it is over ``limit``, else ``None``.

    A text short enough to be under the limit whatever its characters (UTF-8 takes at most 4 bytes
    each) is not encoded to find out.
    """
    if isinstance(data, str):
        if len(data) * 4 <= limit:
            return None
        size = len(data.encode())
    else:
        size = len(data)
    return size if size > limit else None
