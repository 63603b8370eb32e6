"""``modelwire.v1.Admin``: model management over gRPC. Parse, call ``ModelAdmin`` (the same one REST's
``/v1/admin`` calls; it checks ``models:admin`` and publishes the events), render ``ModelState``."""

from __future__ import annotations

import json
from typing import Any

import grpc

from modelwire.core.admin import ModelAdmin
from modelwire.errors import InvalidInputError, UnavailableError
from modelwire.protocols.facades import Facades
from modelwire.protocols.grpc._generated.modelwire.v1 import admin_pb2 as pb
from modelwire.protocols.grpc._generated.modelwire.v1 import admin_pb2_grpc as pb_grpc
from modelwire.protocols.grpc.errors import map_errors

__all__ = ["AdminServicer", "state_from_domain"]

Context = grpc.aio.ServicerContext[Any, Any]


def state_from_domain(state: dict[str, Any]) -> Any:
    traffic = state["traffic"]
    shadow = traffic.get("shadow")
    return pb.ModelState(
        name=state["name"],
        default_version=state["default_version"],
        versions=[
            pb.VersionState(
                version=v["version"],
                state=v["state"],
                reason=v["reason"],
                default=v["default"],
                metrics_json=json.dumps(v["metrics"]),
                size_bytes=v.get("size_bytes"),
            )
            for v in state["versions"]
        ],
        traffic=pb.Traffic(
            versions=traffic["versions"],
            sticky=traffic.get("sticky") or "",
            shadow=pb.Shadow(**shadow) if shadow else None,
        ),
        history=state["history"],
        pinned=state["pinned"],
    )


def _name(request: Any) -> str:
    if not request.name:
        raise InvalidInputError("name the model: name", field="name")
    return str(request.name)


class AdminServicer(pb_grpc.AdminServicer):  # type: ignore[misc]
    """Every call goes to ``services.admin``; errors become statuses through ``errors.map_errors``."""

    def __init__(self, services: Facades) -> None:
        self._admin_or_none = services.admin

    @property
    def _admin(self) -> ModelAdmin:
        if self._admin_or_none is None:
            raise UnavailableError("this process does not manage models", retry_after_s=None)
        return self._admin_or_none

    @map_errors
    async def Index(self, request: Any, context: Context) -> Any:
        rows = self._admin.index(ready_only=request.ready)
        return pb.IndexResponse(versions=[pb.VersionIndex(**row) for row in rows])

    @map_errors
    async def GetModel(self, request: Any, context: Context) -> Any:
        return state_from_domain(self._admin.describe(_name(request)))

    @map_errors
    async def Load(self, request: Any, context: Context) -> Any:
        return state_from_domain(await self._admin.load(_name(request), request.version or None))

    @map_errors
    async def Unload(self, request: Any, context: Context) -> Any:
        return state_from_domain(await self._admin.unload(_name(request), request.version or None))

    @map_errors
    async def DeleteVersion(self, request: Any, context: Context) -> Any:
        if not request.version:
            raise InvalidInputError("name the version to delete: version", field="version")
        return state_from_domain(await self._admin.delete(_name(request), request.version))

    @map_errors
    async def SetDefault(self, request: Any, context: Context) -> Any:
        if not request.version:
            raise InvalidInputError("name the version: version", field="version")
        return state_from_domain(await self._admin.set_default(_name(request), request.version))

    @map_errors
    async def SetTraffic(self, request: Any, context: Context) -> Any:
        body: dict[str, Any] = {}
        if request.set_versions:
            body["versions"] = dict(request.versions)
        if request.set_sticky:
            body["sticky"] = request.sticky or None
        if request.set_shadow:
            has = request.HasField("shadow")
            body["shadow"] = (
                {"version": request.shadow.version, "percent": request.shadow.percent} if has else None
            )
        if not body:
            raise InvalidInputError("set at least one of versions, sticky, shadow", field="set_versions")
        return state_from_domain(await self._admin.set_traffic(_name(request), body))

    @map_errors
    async def Rollback(self, request: Any, context: Context) -> Any:
        return state_from_domain(await self._admin.rollback(_name(request)))

    @map_errors
    async def Memory(self, request: Any, context: Context) -> Any:
        state = self._admin.memory()
        return pb.MemoryState(
            budget_bytes=state["budget_bytes"],
            used_bytes=state["used_bytes"],
            models=[pb.ModelMemory(**row) for row in state["models"]],
        )

    @map_errors
    async def SetPinned(self, request: Any, context: Context) -> Any:
        return state_from_domain(await self._admin.set_pinned(_name(request), request.pinned))
