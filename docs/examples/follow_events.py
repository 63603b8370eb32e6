"""Follow modelwire's live events over Server-Sent Events, resuming where it left off (httpx + httpx-sse).

    async for event in follow("http://127.0.0.1:8000", ["models", "jobs/*"]):
        print(event["type"], event["data"])

Each event is the server's ``{"id", "topic", "type", "time", "data"}``. When the connection drops, the server
ends the stream (shutdown) or drops this client for falling behind (``event: error``), it reconnects after the
server's ``retry:`` hint and sends the id of the last event it saw as ``Last-Event-ID``, so nothing published
meanwhile is missed. If those events are no longer kept, the server says so first with a reset, yielded as
``{"type": "reset", "data": {"reason": ..., "last_event_id": ...}}``: re-read whatever state you keep.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
from httpx_sse import aconnect_sse


async def follow(
    base_url: str, topics: Iterable[str], *, last_event_id: str | None = None, attempts: int = 5
) -> AsyncIterator[dict[str, Any]]:
    """Yield events on ``topics`` forever; give up after ``attempts`` failed connections in a row."""
    params = {"topics": ",".join(topics)}
    delay, failures = 1.0, 0
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10.0, read=None)) as client:
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                async with aconnect_sse(
                    client, "GET", "/v1/events", params=params, headers=headers
                ) as source:
                    source.response.raise_for_status()
                    failures = 0
                    async for sse in source.aiter_sse():
                        if sse.retry is not None:
                            delay = sse.retry / 1000
                        if not sse.data:
                            continue
                        if sse.event == "error":
                            break  # dropped for falling behind: reconnect, resuming after the last id
                        if sse.event == "reset":
                            yield {"type": "reset", "data": json.loads(sse.data)}
                            continue
                        last_event_id = sse.id or last_event_id
                        yield json.loads(sse.data)
            except httpx.TransportError:
                failures += 1
                if failures >= attempts:
                    raise
            await asyncio.sleep(delay)
