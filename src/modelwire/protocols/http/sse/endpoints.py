"""Where the SSE routes live in the app, and how ``/openapi.json`` describes them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from modelwire.protocols.facades import Facades
from modelwire.protocols.http.openapi import body, responses
from modelwire.protocols.http.schemas import ErrorBody
from modelwire.protocols.http.sse.response import EventStreamResponse
from modelwire.protocols.http.sse.routes import PredictStreamRequest, SSERoutes

__all__ = ["add_sse_routes"]

_EVENTS_EXAMPLE = (
    "retry: 3000\n\n"
    'id: 1764000000123\nevent: model.loaded\ndata: {"id":1764000000123,"topic":"models",'
    '"type":"model.loaded","time":1764000000.12,"data":{"name":"sentiment","version":"1","ready":true}}\n\n'
    ": heartbeat\n\n"
)
_PREDICT_EXAMPLE = (
    'event: prediction\ndata: {"sentiment":"positive","confidence":0.97,"index":0}\n\n'
    'event: error\ndata: {"index":1,"error":{"code":"INVALID_ARGUMENT","message":"...",'
    '"field":"$.texts[1]"}}\n\n'
    'event: done\ndata: {"count":2,"errors":1}\n\n'
)


def _stream_docs(example: str, errors: dict[int, str | None]) -> dict[int | str, Any]:
    documented = responses(ErrorBody)
    out: dict[int | str, Any] = {
        code: {**documented[code], "description": text or documented[code]["description"]}
        for code, text in errors.items()
    }
    out[200] = {"content": {"text/event-stream": {"schema": {"type": "string"}, "example": example}}}
    return out


def _parameter(name: str, where: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


def add_sse_routes(app: FastAPI, services: Facades) -> None:
    """``GET /v1/events`` and ``POST /v1/models/{name}[/versions/{version}]/predict/stream``."""
    routes = SSERoutes(services)
    app.add_api_route(
        "/v1/events",
        routes.events,
        methods=["GET"],
        tags=["streaming"],
        summary="Follow live events (Server-Sent Events)",
        description=(
            "A `text/event-stream` of event-bus events: `id:` (the event id), `event:` (its type) and "
            "`data:` (the event as JSON). It starts with a `retry:` hint; a `: heartbeat` comment follows "
            "every `events.sse_heartbeat_s` without events. Reconnecting with `Last-Event-ID` replays what "
            "was missed, or sends `event: reset` first when that is no longer possible. A client that falls "
            "too far behind gets `event: error` and the stream ends."
        ),
        response_class=EventStreamResponse,
        status_code=200,
        response_description="The event stream",
        responses=_stream_docs(
            _EVENTS_EXAMPLE,
            {400: "Unknown or missing topics", 503: "Too many open event streams (Retry-After)"},
        ),
        openapi_extra={
            "parameters": [
                _parameter(
                    "topics",
                    "query",
                    "Comma-separated: metrics, models, server, jobs/<id>, jobs/* or *",
                    required=True,
                ),
                _parameter("last_event_id", "query", "Resume after this event id (the header wins)"),
                _parameter("Last-Event-ID", "header", "Resume after this event id (sent by EventSource)"),
            ]
        },
    )
    name = _parameter("name", "path", "The model", required=True)
    version = _parameter("version", "path", "The model version", required=True)
    for path, parameters in (
        ("/v1/models/{name}/predict/stream", [name]),
        ("/v1/models/{name}/versions/{version}/predict/stream", [name, version]),
    ):
        app.add_api_route(
            path,
            routes.predict_stream,
            methods=["POST"],
            tags=["streaming"],
            summary="Predict a batch, streaming each result as it finishes (Server-Sent Events)",
            description=(
                "Send `texts` or `instances`. Each item answers with `event: prediction` (the model's output "
                "plus `index`) or `event: error` (`index` and `error`), in the order they finish, then "
                "`event: done` with the counts. A bad body or an unknown model is a JSON error before the "
                "stream starts."
            ),
            response_class=EventStreamResponse,
            status_code=200,
            response_description="One event per item, then done",
            responses=_stream_docs(_PREDICT_EXAMPLE, dict.fromkeys((400, 404, 413, 415, 503))),
            openapi_extra={**body(PredictStreamRequest), "parameters": parameters},
        )
