"""``until_disconnected``: slow work is cancelled when the client leaves; fast work never watches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelwire.protocols.http.disconnect import WATCH_AFTER_S, ClientDisconnectedError, until_disconnected


class Channel:
    """An ASGI ``receive`` whose disconnect the test triggers; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def test_fast_work_never_reads_the_channel() -> None:
    channel = Channel()

    async def work() -> str:
        await asyncio.sleep(0)
        return "done"

    assert [await until_disconnected(channel.receive, work()) for _ in range(100)] == ["done"] * 100
    assert channel.calls == 0


async def test_slow_work_is_cancelled_when_the_client_leaves() -> None:
    channel = Channel()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    call = asyncio.create_task(until_disconnected(channel.receive, work()))
    await asyncio.wait_for(started.wait(), 5)
    for _ in range(200):  # the watcher starts within two ticks
        if channel.calls:
            break
        await asyncio.sleep(WATCH_AFTER_S / 2)
    assert channel.calls == 1, "no watcher started for work running past WATCH_AFTER_S"
    channel.gone.set()
    with pytest.raises(ClientDisconnectedError):
        await asyncio.wait_for(call, 5)
    assert cancelled.is_set()


async def test_another_cancellation_passes_through() -> None:
    channel = Channel()
    call = asyncio.create_task(until_disconnected(channel.receive, asyncio.sleep(30)))
    await asyncio.sleep(WATCH_AFTER_S * 3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    channel.gone.set()
    await asyncio.sleep(0)  # the watcher was cancelled with the call: it reads no more
    assert channel.calls == 1
