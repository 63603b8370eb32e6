from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from modelwire.app.lifecycle import start_services, stop_services
from modelwire.app.services import Services
from modelwire.protocols.grpc.server import GrpcListener, start_grpc_server
from modelwire.settings import LimitsSettings, Settings
from tests.models import EchoModel, ErrorModel, SlowModel


@pytest.fixture
async def services(
    make_services: Callable[..., Services], make_settings: Callable[..., Settings]
) -> AsyncIterator[Services]:
    """The real sentiment model plus the echo, broken and slow doubles, loaded."""
    settings = make_settings(limits=LimitsSettings(max_text_chars=1000, request_timeout_s=10))
    services = make_services(
        EchoModel(), ErrorModel("broken"), SlowModel("slow", delay_s=5.0), settings=settings
    )
    await start_services(services)
    yield services
    await stop_services(services)


@pytest.fixture
async def listener(services: Services) -> AsyncIterator[GrpcListener]:
    """A real grpc.aio server on 127.0.0.1, port 0."""
    listener = await start_grpc_server(services, "127.0.0.1", 0)
    yield listener
    await listener.stop(0)


@pytest.fixture
async def channel(listener: GrpcListener) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
        yield channel
