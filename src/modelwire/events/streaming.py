"""What every push adapter (SSE, gRPC ``Events``, WebSocket) does around a subscription, done alike.

- ``parse_event_id``: a client's last event id (an HTTP header, a query parameter, a protobuf string) to the
  bus's integer id; anything that is not one becomes an id the bus answers with a reset, not an error, so
  a browser's automatic reconnect never turns into a permanent failure.
- ``close_when``: end a subscription when the server starts shutting down (``Services.closing``), so a
  stream drains what is queued and finishes instead of holding the listener's drain open.
- ``RenderCache``: render each event once per wire format, however many subscribers receive it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from modelwire.events.bus import Event, Subscription

__all__ = ["FOREIGN_ID", "RESET_REASON", "RenderCache", "close_when", "parse_event_id"]

FOREIGN_ID = -1
"""What ``parse_event_id`` returns for a value that is no event id: older than any bus, so a reset."""

RESET_REASON = (
    "the events after last_event_id are no longer kept (or the id is not from this run of the server); "
    "re-read the current state, then follow the events from here"
)
"""The ``reason`` of the ``reset`` event every adapter sends first when ``Subscription.reset`` is set."""

T = TypeVar("T")


def parse_event_id(value: str | None) -> int | None:
    """``None`` for no value (a fresh subscription), the id for digits, ``FOREIGN_ID`` for anything else."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 20:
        return int(text)
    return FOREIGN_ID


def close_when(sub: Subscription, signal: asyncio.Event) -> asyncio.Task[None]:
    """Close ``sub`` once ``signal`` is set. Cancel the returned task when the stream ends first."""

    async def wait() -> None:
        await signal.wait()
        sub.close()

    return asyncio.create_task(wait(), name="close-subscription-at-shutdown")


class RenderCache(Generic[T]):
    """Memoise ``render(event)`` by event id for the last ``size`` events.

    A fan-out to a thousand subscribers then encodes each event once, not a thousand times:

    >>> to_bytes = RenderCache(lambda event: json.dumps(event.to_dict()).encode())    # doctest: +SKIP
    """

    def __init__(self, render: Callable[[Event], T], size: int = 256) -> None:
        self._render = render
        self._size = size
        self._done: dict[int, T] = {}

    def __call__(self, event: Event) -> T:
        try:
            return self._done[event.id]
        except KeyError:
            pass
        rendered = self._done[event.id] = self._render(event)
        if len(self._done) > self._size:
            del self._done[next(iter(self._done))]  # dicts keep insertion order: the oldest goes
        return rendered
