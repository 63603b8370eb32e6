"""Model management over REST: modelwire's ``/v1/admin/models...`` and the Open Inference Protocol's
repository extension (``/v2/repository/...``, as Triton serves it, so tritonclient's
``get_model_repository_index``/``load_model``/``unload_model`` work). Parse, call ``ModelAdmin``
(``core/admin.py``: it checks ``models:admin`` and publishes the events), render.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from modelwire.core.admin import ModelAdmin
from modelwire.errors import InvalidInputError, UnavailableError
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.body import encode, read_body

__all__ = ["add_admin_routes"]

# The Open Inference repository extension names Triton's states; a failed load is UNAVAILABLE + reason.
_OIP_STATE = {"ready": "READY", "loading": "LOADING", "unloading": "UNLOADING"}


def _json(value: Any, status: int = 200) -> Response:
    return Response(encode(value), status, media_type="application/json")


async def _object(request: Request, limit: int, *, optional: bool = False) -> dict[str, Any]:
    # Open Inference clients (tritonclient) send no Content-Type, as on /v2 inference
    raw = await read_body(request, limit, untyped=optional)
    if not raw.strip():
        if optional:
            return {}
        raise InvalidInputError("the request body is empty; send a JSON object", field="$")
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"the body is not JSON: {exc}", field="$") from None
    if not isinstance(value, dict):
        raise InvalidInputError("the body must be a JSON object", field="$")
    return value


class AdminRoutes:
    """Handlers bound to one ``ModelAdmin``."""

    def __init__(self, services: Facades) -> None:
        self._admin = services.admin
        self.limit = min(services.settings.limits.max_body_bytes, 1 << 20)

    @property
    def admin(self) -> ModelAdmin:
        if self._admin is None:
            raise UnavailableError("this process does not manage models", retry_after_s=None)
        return self._admin

    # -- /v1/admin --------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        ready = request.query_params.get("ready", "").lower() in ("1", "true")
        return _json({"models": self.admin.index(ready_only=ready)})

    async def describe(self, request: Request) -> Response:
        return _json(self.admin.describe(request.path_params["name"]))

    async def load(self, request: Request) -> Response:
        params = request.path_params
        return _json(await self.admin.load(params["name"], params.get("version")))

    async def unload(self, request: Request) -> Response:
        params = request.path_params
        return _json(await self.admin.unload(params["name"], params.get("version")))

    async def delete(self, request: Request) -> Response:
        params = request.path_params
        return _json(await self.admin.delete(params["name"], params["version"]))

    async def set_default(self, request: Request) -> Response:
        body = await _object(request, self.limit)
        version = body.get("version")
        if not isinstance(version, str | int) or isinstance(version, bool) or version == "":
            raise InvalidInputError('send {"version": "2"}', field="$.version")
        return _json(await self.admin.set_default(request.path_params["name"], str(version)))

    async def set_traffic(self, request: Request) -> Response:
        body = await _object(request, self.limit)
        return _json(await self.admin.set_traffic(request.path_params["name"], body))

    async def rollback(self, request: Request) -> Response:
        return _json(await self.admin.rollback(request.path_params["name"]))

    async def memory(self, request: Request) -> Response:
        return _json(self.admin.memory())

    async def set_pinned(self, request: Request) -> Response:
        body = await _object(request, self.limit)
        pinned = body.get("pinned")
        if not isinstance(pinned, bool):
            raise InvalidInputError('send {"pinned": true} or {"pinned": false}', field="$.pinned")
        return _json(await self.admin.set_pinned(request.path_params["name"], pinned))

    # -- /v2/repository (Open Inference Protocol) -------------------------------------------------

    async def repository_index(self, request: Request) -> Response:
        body = await _object(request, self.limit, optional=True)
        rows = self.admin.index(ready_only=bool(body.get("ready", False)))
        return _json(
            [
                {
                    "name": r["name"],
                    "version": r["version"],
                    "state": _OIP_STATE.get(r["state"], "UNAVAILABLE"),
                    "reason": r["reason"],
                }
                for r in rows
            ]
        )

    async def repository_load(self, request: Request) -> Response:
        body = await _object(request, self.limit, optional=True)
        parameters = body.get("parameters") or {}
        version = parameters.get("version") if isinstance(parameters, dict) else None
        await self.admin.load(request.path_params["name"], str(version) if version else None)
        return Response(status_code=200)

    async def repository_unload(self, request: Request) -> Response:
        await _object(request, self.limit, optional=True)
        await self.admin.unload(request.path_params["name"])
        return Response(status_code=200)


_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
_V2_ERROR = {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}


def _docs(
    summary: str, *, body: bool = False, conflict: str | None = None, v2: bool = False
) -> dict[str, Any]:
    """The operation's OpenAPI: a JSON body when it takes one (413/415 follow), 409 when the model's state
    can refuse it (the rest is added for every route by ``http/openapi.py``)."""
    doc: dict[str, Any] = {"summary": summary, "tags": ["open inference protocol"] if v2 else ["admin"]}
    extra: dict[str, Any] = {}
    if body:
        content = {"application/json": {"schema": {"type": "object"}}}
        extra["requestBody"] = {"required": not v2, "content": content}
    if extra:
        doc["openapi_extra"] = extra
    if conflict is not None:
        doc["responses"] = {409: {"description": conflict, "content": _V2_ERROR if v2 else _ERROR}}
    return doc


_LOAD_FAILED = "The version failed to load (its reason), or is unloading"


def add_admin_routes(app: FastAPI, services: Facades) -> None:
    """``/v1/admin/models...`` and ``/v2/repository/...`` (all need ``models:admin``)."""
    routes = AdminRoutes(services)
    add = app.add_api_route
    one = "/v1/admin/models/{name}"
    version = f"{one}/versions/{{version}}"
    add("/v1/admin/models", routes.index, methods=["GET"], **_docs("Every model version and its state"))
    add(one, routes.describe, methods=["GET"], **_docs("A model's versions, default and traffic"))
    add(
        f"{one}/load",
        routes.load,
        methods=["POST"],
        **_docs("Load the default version", conflict=_LOAD_FAILED),
    )
    add(f"{one}/unload", routes.unload, methods=["POST"], **_docs("Unload every version"))
    add(f"{version}/load", routes.load, methods=["POST"], **_docs("Load a version", conflict=_LOAD_FAILED))
    add(f"{version}/unload", routes.unload, methods=["POST"], **_docs("Unload a version"))
    delete_conflict = "Not a repository model, the default version, or a version taking traffic"
    add(
        version,
        routes.delete,
        methods=["DELETE"],
        **_docs("Delete a version's artifact", conflict=delete_conflict),
    )
    add(
        f"{one}/default",
        routes.set_default,
        methods=["PUT"],
        **_docs('Set the default version: {"version": "2"}', body=True, conflict=_LOAD_FAILED),
    )
    add(
        f"{one}/traffic",
        routes.set_traffic,
        methods=["PUT"],
        **_docs("Canary split and shadow", body=True, conflict=_LOAD_FAILED),
    )
    add(
        f"{one}/rollback",
        routes.rollback,
        methods=["POST"],
        **_docs("Back to the previous default", conflict="No previous default to roll back to"),
    )
    add(
        "/v1/admin/memory",
        routes.memory,
        methods=["GET"],
        **_docs("The memory budget: budget, used, each version's size, last use and pin"),
    )
    add(
        f"{one}/pin",
        routes.set_pinned,
        methods=["PUT"],
        **_docs('Pin (never unloaded by the memory budget) or unpin: {"pinned": true}', body=True),
    )
    add(
        "/v2/repository/index",
        routes.repository_index,
        methods=["POST"],
        **_docs("Repository index", body=True, v2=True),
    )
    add(
        "/v2/repository/models/{name}/load",
        routes.repository_load,
        methods=["POST"],
        **_docs("Load a model", body=True, conflict=_LOAD_FAILED, v2=True),
    )
    add(
        "/v2/repository/models/{name}/unload",
        routes.repository_unload,
        methods=["POST"],
        **_docs("Unload a model", body=True, v2=True),
    )
