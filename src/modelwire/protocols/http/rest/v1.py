"""The seed's ``POST /predict`` and modelwire's own ``/v1`` routes. Parse, call the data plane, render."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from modelwire.core.dataplane import TRAFFIC_KEY_HEADER, CallContext
from modelwire.errors import InvalidInputError, ModelwireError
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.body import decode_json, encode, read_body
from modelwire.protocols.http.disconnect import until_disconnected
from modelwire.protocols.http.schemas import PredictRequest

__all__ = ["V1Routes"]


def _json(value: Any, status: int = 200, version: str | None = None) -> Response:
    headers = {"Model-Version": version} if version is not None else None
    return Response(encode(value), status, headers=headers, media_type="application/json")


def _item(result: Any) -> Any:
    return {"error": result.to_dict()} if isinstance(result, ModelwireError) else result


class V1Routes:
    """Handlers bound to one ``Facades``."""

    def __init__(self, services: Facades) -> None:
        self.services = services
        self.dataplane = services.dataplane
        self.limit = services.settings.limits.max_body_bytes
        self.max_depth = services.settings.limits.max_json_depth
        self.default_model = services.settings.effective_models()[0].name

    async def predict_default(self, request: Request) -> Response:
        """The seed's endpoint: the default model, ``{"text": ...}`` in, its answer out."""
        return await self._predict(request, self.default_model, None)

    async def predict(self, request: Request) -> Response:
        return await self._predict(request, request.path_params["name"], None)

    async def predict_version(self, request: Request) -> Response:
        return await self._predict(request, request.path_params["name"], request.path_params["version"])

    async def _predict(self, request: Request, name: str, version: str | None) -> Response:
        body = decode_json(await read_body(request, self.limit), PredictRequest, max_depth=self.max_depth)
        given = [
            f for f in ("text", "texts", "instance", "instances") if getattr(body, f) is not msgspec.UNSET
        ]
        if len(given) != 1:
            raise InvalidInputError(
                "send exactly one of 'text', 'texts', 'instance' or 'instances'"
                + (f" (got {', '.join(given)})" if given else ""),
                field="$",
            )
        field = given[0]
        value = getattr(body, field)
        ctx = CallContext("rest", traffic_key=request.headers.get(TRAFFIC_KEY_HEADER))
        if field in ("text", "instance"):
            work = self.dataplane.predict(name, value, version=version, ctx=ctx, path=f"$.{field}")
            return _json(await until_disconnected(request.receive, work), version=ctx.served.version)
        if not value:
            raise InvalidInputError(f"'{field}' must hold at least one item", field=f"$.{field}")
        work = self.dataplane.infer(name, value, version=version, ctx=ctx, path=f"$.{field}")
        results = await until_disconnected(request.receive, work)
        return _json({"predictions": [_item(r) for r in results]}, version=ctx.served.version)

    async def list_models(self, request: Request) -> Response:
        return _json({"models": self.dataplane.list_models()})
