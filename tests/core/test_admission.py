"""Per-model admission: a bounded number run, a bounded line waits, the rest are shed at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from modelwire import DeadlineExceededError, OverloadedError, Settings
from modelwire.core.admission import Admission, ModelSlots
from modelwire.core.dataplane import CallContext
from modelwire.settings import BatchingSettings, LimitsSettings
from tests.core.conftest import RunningServices
from tests.core.test_dataplane import GateModel
from tests.models import EchoModel

CTX = CallContext("test")


async def test_slots_run_wait_in_order_and_shed_past_the_line() -> None:
    slots = ModelSlots("m", max_running=1, max_queued=2)
    assert slots.try_enter()
    order: list[str] = []

    async def wait(name: str) -> None:
        await slots.enter()
        order.append(name)

    first, second = asyncio.create_task(wait("a")), asyncio.create_task(wait("b"))
    await asyncio.sleep(0)
    assert len(slots.waiters) == 2
    with pytest.raises(OverloadedError, match="max_queued_per_model") as refused:
        await slots.enter()
    assert refused.value.retry_after_s == 1.0
    assert not slots.try_enter()  # a late arrival cannot overtake the line
    slots.leave()
    await first
    assert order == ["a"]
    assert slots.running == 1
    slots.leave()
    await second
    slots.leave()
    assert (slots.running, len(slots.waiters)) == (0, 0)
    assert order == ["a", "b"]


async def test_a_cancelled_waiter_loses_no_slot() -> None:
    slots = ModelSlots("m", max_running=1, max_queued=4)
    assert slots.try_enter()
    gone = asyncio.create_task(slots.enter())
    handed = asyncio.create_task(slots.enter())
    after = asyncio.create_task(slots.enter())
    await asyncio.sleep(0)
    gone.cancel()  # left the line before its turn
    slots.leave()  # the slot goes to ``handed``...
    handed.cancel()  # ...which is cancelled before it could run: it passes the slot to ``after``
    await asyncio.gather(gone, handed, return_exceptions=True)
    await after
    assert (slots.running, len(slots.waiters)) == (1, 0)
    slots.leave()
    assert slots.running == 0


def test_admission_keeps_one_line_per_model() -> None:
    admission = Admission(max_running=2, max_queued=0)
    assert admission.slots("a") is admission.slots("a")
    assert admission.slots("a").try_enter()
    assert admission.slots("b").try_enter()
    assert admission.snapshot() == {"a": (1, 0), "b": (1, 0)}


async def test_the_dataplane_sheds_a_busy_model_and_serves_the_others(
    running_services: RunningServices, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        batching=BatchingSettings(enabled=False),
        limits=LimitsSettings(max_concurrent_per_model=1, max_queued_per_model=1),
    )
    gate = GateModel()
    async with running_services(gate, EchoModel(), settings=settings) as services:
        dataplane = services.dataplane
        running = asyncio.create_task(dataplane.predict("gate", "wait-1", ctx=CTX))
        await gate.entered.wait()
        queued = asyncio.create_task(dataplane.predict("gate", "wait-2", ctx=CTX))
        while dataplane.admission.snapshot()["gate"] != (1, 1):
            await asyncio.sleep(0.001)
        with pytest.raises(OverloadedError) as shed:
            await dataplane.predict("gate", "third", ctx=CTX)
        assert shed.value.details == {"model": "gate"}
        assert await dataplane.predict("echo", "hi", ctx=CTX) == {"echo": "hi", "length": 2}
        gate.gate.set()
        assert await running == "out:wait-1"
        assert await queued == "out:wait-2"
        assert dataplane.admission.snapshot()["gate"] == (0, 0)


async def test_time_in_line_counts_against_the_deadline(
    running_services: RunningServices, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        batching=BatchingSettings(enabled=False),
        limits=LimitsSettings(max_concurrent_per_model=1, max_queued_per_model=8),
    )
    gate = GateModel()
    async with running_services(gate, settings=settings) as services:
        dataplane = services.dataplane
        first = asyncio.create_task(dataplane.predict("gate", "wait", ctx=CTX))
        await gate.entered.wait()
        hurried = CallContext("test", deadline=time.monotonic() + 0.1)
        with pytest.raises(DeadlineExceededError):
            await dataplane.predict("gate", "second", ctx=hurried)
        assert dataplane.admission.snapshot()["gate"] == (1, 0)  # left the line on its deadline
        gate.gate.set()
        assert await first == "out:wait"
        assert dataplane.admission.snapshot()["gate"] == (0, 0)
