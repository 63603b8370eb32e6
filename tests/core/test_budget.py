"""The memory budget in process (``core/budget.py``): what it refuses and what it leaves alone. A reload
that finds no room (the rest pinned, or busy) is 503 + Retry-After; a model unloaded by hand is not
loaded again by a call; a reload that fails is 503, never a 500; readiness holds while a default version
is unloaded by the budget. The LRU itself, on a real server: tests/protocols/test_memory_budget.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from modelwire import Model, ModelNotReadyError
from modelwire.core.dataplane import CallContext
from modelwire.errors import UnavailableError
from modelwire.security.principal import reset_principal, use_principal
from tests.core.conftest import RunningServices
from tests.core.test_admin import ADMIN, admin_of

MIB = 1 << 20


class Blob(Model):
    """Holds 4 MiB once loaded. ``release``: its calls wait for it; ``fail_reload``: a second load raises."""

    release: asyncio.Event | None = None

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, "1", **options)
        self.loads = 0

    def load(self) -> None:
        self.loads += 1
        if self.options.get("fail_reload") and self.loads > 1:
            raise RuntimeError("the artifact is gone")
        self.blob = bytearray(4 * MIB)

    async def predict(self, batch: Sequence[Any]) -> list[Any]:
        if self.release is not None:
            await self.release.wait()
        return [{"model": self.name} for _ in batch]


@pytest.fixture
def as_admin() -> Any:
    token = use_principal(ADMIN)
    yield
    reset_principal(token)


def ctx() -> CallContext:
    return CallContext("test")


async def test_no_room_for_a_reload_is_503_and_readiness_holds(
    running_services: RunningServices, make_settings: Any, as_admin: Any
) -> None:
    settings = make_settings(memory_budget="6MiB")
    async with running_services(Blob("x"), Blob("y"), settings=settings) as services:
        admin = admin_of(services)
        memory = admin.memory()
        assert {m["name"]: m["state"] for m in memory["models"]} == {"x": "unavailable", "y": "ready"}
        assert services.dataplane.ready()  # x is unloaded by the budget: the next call loads it
        await admin.set_pinned("y", True)
        with pytest.raises(UnavailableError, match="cannot make room") as refused:
            await services.dataplane.predict("x", "hi", ctx=ctx())
        assert refused.value.retry_after_s == 1.0
        await admin.set_pinned("y", False)
        assert await services.dataplane.predict("x", "hi", ctx=ctx()) == {"model": "x"}
        assert {m["name"]: m["state"] for m in admin.memory()["models"]} == {"x": "ready", "y": "unavailable"}


async def test_a_busy_model_is_not_unloaded(
    running_services: RunningServices, make_settings: Any, as_admin: Any
) -> None:
    busy = Blob("y")
    busy.release = asyncio.Event()
    async with running_services(Blob("x"), busy, settings=make_settings(memory_budget="6MiB")) as services:
        waiting = asyncio.create_task(services.dataplane.predict("y", "hi", ctx=ctx()))
        async with asyncio.timeout(10):
            while services.registry.get("y").inflight == 0:
                await asyncio.sleep(0.001)
        with pytest.raises(UnavailableError, match="pinned or busy"):
            await services.dataplane.predict("x", "hi", ctx=ctx())
        busy.release.set()
        assert await waiting == {"model": "y"}
        assert await services.dataplane.predict("x", "hi", ctx=ctx()) == {"model": "x"}


async def test_unloaded_by_hand_stays_unloaded_and_a_failed_reload_is_503(
    running_services: RunningServices, make_settings: Any, as_admin: Any
) -> None:
    models = (Blob("x", fail_reload=True), Blob("y"), Blob("z"))
    async with running_services(*models, settings=make_settings(memory_budget="9MiB")) as services:
        admin = admin_of(services)
        assert services.registry.get("x", require_ready=False).state == "unavailable"  # the LRU at start
        with pytest.raises(
            ModelNotReadyError, match="failed to load again: RuntimeError: the artifact is gone"
        ):
            await services.dataplane.predict("x", "hi", ctx=ctx())
        await admin.unload("y")
        with pytest.raises(ModelNotReadyError, match="not loaded") as refused:
            await services.dataplane.predict("y", "hi", ctx=ctx())  # not reloaded: unloaded by hand
        assert refused.value.retry_after_s == 1.0
        assert not admin.memory()["models"][1]["unloaded_by_budget"]
