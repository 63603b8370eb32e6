from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from modelwire import Model, Settings
from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services

RunningServices = Callable[..., AbstractAsyncContextManager[Services]]


@pytest.fixture
def running_services(make_services: Callable[..., Services]) -> RunningServices:
    """``async with running_services(*models, settings=..., default=False) as services``: started, then
    stopped (the default sentiment model only when ``default=True``)."""

    @asynccontextmanager
    async def run(
        *models: Model, settings: Settings | None = None, default: bool = False
    ) -> AsyncIterator[Services]:
        services = make_services(*models, settings=settings, default=default)
        await start_services(services)
        try:
            yield services
        finally:
            await stop_services(services)

    return run
