"""``DataPlane.stream``'s per-stream bound (``max_pending``) and per-request routing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from modelwire import ModelNotFoundError
from modelwire.core.dataplane import CallContext
from tests.core.conftest import RunningServices
from tests.core.test_dataplane import GateModel
from tests.models import EchoModel

CTX = CallContext("test")


async def test_at_max_pending_the_stream_stops_pulling(running_services: RunningServices) -> None:
    gate = GateModel()
    pulled = 0

    async def source() -> AsyncIterator[tuple[Any, ...]]:
        nonlocal pulled
        for i in range(50):
            pulled += 1
            yield i, f"wait-{i}"

    async with running_services(gate) as services:
        stream = services.dataplane.stream("gate", source(), ctx=CTX, max_pending=4)
        first = asyncio.ensure_future(anext(stream))
        await gate.entered.wait()
        for _ in range(20):
            await asyncio.sleep(0)
        assert pulled == 4  # four held by the model; the fifth is not even read
        assert services.dataplane.inflight == 4
        gate.gate.set()
        out = [await first] + [pair async for pair in stream]
    assert sorted(request_id for request_id, _ in out) == list(range(50))
    assert dict(out)[7] == "out:wait-7"


async def test_without_a_bound_everything_is_pulled(running_services: RunningServices) -> None:
    gate = GateModel()
    pulled = 0

    async def source() -> AsyncIterator[tuple[Any, ...]]:
        nonlocal pulled
        for i in range(50):
            pulled += 1
            yield i, f"wait-{i}"

    async with running_services(gate) as services:
        stream = services.dataplane.stream("gate", source(), ctx=CTX)
        first = asyncio.ensure_future(anext(stream))
        await gate.entered.wait()
        for _ in range(20):
            await asyncio.sleep(0)
        assert pulled == 50
        gate.gate.set()
        await first
        await stream.aclose()


async def test_a_request_may_name_its_own_model(running_services: RunningServices) -> None:
    async def source() -> AsyncIterator[tuple[Any, ...]]:
        yield "a", "now"
        yield "b", "hi", "echo", None
        yield "c", "hi", "echo", "1"
        yield "d", "hi", "nope", None

    async with running_services(GateModel(), EchoModel()) as services:
        out = dict([pair async for pair in services.dataplane.stream("gate", source(), ctx=CTX)])
    assert out["a"] == "out:now"
    assert out["b"] == out["c"] == {"echo": "hi", "length": 2}
    assert isinstance(out["d"], ModelNotFoundError)
