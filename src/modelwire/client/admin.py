"""Model management from the Python client: the same calls over REST (``/v1/admin``) and gRPC
(``modelwire.v1.Admin``). Each answers the model's state as REST's ``GET /v1/admin/models/{name}`` shows it.
Every call needs a credential with the ``models:admin`` scope when the server has authentication on."""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import quote

from modelwire.errors import InvalidInputError

__all__ = ["AdminWire", "open_admin_wire"]

_UNSET: Any = object()


class AdminWire(Protocol):
    async def index(self) -> list[dict[str, Any]]: ...
    async def get(self, name: str) -> dict[str, Any]: ...
    async def load(self, name: str, version: str | None) -> dict[str, Any]: ...
    async def unload(self, name: str, version: str | None) -> dict[str, Any]: ...
    async def delete(self, name: str, version: str) -> dict[str, Any]: ...
    async def set_default(self, name: str, version: str) -> dict[str, Any]: ...
    async def set_traffic(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def rollback(self, name: str) -> dict[str, Any]: ...
    async def memory(self) -> dict[str, Any]: ...
    async def set_pinned(self, name: str, pinned: bool) -> dict[str, Any]: ...


def traffic_body(versions: Any = _UNSET, sticky: Any = _UNSET, shadow: Any = _UNSET) -> dict[str, Any]:
    """``PUT .../traffic``'s body from the arguments given (the others stay as they are)."""
    body: dict[str, Any] = {}
    if versions is not _UNSET:
        body["versions"] = {str(k): v for k, v in (versions or {}).items()}
    if sticky is not _UNSET:
        body["sticky"] = sticky
    if shadow is not _UNSET:
        body["shadow"] = shadow
    if not body:
        raise InvalidInputError("give versions, sticky and/or shadow")
    return body


class _RestAdmin:
    def __init__(self, transport: Any) -> None:
        self._t = transport

    def _path(self, name: str, version: str | None = None) -> str:
        path = f"/v1/admin/models/{quote(name, safe='')}"
        return f"{path}/versions/{quote(version, safe='')}" if version else path

    async def index(self) -> list[dict[str, Any]]:
        return list((await self._t._call("GET", "/v1/admin/models"))["models"])

    async def get(self, name: str) -> dict[str, Any]:
        return dict(await self._t._call("GET", self._path(name)))

    async def load(self, name: str, version: str | None) -> dict[str, Any]:
        return dict(await self._t._call("POST", self._path(name, version) + "/load"))

    async def unload(self, name: str, version: str | None) -> dict[str, Any]:
        return dict(await self._t._call("POST", self._path(name, version) + "/unload"))

    async def delete(self, name: str, version: str) -> dict[str, Any]:
        return dict(await self._t._call("DELETE", self._path(name, version)))

    async def set_default(self, name: str, version: str) -> dict[str, Any]:
        return dict(await self._t._call("PUT", self._path(name) + "/default", {"version": version}))

    async def set_traffic(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._t._call("PUT", self._path(name) + "/traffic", body))

    async def rollback(self, name: str) -> dict[str, Any]:
        return dict(await self._t._call("POST", self._path(name) + "/rollback"))

    async def memory(self) -> dict[str, Any]:
        return dict(await self._t._call("GET", "/v1/admin/memory"))

    async def set_pinned(self, name: str, pinned: bool) -> dict[str, Any]:
        return dict(await self._t._call("PUT", self._path(name) + "/pin", {"pinned": pinned}))


def _state(message: Any) -> dict[str, Any]:
    traffic = message.traffic
    return {
        "name": message.name,
        "default_version": message.default_version,
        "versions": [
            {
                "version": v.version,
                "state": v.state,
                "reason": v.reason,
                "default": v.default,
                "metrics": json.loads(v.metrics_json or "{}"),
                "size_bytes": v.size_bytes if v.HasField("size_bytes") else None,
            }
            for v in message.versions
        ],
        "traffic": {
            "versions": dict(traffic.versions),
            "sticky": traffic.sticky or None,
            "shadow": (
                {"version": traffic.shadow.version, "percent": traffic.shadow.percent}
                if traffic.HasField("shadow")
                else None
            ),
        },
        "history": list(message.history),
        "pinned": message.pinned,
    }


class _GrpcAdmin:
    def __init__(self, transport: Any) -> None:
        from modelwire.protocols.grpc._generated.modelwire.v1 import admin_pb2, admin_pb2_grpc

        self._t = transport
        self._pb = admin_pb2
        self._stub = admin_pb2_grpc.AdminStub(transport._channel)

    async def _rpc(self, method: str, request: Any) -> Any:
        from modelwire.client._grpc import map_grpc_errors

        with map_grpc_errors(self._t._target):
            return await getattr(self._stub, method)(
                request, metadata=self._t._metadata, timeout=self._t._timeout
            )

    async def index(self) -> list[dict[str, Any]]:
        answer = await self._rpc("Index", self._pb.IndexRequest())
        return [
            {"name": v.name, "version": v.version, "state": v.state, "reason": v.reason}
            for v in answer.versions
        ]

    async def get(self, name: str) -> dict[str, Any]:
        return _state(await self._rpc("GetModel", self._pb.GetModelRequest(name=name)))

    async def _version(self, method: str, name: str, version: str | None) -> dict[str, Any]:
        return _state(await self._rpc(method, self._pb.VersionRequest(name=name, version=version or "")))

    async def load(self, name: str, version: str | None) -> dict[str, Any]:
        return await self._version("Load", name, version)

    async def unload(self, name: str, version: str | None) -> dict[str, Any]:
        return await self._version("Unload", name, version)

    async def delete(self, name: str, version: str) -> dict[str, Any]:
        return await self._version("DeleteVersion", name, version)

    async def set_default(self, name: str, version: str) -> dict[str, Any]:
        return await self._version("SetDefault", name, version)

    async def set_traffic(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        request = self._pb.SetTrafficRequest(name=name)
        if "versions" in body:
            request.set_versions = True
            request.versions.update({k: float(v) for k, v in body["versions"].items()})
        if "sticky" in body:
            request.set_sticky = True
            request.sticky = body["sticky"] or ""
        if "shadow" in body:
            request.set_shadow = True
            if body["shadow"]:
                request.shadow.CopyFrom(self._pb.Shadow(**body["shadow"]))
        return _state(await self._rpc("SetTraffic", request))

    async def rollback(self, name: str) -> dict[str, Any]:
        return _state(await self._rpc("Rollback", self._pb.GetModelRequest(name=name)))

    async def memory(self) -> dict[str, Any]:
        answer = await self._rpc("Memory", self._pb.MemoryRequest())
        fields = ("name", "version", "state", "pinned", "inflight", "unloaded_by_budget")
        return {
            "budget_bytes": answer.budget_bytes if answer.HasField("budget_bytes") else None,
            "used_bytes": answer.used_bytes,
            "models": [
                {
                    **{f: getattr(m, f) for f in fields},
                    "size_bytes": m.size_bytes if m.HasField("size_bytes") else None,
                    "last_used": m.last_used if m.HasField("last_used") else None,
                }
                for m in answer.models
            ],
        }

    async def set_pinned(self, name: str, pinned: bool) -> dict[str, Any]:
        return _state(await self._rpc("SetPinned", self._pb.PinRequest(name=name, pinned=pinned)))


def open_admin_wire(transport: object) -> AdminWire:
    """The admin calls over an open transport (sharing its connection)."""
    from modelwire.client._grpc import GrpcTransport

    if isinstance(transport, GrpcTransport):
        return _GrpcAdmin(transport)
    return _RestAdmin(transport)
