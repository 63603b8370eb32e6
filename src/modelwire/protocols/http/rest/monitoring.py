"""REST face of the monitors and alerts: ``/v1/monitoring``, ``/v1/alerts`` and silences. Parse, call the
monitoring façade (``monitoring/service.py``, which decides who may create or delete a silence), render."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from modelwire.protocols.facades import Facades
from modelwire.protocols.http.body import decode_json, encode, read_body

__all__ = ["add_monitoring_routes"]

_TAGS: list[Any] = ["monitoring"]
_OBJECT = {"type": "object"}
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
_SILENCE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["matchers"],
                    "properties": {
                        "matchers": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": "label values an alert must all have: alertname, model, "
                            "version, monitor, severity or a rule's own labels",
                        },
                        "duration_s": {"type": "number", "description": "how long the silence lasts"},
                        "ends_at": {"type": "string", "format": "date-time"},
                        "comment": {"type": "string"},
                    },
                }
            }
        },
    }
}


def _json(value: Any, status: int = 200) -> Response:
    return Response(encode(value), status, media_type="application/json")


def _ok(description: str) -> dict[int | str, Any]:
    return {200: {"description": description, "content": {"application/json": {"schema": _OBJECT}}}}


def add_monitoring_routes(app: FastAPI, services: Facades) -> None:
    """``GET /v1/monitoring``, ``GET /v1/alerts``, ``POST /v1/alerts/silences``,
    ``DELETE /v1/alerts/silences/{silence_id}``."""
    monitoring = services.monitoring
    limit = services.settings.limits.max_body_bytes

    async def current(request: Request) -> Response:
        return _json(monitoring.snapshot())

    async def alerts(request: Request) -> Response:
        return _json(monitoring.alerts())

    async def silence(request: Request) -> Response:
        raw = await read_body(request, limit)
        body = decode_json(raw, dict[str, Any], max_depth=services.settings.limits.max_json_depth)
        return _json(monitoring.add_silence(body), 201)

    async def unsilence(request: Request) -> Response:
        monitoring.remove_silence(request.path_params["silence_id"])
        return Response(status_code=204)

    add = app.add_api_route
    add(
        "/v1/monitoring",
        current,
        methods=["GET"],
        tags=_TAGS,
        summary="Monitors' current values per model version and window, and the reference profiles",
        responses=_ok("Monitors, windows, references and rules"),
    )
    add(
        "/v1/alerts",
        alerts,
        methods=["GET"],
        tags=_TAGS,
        summary="Pending and firing alerts, the recently resolved, the active silences",
        responses=_ok("Alerts and silences"),
    )
    add(
        "/v1/alerts/silences",
        silence,
        methods=["POST"],
        tags=_TAGS,
        status_code=201,
        summary="Silence matching alerts until the silence expires (models:admin)",
        openapi_extra=_SILENCE_BODY,
        responses={
            201: {"description": "The silence", "content": {"application/json": {"schema": _OBJECT}}},
            400: {"description": "No matchers, or a duration that is not positive", **_ERROR},
            403: {"description": "The credential lacks models:admin", **_ERROR},
        },
    )
    add(
        "/v1/alerts/silences/{silence_id}",
        unsilence,
        methods=["DELETE"],
        tags=_TAGS,
        status_code=204,
        summary="Delete a silence (models:admin)",
        responses={
            204: {"description": "Deleted"},
            404: {"description": "No such silence (or it expired)", **_ERROR},
        },
    )
