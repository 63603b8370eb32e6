"""REST face of the feature store: ``GET /v1/features``, ``POST /v1/features/{view}/push`` (JSON rows or
an NDJSON stream) and ``POST /v1/features/get-online-features`` (Feast's shape). Parse, call the
``FeatureService`` (which checks the scopes), render."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelwire.core.nesting import check_json_depth
from modelwire.errors import InvalidInputError, PayloadTooLargeError
from modelwire.features.service import PUSH_CHUNK
from modelwire.protocols.facades import Facades
from modelwire.protocols.http.body import decode_json, discard, discard_budget, encode, read_body
from modelwire.protocols.http.disconnect import ClientDisconnectedError
from modelwire.protocols.http.openapi import body, responses
from modelwire.protocols.http.rest.feature_schemas import (
    FeatureViewList,
    OnlineFeaturesRequest,
    OnlineFeaturesResponse,
    PushRequest,
    PushResponse,
)

__all__ = ["FeatureRoutes", "add_feature_routes"]

_JSON = ("application/json",)
_NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-seq")


def _json(value: Any) -> Response:
    return Response(encode(value), media_type="application/json")


class FeatureRoutes:
    """Handlers bound to one ``Facades``."""

    def __init__(self, services: Facades) -> None:
        self.features = services.features
        self.limit = services.settings.limits.max_body_bytes
        self.max_depth = services.settings.limits.max_json_depth

    async def list_views(self, request: Request) -> Response:
        return _json({"feature_views": self.features.list_views()})

    async def get_online(self, request: Request) -> Response:
        raw = await read_body(request, self.limit, media_types=_JSON)
        asked = decode_json(raw, OnlineFeaturesRequest, max_depth=self.max_depth)
        answer = await self.features.get_online(
            asked.features, asked.entities, full_feature_names=asked.full_feature_names
        )
        return _json(answer.to_dict())

    async def push(self, request: Request) -> Response:
        view = request.path_params["view"]
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media in _NDJSON:
            try:
                result = await self.features.push(view, self._lines(request), where="$")
            except BaseException:
                await discard(request.stream(), discard_budget(request, self.limit))
                raise
        else:
            raw = await read_body(request, self.limit, media_types=(*_JSON, *_NDJSON))
            rows = decode_json(raw, PushRequest, max_depth=self.max_depth).rows
            result = await self.features.push(view, rows)
        return _json({"view": view, "applied": result.applied, "skipped": result.skipped})

    async def _lines(self, request: Request) -> AsyncIterator[Sequence[Any]]:
        """The NDJSON body's rows, ``PUSH_CHUNK`` at a time; each line at most ``max_body_bytes``."""
        pending = b""
        rows: list[Any] = []
        index = 0
        try:
            async for chunk in request.stream():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > self.limit:
                    raise PayloadTooLargeError(f"line {index + 1} is over the limit of {self.limit} bytes")
                for line in lines:
                    if line.strip():
                        rows.append(self._decode(line, index))
                        index += 1
                if len(rows) >= PUSH_CHUNK:
                    yield rows
                    rows = []
        except ClientDisconnect:  # the rows of whole chunks before it are written
            raise ClientDisconnectedError from None
        if pending.strip():
            rows.append(self._decode(pending, index))
        if rows:
            yield rows

    def _decode(self, line: bytes, index: int) -> Any:
        try:
            value = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise InvalidInputError(f"line {index + 1} is not JSON: {exc}", field=f"$[{index}]") from None
        check_json_depth(line, self.max_depth)
        return value


def add_feature_routes(app: FastAPI, services: Facades) -> None:
    """``/v1/features`` (list), ``/v1/features/{view}/push``, ``/v1/features/get-online-features``."""
    routes = FeatureRoutes(services)
    tags: list[Any] = ["features"]
    push_body = body(PushRequest)
    push_body["requestBody"]["content"]["application/x-ndjson"] = {
        "schema": {"type": "string", "description": "one row (a JSON object) per line, streamed"}
    }
    add = app.add_api_route
    add(
        "/v1/features",
        routes.list_views,
        methods=["GET"],
        tags=tags,
        summary="List the feature views (features:read)",
        responses={200: responses(FeatureViewList)[200]},
    )
    add(
        "/v1/features/get-online-features",
        routes.get_online,
        methods=["POST"],
        tags=tags,
        summary="Read features of many entities, in Feast's column-wise shape (features:read)",
        openapi_extra=body(OnlineFeaturesRequest),
        responses={200: responses(OnlineFeaturesResponse)[200]},
    )
    add(
        "/v1/features/{view}/push",
        routes.push,
        methods=["POST"],
        tags=tags,
        summary="Write rows of a view: JSON {rows: [...]} or an NDJSON stream (features:write)",
        openapi_extra=push_body,
        responses={200: responses(PushResponse)[200]},
    )
