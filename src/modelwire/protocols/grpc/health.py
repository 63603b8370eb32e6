"""``grpc.health.v1.Health`` (Check and Watch) for each served service and ``""``, the whole server.

The standard protocol and messages (from grpcio-health-checking), with our own servicer: grpc_health's
asyncio servicer keeps every Watch stream open after a graceful shutdown began, so a single watcher would hold
``server.stop(grace)`` for the whole grace period. Here ``close()`` sends NOT_SERVING and ends every Watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["HealthServicer"]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Serving status per service name; every name starts NOT_SERVING until ``set_serving(True)``."""

    def __init__(self, service_names: Iterable[str]) -> None:
        self._status: dict[str, Any] = dict.fromkeys(["", *service_names], NOT_SERVING)
        self._changed = asyncio.Condition()
        self._closed = False
        self.watchers = 0
        """Open ``Watch`` streams: clients that route by this health (a gateway's channels)."""

    @property
    def serving(self) -> bool:
        return bool(self._status[""] == SERVING)

    async def set_serving(self, serving: bool) -> None:
        """Mark every service SERVING or NOT_SERVING (ignored once closed)."""
        async with self._changed:
            if self._closed:
                return
            for name in self._status:
                self._status[name] = SERVING if serving else NOT_SERVING
            self._changed.notify_all()

    async def close(self) -> None:
        """NOT_SERVING for good, and end every Watch stream (they see NOT_SERVING first)."""
        async with self._changed:
            self._closed = True
            for name in self._status:
                self._status[name] = NOT_SERVING
            self._changed.notify_all()

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        self.watchers += 1
        try:
            async for response in self._watch(request.service):
                yield response
        finally:
            self.watchers -= 1

    async def _watch(self, service: str) -> AsyncIterator[Any]:
        last = None
        while True:
            status = self._status.get(service, SERVICE_UNKNOWN)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            if self._closed:
                return
            async with self._changed:
                while not self._closed and self._status.get(service, SERVICE_UNKNOWN) == last:
                    await self._changed.wait()
