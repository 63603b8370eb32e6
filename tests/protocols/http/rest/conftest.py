from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.protocols.http.app import create_app
from modelwire.settings import LimitsSettings, Settings
from tests.models import EchoModel, ErrorModel, SlowModel


@pytest.fixture
async def services(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> AsyncIterator[Services]:
    settings = make_settings(
        limits=LimitsSettings(max_body_bytes=64 * 1024, max_text_chars=1000, request_timeout_s=2.0)
    )
    services = make_services(
        EchoModel(), ErrorModel("broken"), SlowModel("slow", delay_s=5.0), settings=settings
    )
    await start_services(services)
    yield services
    await stop_services(services)


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """In-process: the ASGI app called directly (no socket)."""
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://modelwire.test") as client:
        yield client
